"""Fixtures of the integration tests against a real Envoy with an in-process ADS server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import free_port
from tests.harness.ads import AdsThread, Ports


@pytest.fixture
def ads() -> Iterator[AdsThread]:
    thread = AdsThread().start()
    yield thread
    thread.stop()


@pytest.fixture
def listener_ports() -> Ports:
    return Ports(rest=free_port(), grpc=free_port(), ext_proc=free_port())

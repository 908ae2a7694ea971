"""Settings of a model store. Only S3 has any; a local directory needs none.

Credentials are never settings here: boto3 finds them by its standard chain (environment variables,
``~/.aws/credentials`` and ``~/.aws/config`` with ``AWS_PROFILE``, web identity, container and instance
roles).
The endpoint and region also come from boto3's configuration (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``,
``AWS_REGION``...) unless given here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from tfscachectl.errors import ConfigError

MIB = 1024 * 1024
#: S3 returns at most this many keys per listing page.
MAX_LIST_PAGE_SIZE = 1000

AddressingStyle = Literal["auto", "path", "virtual"]
_ADDRESSING_STYLES = ("auto", "path", "virtual")


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How to reach and read an S3 store.

    - ``endpoint_url``: an S3-compatible endpoint (MinIO, Ceph, a test server), ``http(s)://host[:port]``;
      None uses boto3's configuration, else AWS.
    - ``region``, ``profile``: None uses boto3's configuration.
    - ``addressing_style``: ``path`` for most S3-compatible servers; ``auto`` is path style with an explicit
      endpoint and virtual-host style on AWS.
    - ``max_attempts``: attempts per request, the first included, with botocore's "standard" retry mode
      (exponential backoff with jitter on throttling, 5xx and connection errors); also the number of attempts
      at each download stream that breaks midway.
    - ``multipart_threshold_bytes``: files this large or larger are downloaded in ranged parts of
      ``multipart_chunk_bytes``, ``max_concurrency`` at a time.
    - ``list_page_size``: keys per listing request (S3's maximum is 1000).
    - ``connect_timeout_s``, ``read_timeout_s``: per request; a stalled download fails after
      ``read_timeout_s`` without data (then it is retried).
    - ``max_pool_connections``: HTTP connections kept by the one shared client; at least the number of
      concurrent fetches times ``max_concurrency``, or requests queue for a connection.
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    addressing_style: AddressingStyle = "auto"
    max_attempts: int = 5
    multipart_threshold_bytes: int = 16 * MIB
    multipart_chunk_bytes: int = 16 * MIB
    max_concurrency: int = 4
    list_page_size: int = MAX_LIST_PAGE_SIZE
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_pool_connections: int = 16

    def __post_init__(self) -> None:
        if self.endpoint_url is not None:
            parts = urlsplit(self.endpoint_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"S3 endpoint URL must be http(s)://host[:port], not {self.endpoint_url!r}")
        if self.addressing_style not in _ADDRESSING_STYLES:
            raise ConfigError(
                f"S3 addressing style must be one of {', '.join(_ADDRESSING_STYLES)}, "
                f"not {self.addressing_style!r}"
            )
        _at_least("S3 max_attempts", self.max_attempts, 1)
        _at_least("S3 multipart_threshold_bytes", self.multipart_threshold_bytes, 1)
        _at_least("S3 multipart_chunk_bytes", self.multipart_chunk_bytes, 1)
        _at_least("S3 max_concurrency", self.max_concurrency, 1)
        _at_least("S3 max_pool_connections", self.max_pool_connections, 1)
        if not 1 <= self.list_page_size <= MAX_LIST_PAGE_SIZE:
            raise ConfigError(
                f"S3 list_page_size must be 1 to {MAX_LIST_PAGE_SIZE}, not {self.list_page_size}"
            )
        if not self.connect_timeout_s > 0 or not self.read_timeout_s > 0:
            raise ConfigError(
                f"S3 timeouts must be positive (connect {self.connect_timeout_s}, read {self.read_timeout_s})"
            )


def _at_least(what: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer of at least {minimum}, not {value!r}")

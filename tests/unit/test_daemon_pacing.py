from __future__ import annotations

import pytest

from tfscachectl.daemon.pacing import Pacer


def test_quick_or_rare_runs_start_at_once() -> None:
    pacer = Pacer()
    assert pacer.delay(now=10.0) == 0.0
    pacer.ran(started=10.0, finished=10.001)
    assert pacer.delay(now=10.5) == 0.0


def test_after_a_long_run_the_next_waits_its_duration_at_half_share() -> None:
    pacer = Pacer(share=0.5)
    pacer.ran(started=1.0, finished=1.04)
    assert pacer.delay(now=1.04) == pytest.approx(0.04)
    assert pacer.delay(now=1.07) == pytest.approx(0.01)
    assert pacer.delay(now=1.09) == 0.0


def test_share_sets_the_gap() -> None:
    pacer = Pacer(share=0.25)
    pacer.ran(started=0.0, finished=0.1)
    assert pacer.delay(now=0.1) == pytest.approx(0.3)  # 0.1 s of work in every 0.4 s
    whole = Pacer(share=1.0)
    whole.ran(started=0.0, finished=0.1)
    assert whole.delay(now=0.1) == 0.0


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_share_out_of_range_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        Pacer(share=share)

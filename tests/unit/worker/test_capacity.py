"""The capacity cap and the spreading rule that keeps a burst from piling onto one worker."""

from __future__ import annotations

import pytest
from arq import Retry

from runpoller.worker.capacity import Capacity, defer_for


def test_a_full_worker_defers_for_a_second() -> None:
    assert defer_for(10, 10, [], 0.5) == 1.0


def test_a_worker_at_or_below_the_average_never_defers() -> None:
    assert defer_for(5, 100, [5, 5], 0.9) is None
    assert defer_for(0, 100, [30, 40], 0.9) is None


def test_a_worker_well_above_the_average_defers_briefly_with_jitter() -> None:
    # average of (20, 0, 0) is 6.67; 20 > 6.67 * 1.15 + 2
    assert defer_for(20, 100, [0, 0], 0.0) == pytest.approx(0.05)
    assert defer_for(20, 100, [0, 0], 0.999) == pytest.approx(0.09995)


def test_a_lone_worker_takes_everything_up_to_its_cap() -> None:
    assert defer_for(99, 100, [], 0.5) is None


def test_reservations_count_until_the_block_ends() -> None:
    cap = Capacity("me", 2, in_flight=lambda: 1)
    cap.check()  # 1 of 2
    with cap.reservation(), pytest.raises(Retry):
        cap.check()  # 1 + 1 reserved
    cap.check()


def test_the_workers_own_entry_in_the_cluster_loads_is_not_an_other() -> None:
    cap = Capacity("me", 100, in_flight=lambda: 20, rand=lambda: 0.0)
    cap.cluster_loads = {"me": 20}
    cap.check()  # alone: no spreading
    cap.cluster_loads = {"me": 20, "other": 0}
    with pytest.raises(Retry):
        cap.check()

"""The capacity cap and the spreading rule that keeps a burst from piling onto one worker."""

from __future__ import annotations

import pytest
from arq import Retry
from hypothesis import given
from hypothesis import strategies as st

from runpoller.worker.capacity import Capacity, head_start_s, headroom, refusal


def test_a_full_worker_is_refused() -> None:
    assert refusal(10, 10, []) == "full"
    assert refusal(10, 10, [50, 50]) == "full"


def test_a_worker_at_or_below_the_average_is_never_refused_by_spreading() -> None:
    assert refusal(5, 100, [5, 5]) is None
    assert refusal(0, 100, [30, 40]) is None


def test_a_worker_well_above_the_average_is_refused_for_spreading() -> None:
    # average of (20, 0, 0) is 6.67; 20 > 6.67 * 1.15 + 2
    assert refusal(20, 100, [0, 0]) == "spreading"


def test_a_lone_worker_takes_everything_up_to_its_cap() -> None:
    assert refusal(99, 100, []) is None
    assert headroom(90, 100, [], 500) == 10


@given(
    mine=st.integers(0, 200),
    cap=st.integers(1, 300),
    others=st.lists(st.integers(0, 200), max_size=5),
)
def test_below_the_average_only_the_cap_refuses(mine: int, cap: int, others: list[int]) -> None:
    average = (sum(others) + mine) / (len(others) + 1)
    if mine <= average:
        assert refusal(mine, cap, others) == ("full" if mine >= cap else None)


@given(
    mine=st.integers(0, 200),
    cap=st.integers(1, 300),
    others=st.lists(st.integers(0, 200), max_size=5),
    most=st.integers(0, 500),
)
def test_headroom_is_how_many_one_by_one_checks_would_pass(
    mine: int, cap: int, others: list[int], most: int
) -> None:
    n = headroom(mine, cap, others, most)
    assert 0 <= n <= min(most, max(cap - mine, 0))
    assert all(refusal(mine + i, cap, others) is None for i in range(n))
    if n < most:
        assert refusal(mine + n, cap, others) is not None


def test_headroom_is_zero_when_refused_so_the_worker_takes_nothing() -> None:
    cap = Capacity("me", 100, in_flight=lambda: 20)
    cap.cluster_loads = {"me": 20, "a": 0, "b": 0}
    assert cap.headroom(500) == 0
    cap.cluster_loads = {"me": 20, "a": 20, "b": 20}
    # 28 passes (average 22.67 * 1.15 + 2 = 28.07), 29 does not: 9 more, not 500.
    assert cap.headroom(500) == 9
    assert refusal(29, 100, [20, 20]) == "spreading"


def test_reservations_count_until_the_block_ends() -> None:
    cap = Capacity("me", 2, in_flight=lambda: 1)
    cap.check()  # 1 of 2
    assert cap.headroom(10) == 1
    with cap.reservation():
        assert cap.headroom(10) == 0
        with pytest.raises(Retry):
            cap.check()  # 1 + 1 reserved
    cap.check()


def test_a_refused_job_goes_back_due_at_once() -> None:
    cap = Capacity("me", 1, in_flight=lambda: 1)
    with pytest.raises(Retry) as info:
        cap.check()
    assert info.value.defer_score == 0, "not hidden from the other workers for any time"


def test_the_workers_own_entry_in_the_cluster_loads_is_not_an_other() -> None:
    cap = Capacity("me", 100, in_flight=lambda: 20)
    cap.cluster_loads = {"me": 20}
    assert cap.headroom(5) == 5  # alone: no spreading
    cap.cluster_loads = {"me": 20, "other": 0}
    assert cap.headroom(5) == 0


def test_spreading_is_the_batchs_call_and_only_the_cap_refuses_a_single_job() -> None:
    cap = Capacity("me", 100, in_flight=lambda: 20)
    cap.cluster_loads = {"me": 20, "other": 0}
    assert cap.headroom(5) == 0 and cap.spare(5) == 5
    cap.check()  # a job the batch took for being overdue is not refused again
    full = Capacity("me", 20, in_flight=lambda: 20)
    assert full.spare(5) == 0
    with pytest.raises(Retry):
        full.check()


def test_workers_below_the_average_get_the_first_pick_of_new_jobs() -> None:
    assert head_start_s(5, [10, 10], 0.2) == 0.0
    assert head_start_s(10, [10, 10], 0.2) == 0.0, "at the average: no wait"
    assert head_start_s(11, [10, 10], 0.2) == 0.2
    assert head_start_s(50, [], 0.2) == 0.0, "alone: nobody to leave them to"


def test_the_wait_counts_reservations_and_ignores_the_workers_own_entry() -> None:
    cap = Capacity("me", 100, in_flight=lambda: 10, head_start_s=0.2)
    cap.cluster_loads = {"me": 0, "a": 10, "b": 10}
    assert cap.wait_s() == 0.0
    with cap.reservation():
        assert cap.wait_s() == 0.2


def test_loads_are_refreshed_before_a_burst_only_when_older_than_allowed() -> None:
    # A worker that read the loads before a peer started would take a whole burst alone.
    cap = Capacity("me", 100, lambda: 0)
    assert cap.loads_stale(ready=60, now=10.0, max_age_s=0.05), "never read: stale"
    cap.set_loads({"me": 0, "peer": 0}, at=10.0)
    assert not cap.loads_stale(ready=60, now=10.04, max_age_s=0.05)
    assert cap.loads_stale(ready=60, now=10.06, max_age_s=0.05)
    assert not cap.loads_stale(ready=2, now=99.0, max_age_s=0.05), "a trickle never waits"
    assert cap.headroom(60) < 60, "with the peer known, the burst is shared"


def test_a_fair_share_of_overdue_jobs_is_over_the_live_workers_it_knows() -> None:
    cap = Capacity("me", 100, lambda: 0)
    assert cap.fair_share(240) == 240, "alone (as far as it knows): all of them"
    cap.set_loads({"me": 0, "a": 0, "b": 0}, at=1.0)
    assert cap.fair_share(240) == 80 and cap.fair_share(2) == 1
    cap.set_loads({"a": 5, "b": 0}, at=2.0)  # its own beat not read yet: still counted
    assert cap.fair_share(240) == 80

"""The disk tier: fetch admission by bytes, LRU deletion, in-use protection, transitions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tfscachectl.core.disk_tier import DiskEntry, DiskState, DiskTier
from tfscachectl.core.eviction import Admit, Need, NoCapacity
from tfscachectl.core.refs import ModelKey
from tfscachectl.errors import Code, ConfigError

A, B, C, D = (ModelKey(name, 1) for name in "abcd")


def cached(disk: DiskTier, key: ModelKey, size: int, now: float) -> DiskEntry:
    assert disk.plan_fetch(key, size, now) == Admit()
    disk.start_fetch(key, size, now)
    return disk.fetched(key, now)


def test_budget_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="disk_bytes"):
        DiskTier(0)


def test_fetches_while_there_is_room() -> None:
    disk = DiskTier(100)
    assert disk.plan_fetch(A, 60, now=0) == Admit()
    disk.start_fetch(A, 60, now=0)
    assert disk.plan_fetch(B, 40, now=0) == Admit()
    assert disk.used_bytes() == 60


def test_no_budget_means_no_limit() -> None:
    disk = DiskTier(None)
    cached(disk, A, 10**15, now=0)
    assert disk.plan_fetch(B, 10**15, now=0) == Admit()
    assert disk.plan_trim(now=0) == Admit()


def test_deletes_least_recently_used_no_more_than_needed() -> None:
    disk = DiskTier(100)
    cached(disk, A, 30, now=1)
    cached(disk, B, 30, now=2)
    cached(disk, C, 30, now=3)
    disk.touch(A, now=4)
    assert disk.plan_fetch(D, 20, now=5) == Admit(evict=(B,))
    assert disk.plan_fetch(D, 50, now=5) == Admit(evict=(B, C))


def test_never_deletes_a_model_in_use() -> None:
    disk = DiskTier(100)
    cached(disk, A, 50, now=1)
    cached(disk, B, 50, now=2)
    assert disk.plan_fetch(C, 50, now=3, in_use={A}) == Admit(evict=(B,))
    decision = disk.plan_fetch(C, 50, now=3, in_use={A, B})
    assert isinstance(decision, NoCapacity)
    assert not decision.permanent
    assert "2 in use" in decision.reason
    assert decision.error().code is Code.UNAVAILABLE
    with pytest.raises(ValueError, match="in use"):
        disk.start_delete(A, in_use={A})


def test_never_deletes_a_model_being_fetched() -> None:
    disk = DiskTier(100)
    disk.start_fetch(A, 100, now=0)
    decision = disk.plan_fetch(B, 10, now=50)
    assert isinstance(decision, NoCapacity)
    assert "1 being fetched" in decision.reason


def test_larger_than_the_disk_is_permanent() -> None:
    decision = DiskTier(100).plan_fetch(A, 101, now=0)
    assert isinstance(decision, NoCapacity)
    assert decision.permanent
    assert decision.error().code is Code.RESOURCE_EXHAUSTED


def test_a_fetch_waits_for_deletions_under_way() -> None:
    disk = DiskTier(100)
    cached(disk, A, 50, now=1)
    cached(disk, B, 50, now=2)
    disk.start_delete(A)
    assert disk.plan_fetch(C, 40, now=3) == Admit(awaiting=(A,))
    assert disk.plan_fetch(C, 80, now=3) == Admit(evict=(B,), awaiting=(A,))
    with pytest.raises(ValueError, match="exceed the disk budget"):
        disk.start_fetch(C, 40, now=3)
    disk.deleted(A)
    assert disk.plan_fetch(C, 40, now=3) == Admit()


def test_failed_fetch_and_failed_delete() -> None:
    disk = DiskTier(100)
    disk.start_fetch(A, 60, now=0)
    disk.fetch_failed(A)
    assert A not in disk
    cached(disk, A, 60, now=1)
    disk.start_delete(A)
    assert disk.delete_failed(A).state is DiskState.CACHED


def test_actual_size_replaces_the_listed_size() -> None:
    disk = DiskTier(100)
    disk.start_fetch(A, 40, now=0)
    entry = disk.fetched(A, now=1, size_bytes=45)
    assert entry.size_bytes == 45
    assert disk.used_bytes() == 45


def test_adopted_models_over_budget_are_trimmed() -> None:
    disk = DiskTier(100)
    disk.adopt(A, 60, now=0)
    disk.adopt(B, 60, now=1)
    assert disk.used_bytes() == 120
    assert disk.plan_trim(now=2) == Admit(evict=(A,))
    assert disk.plan_trim(now=2, in_use={A}) == Admit(evict=(B,))
    decision = disk.plan_trim(now=2, in_use={A, B})
    assert isinstance(decision, NoCapacity)


def test_transitions_from_the_wrong_state_are_bugs() -> None:
    disk = DiskTier(100)
    with pytest.raises(ValueError, match="no entry"):
        disk.fetched(A, now=0)
    disk.start_fetch(A, 10, now=0)
    with pytest.raises(ValueError, match="already fetching"):
        disk.plan_fetch(A, 10, now=0)
    with pytest.raises(ValueError, match="already fetching"):
        disk.adopt(A, 10, now=0)
    with pytest.raises(ValueError, match="is fetching on disk, not cached"):
        disk.start_delete(A)
    assert not disk.touch(B, now=0)
    assert [e.key for e in disk.entries()] == [A]
    assert len(disk) == 1


# -- the state machine ---------------------------------------------------------------------------------

KEYS = [ModelKey(f"m{i}", 1) for i in range(8)]


class DiskMachine(RuleBasedStateMachine):
    """Random fetches, uses and deletions; the budget is never exceeded and nothing in use is deleted."""

    disk: DiskTier

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.in_use: set[ModelKey] = set()

    @initialize(budget=st.none() | st.integers(10, 150))
    def setup(self, budget: int | None) -> None:
        self.disk = DiskTier(budget)

    def check(self, decision: Admit | NoCapacity, size: int) -> None:
        disk = self.disk
        entries = {e.key: e for e in disk.entries()}
        deletable = {k for k, e in entries.items() if e.state is DiskState.CACHED and k not in self.in_use}
        deleting = {k for k, e in entries.items() if e.state is DiskState.DELETING}
        budget = disk.budget_bytes
        assert budget is not None or decision == Admit()
        if budget is None:
            return
        used = disk.used_bytes()
        if isinstance(decision, NoCapacity):
            assert decision.permanent == (size > budget)
            freeable = sum(entries[k].size_bytes for k in deletable | deleting)
            assert used - freeable + size > budget, "there was a way"
            return
        assert set(decision.evict) <= deletable, "chose a model in use, being fetched or being deleted"
        assert set(decision.awaiting) <= deleting
        freed = sum(entries[k].size_bytes for k in (*decision.evict, *decision.awaiting))
        assert used - freed + size <= budget
        for victim in decision.evict:
            others = sum(entries[k].size_bytes for k in deleting | set(decision.evict) if k != victim)
            assert used - others + size > budget, f"{victim} was not needed"
        assert Need(bytes=max(used + size - budget, 0)).met == decision.ready

    @rule(seconds=st.sampled_from([1.0, 2.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(key=st.sampled_from(KEYS), size=st.integers(0, 80), completes=st.booleans())
    def fetch(self, key: ModelKey, size: int, completes: bool) -> None:
        if key in self.disk:
            self.disk.touch(key, self.now)
            return
        decision = self.disk.plan_fetch(key, size, self.now, in_use=self.in_use)
        self.check(decision, size)
        if isinstance(decision, NoCapacity):
            return
        for victim in decision.evict:
            self.disk.start_delete(victim, in_use=self.in_use)
        if decision.ready:
            self.disk.start_fetch(key, size, self.now)
            if completes:
                self.disk.fetched(key, self.now)

    @rule()
    def work_under_way_ends(self) -> None:
        for entry in self.disk.entries():
            if entry.state is DiskState.FETCHING:
                self.disk.fetched(entry.key, self.now)
            elif entry.state is DiskState.DELETING:
                self.disk.deleted(entry.key)

    @rule(key=st.sampled_from(KEYS))
    def fetch_fails(self, key: ModelKey) -> None:
        entry = self.disk.get(key)
        if entry is not None and entry.state is DiskState.FETCHING:
            self.disk.fetch_failed(key)

    @rule(key=st.sampled_from(KEYS), used=st.booleans())
    def memory_uses(self, key: ModelKey, used: bool) -> None:
        entry = self.disk.get(key)
        if used and entry is not None and entry.state is DiskState.CACHED:
            self.in_use.add(key)
        else:
            self.in_use.discard(key)

    @invariant()
    def budget_is_never_exceeded(self) -> None:
        budget = self.disk.budget_bytes
        assert budget is None or self.disk.used_bytes() <= budget

    @invariant()
    def models_in_use_stay_on_disk(self) -> None:
        for key in self.in_use:
            entry = self.disk.get(key)
            assert entry is not None
            assert entry.state is DiskState.CACHED


DiskMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestDiskMachine = DiskMachine.TestCase


@given(sizes=st.lists(st.integers(0, 50), max_size=8), budget=st.integers(1, 200))
def test_adopting_anything_can_be_trimmed_back(sizes: list[int], budget: int) -> None:
    disk = DiskTier(budget)
    for index, size in enumerate(sizes):
        disk.adopt(ModelKey(f"m{index}", 1), size, now=float(index))
    decision = disk.plan_trim(now=100)
    assert isinstance(decision, Admit)
    for victim in decision.evict:
        disk.start_delete(victim)
        disk.deleted(victim)
    assert disk.used_bytes() <= budget

"""The in-memory tier: admission, LRU victim choice, pins, guard window, transitions, sizing.

The state machine at the end drives a ``Residency`` with random operations and checks every decision
against an independent oracle: capacity never exceeded (count and bytes, counting loading and unloading
models); pinned, loading, unloading and guarded models never chosen; victims in LRU order and no more than
needed.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tfscachectl.core.eviction import Admit, Candidate, Need, NoCapacity, choose_victims, format_bytes
from tfscachectl.core.refs import ModelKey
from tfscachectl.core.residency import Capacity, Entry, Residency, ResidencyState, Usage
from tfscachectl.core.sizing import MemoryEstimator
from tfscachectl.errors import Code, ConfigError, ServingError

A, B, C, D, E = (ModelKey(name, 1) for name in "abcde")
MB = 1024 * 1024


def resident(residency: Residency, key: ModelKey, size: int, now: float) -> Entry:
    decision = residency.plan_admission(key, size, now)
    assert isinstance(decision, Admit)
    assert decision.ready, decision
    residency.start_loading(key, size, now)
    return residency.loaded(key, now)


# -- capacity and sizing --------------------------------------------------------------------------------


def test_capacity_rejects_nonsense() -> None:
    with pytest.raises(ConfigError, match="max_models"):
        Capacity(max_models=0)
    with pytest.raises(ConfigError, match="max_bytes"):
        Capacity(max_bytes=0)
    with pytest.raises(ConfigError, match="guard window"):
        Residency(Capacity(1), guard_window=-1)


def test_capacity_shortfall() -> None:
    capacity = Capacity(max_models=2, max_bytes=100)
    assert capacity.holds(Usage(2, 100))
    assert capacity.shortfall(Usage(3, 150)) == Need(1, 50)
    assert Capacity().holds(Usage(10**6, 10**15))


def test_memory_estimate_from_file_bytes() -> None:
    estimator = MemoryEstimator(factor=1.5, overhead_bytes=10)
    assert estimator.estimate(0) == 10
    assert estimator.estimate(3) == 15  # ceil(4.5) + 10
    assert MemoryEstimator().estimate(100 * MB) > 100 * MB
    with pytest.raises(ConfigError, match="factor"):
        MemoryEstimator(factor=0)
    with pytest.raises(ConfigError, match="factor"):
        MemoryEstimator(factor=float("nan"))
    with pytest.raises(ConfigError, match="overhead"):
        MemoryEstimator(overhead_bytes=-1)
    with pytest.raises(ValueError, match="negative"):
        estimator.estimate(-1)


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024 * MB) == "3.0 GiB"
    assert format_bytes(5 * 1024**4) == "5.0 TiB"


# -- admission ------------------------------------------------------------------------------------------


def test_admits_while_there_is_room() -> None:
    residency = Residency(Capacity(max_models=2), guard_window=0)
    assert residency.plan_admission(A, 10, now=0) == Admit()
    residency.start_loading(A, 10, now=0)
    assert residency.plan_admission(B, 10, now=0) == Admit()


def test_evicts_least_recently_used_by_count() -> None:
    residency = Residency(Capacity(max_models=2), guard_window=0)
    resident(residency, A, 10, now=1)
    resident(residency, B, 10, now=2)
    residency.touch(A, now=3)
    assert residency.plan_admission(C, 10, now=4) == Admit(evict=(B,))


def test_evicts_by_bytes_no_more_than_needed() -> None:
    residency = Residency(Capacity(max_bytes=100), guard_window=0)
    resident(residency, A, 30, now=1)
    resident(residency, B, 30, now=2)
    resident(residency, C, 30, now=3)
    # 90 used; 50 more needs 40 freed: the two oldest, not the third.
    assert residency.plan_admission(D, 50, now=4) == Admit(evict=(A, B))
    # 20 more needs 10 freed: just the oldest.
    assert residency.plan_admission(D, 20, now=4) == Admit(evict=(A,))


def test_spares_an_old_small_model_when_a_bigger_one_settles_it() -> None:
    residency = Residency(Capacity(max_bytes=100), guard_window=0)
    resident(residency, A, 10, now=1)
    resident(residency, B, 60, now=2)
    resident(residency, C, 30, now=3)
    # 100 used; 50 more needs 50 freed. LRU order takes a (10) then b (60); b alone is enough.
    assert residency.plan_admission(D, 50, now=4) == Admit(evict=(B,))


def test_too_large_for_the_budget_is_permanent() -> None:
    residency = Residency(Capacity(max_bytes=100))
    decision = residency.plan_admission(A, 101, now=0)
    assert isinstance(decision, NoCapacity)
    assert decision.permanent
    assert "larger than the memory budget" in decision.reason
    error = decision.error()
    assert isinstance(error, ServingError)
    assert error.code is Code.RESOURCE_EXHAUSTED


def test_never_evicts_pinned_models() -> None:
    residency = Residency(Capacity(max_models=2), guard_window=0)
    resident(residency, A, 10, now=1)
    resident(residency, B, 10, now=2)
    residency.pin(A)
    assert residency.plan_admission(C, 10, now=3) == Admit(evict=(B,))
    residency.pin(B)
    decision = residency.plan_admission(C, 10, now=3)
    assert isinstance(decision, NoCapacity)
    assert not decision.permanent
    assert "2 pinned" in decision.reason
    assert decision.retry_at is None
    assert decision.error().code is Code.UNAVAILABLE
    with pytest.raises(ValueError, match="pinned"):
        residency.start_unloading(A)
    residency.unpin(A)
    assert residency.plan_admission(C, 10, now=3) == Admit(evict=(A,))


def test_pins_outlive_entries_and_apply_to_later_loads() -> None:
    residency = Residency(Capacity(max_models=1), guard_window=0)
    residency.pin(A)
    assert resident(residency, A, 10, now=1).pinned
    assert residency.pins() == {A}
    assert isinstance(residency.plan_admission(B, 10, now=2), NoCapacity)
    residency.unpin(A)
    residency.unpin(A)  # unpinning twice is harmless
    assert not residency.get(A).pinned  # type: ignore[union-attr]


def test_never_evicts_loading_models() -> None:
    residency = Residency(Capacity(max_models=1), guard_window=0)
    residency.start_loading(A, 10, now=0)
    decision = residency.plan_admission(B, 10, now=100)
    assert isinstance(decision, NoCapacity)
    assert "1 loading" in decision.reason


def test_guard_window_protects_recently_ensured_models() -> None:
    residency = Residency(Capacity(max_models=1), guard_window=5)
    resident(residency, A, 10, now=10)  # the end of the load starts a guard
    decision = residency.plan_admission(B, 10, now=12)
    assert isinstance(decision, NoCapacity)
    assert "ensured or loaded in the last 5 s" in decision.reason
    assert decision.retry_at == 15
    assert residency.plan_admission(B, 10, now=15) == Admit(evict=(A,))
    residency.ensured(A, now=14)  # an ensure restarts the guard
    assert isinstance(residency.plan_admission(B, 10, now=15), NoCapacity)
    assert residency.plan_admission(B, 10, now=19) == Admit(evict=(A,))


def test_touch_does_not_guard() -> None:
    residency = Residency(Capacity(max_models=1), guard_window=5)
    resident(residency, A, 10, now=0)
    assert residency.touch(A, now=100)
    assert residency.plan_admission(B, 10, now=100) == Admit(evict=(A,))


def test_late_recency_reports_never_go_back_in_time() -> None:
    residency = Residency(Capacity(max_models=3), guard_window=0)
    resident(residency, A, 10, now=10)
    assert residency.touch(A, now=5, hits=3)
    entry = residency.get(A)
    assert entry is not None
    assert entry.last_used == 10
    assert entry.hits == 3
    assert not residency.touch(B, now=5)  # about a model that is gone: ignored
    assert not residency.ensured(B, now=5)


def test_a_newcomer_waits_for_evictions_it_needs() -> None:
    residency = Residency(Capacity(max_models=2), guard_window=0)
    resident(residency, A, 10, now=1)
    resident(residency, B, 10, now=2)
    decision = residency.plan_admission(C, 10, now=3)
    assert decision == Admit(evict=(A,))
    assert isinstance(decision, Admit)
    assert not decision.ready
    residency.start_unloading(A)
    # An unloading model keeps its room: no more evictions, but wait for that one.
    assert residency.plan_admission(C, 10, now=3) == Admit(awaiting=(A,))
    with pytest.raises(ValueError, match="exceed the capacity"):
        residency.start_loading(C, 10, now=3)
    # A second newcomer does not make the same eviction count twice either.
    assert residency.plan_admission(D, 10, now=3) == Admit(awaiting=(A,))
    residency.unloaded(A)
    assert residency.plan_admission(C, 10, now=4) == Admit()
    residency.start_loading(C, 10, now=4)
    # The freed room was taken: the second newcomer now needs its own eviction.
    assert residency.plan_admission(D, 10, now=4) == Admit(evict=(B,))


def test_evicts_more_when_the_unloads_under_way_are_not_enough() -> None:
    residency = Residency(Capacity(max_bytes=100), guard_window=0)
    resident(residency, A, 20, now=1)
    resident(residency, B, 30, now=2)
    resident(residency, C, 50, now=3)
    residency.start_unloading(A)
    assert residency.plan_admission(D, 40, now=4) == Admit(evict=(B,), awaiting=(A,))


def test_unload_failed_makes_it_resident_again() -> None:
    residency = Residency(Capacity(max_models=1), guard_window=0)
    resident(residency, A, 10, now=1)
    residency.start_unloading(A)
    assert residency.unload_failed(A).state is ResidencyState.RESIDENT
    assert residency.plan_admission(B, 10, now=2) == Admit(evict=(A,))


def test_load_failed_frees_the_room() -> None:
    residency = Residency(Capacity(max_models=1), guard_window=0)
    residency.start_loading(A, 10, now=0)
    residency.load_failed(A)
    assert A not in residency
    assert residency.plan_admission(B, 10, now=0) == Admit()


def test_transitions_from_the_wrong_state_are_bugs() -> None:
    residency = Residency(Capacity(max_models=2), guard_window=0)
    with pytest.raises(ValueError, match="no entry"):
        residency.loaded(A, now=0)
    residency.start_loading(A, 10, now=0)
    with pytest.raises(ValueError, match="already loading"):
        residency.start_loading(A, 10, now=0)
    with pytest.raises(ValueError, match="already loading"):
        residency.plan_admission(A, 10, now=0)
    with pytest.raises(ValueError, match="is loading, not resident"):
        residency.start_unloading(A)
    with pytest.raises(ValueError, match="is loading, not unloading"):
        residency.unloaded(A)
    with pytest.raises(ValueError, match="negative"):
        residency.plan_admission(B, -1, now=0)
    with pytest.raises(ValueError, match="finite"):
        residency.plan_admission(B, 1, now=float("nan"))


def test_entries_and_usage() -> None:
    residency = Residency(Capacity(max_models=3), guard_window=0)
    residency.start_loading(B, 20, now=0)
    resident(residency, A, 10, now=0)
    assert [e.key for e in residency.entries()] == [A, B]
    assert [e.state for e in residency] == [ResidencyState.RESIDENT, ResidencyState.LOADING]
    assert residency.usage() == Usage(2, 30)
    assert len(residency) == 2


def test_a_larger_measured_size_is_trimmed() -> None:
    residency = Residency(Capacity(max_bytes=100), guard_window=0)
    resident(residency, A, 40, now=1)
    resident(residency, B, 40, now=2)
    assert residency.plan_trim(now=3) == Admit()
    residency.resize(B, 90)
    assert residency.plan_trim(now=3) == Admit(evict=(A,))


# -- victim choice as a property ----------------------------------------------------------------------


def lru_prefix(candidates: list[Candidate], need: Need) -> list[ModelKey] | None:
    """The oracle: the shortest LRU prefix that meets ``need``."""
    ordered = sorted(candidates, key=lambda c: (c.last_used, c.key))
    for length in range(len(ordered) + 1):
        if need.after(ordered[:length]).met:
            return [c.key for c in ordered[:length]]
    return None


candidate_lists = st.lists(
    st.builds(
        Candidate,
        key=st.sampled_from([ModelKey(f"m{i}", 1) for i in range(12)]),
        size_bytes=st.integers(0, 100),
        last_used=st.integers(0, 20).map(float),
    ),
    max_size=12,
    unique_by=lambda c: c.key,
)
needs = st.builds(Need, models=st.integers(0, 6), bytes=st.integers(0, 400))


@settings(max_examples=60)
@given(candidates=candidate_lists, need=needs)
def test_victims_are_a_necessary_part_of_the_lru_prefix(candidates: list[Candidate], need: Need) -> None:
    victims = choose_victims(candidates, need)
    prefix = lru_prefix(candidates, need)
    if prefix is None:
        assert victims is None
        return
    assert victims is not None
    assert set(victims) <= set(prefix)
    assert list(victims) == [k for k in prefix if k in victims]  # least recently used first
    by_key = {c.key: c for c in candidates}
    chosen = [by_key[k] for k in victims]
    assert need.after(chosen).met
    for spared in chosen:
        assert not need.after([c for c in chosen if c is not spared]).met, "a victim was not needed"


@settings(max_examples=40)
@given(candidates=candidate_lists, need=needs)
def test_victim_choice_ignores_input_order(candidates: list[Candidate], need: Need) -> None:
    assert choose_victims(candidates, need) == choose_victims(list(reversed(candidates)), need)


# -- the oracle -----------------------------------------------------------------------------------------


def evictable(residency: Residency, now: float) -> list[Entry]:
    return [
        e
        for e in residency.entries()
        if e.state is ResidencyState.RESIDENT
        and not e.pinned
        and now >= e.guard_from + residency.guard_window
    ]


def unloading(residency: Residency) -> list[Entry]:
    return [e for e in residency.entries() if e.state is ResidencyState.UNLOADING]


def fits_without(residency: Residency, gone: list[Entry], size: int) -> bool:
    keys = {e.key for e in gone}
    rest = [e for e in residency.entries() if e.key not in keys]
    return residency.capacity.holds(Usage(len(rest) + 1, sum(e.size_bytes for e in rest) + size))


def check_admission(residency: Residency, decision: Admit | NoCapacity, size: int, now: float) -> None:
    """Check a decision for a newcomer of ``size`` against the rules, computed independently."""
    may_go = evictable(residency, now)
    going = unloading(residency)
    if isinstance(decision, NoCapacity):
        max_bytes = residency.capacity.max_bytes
        assert decision.permanent == (max_bytes is not None and size > max_bytes)
        assert not fits_without(residency, may_go + going, size), "there was a way"
        return
    by_key = {e.key: e for e in residency.entries()}
    victims = [by_key[k] for k in decision.evict]
    awaited = [by_key[k] for k in decision.awaiting]
    assert set(decision.evict) <= {e.key for e in may_go}, "chose a model that may not be evicted"
    assert set(decision.awaiting) <= {e.key for e in going}
    assert fits_without(residency, victims + awaited, size), "the plan does not make room"
    if decision.ready:
        return
    assert not fits_without(residency, [], size), "evicting although it fits"
    for victim in victims:
        others = [v for v in victims if v is not victim]
        assert not fits_without(residency, others + going, size), f"{victim.key} was not needed"
    if victims:
        assert not fits_without(residency, going, size), "evicting although the unloads are enough"
        usage = residency.usage()
        need = residency.capacity.shortfall(Usage(usage.models + 1, usage.bytes + size))
        prefix = lru_prefix([e.candidate() for e in may_go], need.after(e.candidate() for e in going))
        assert prefix is not None
        assert set(decision.evict) <= set(prefix), "not in LRU order"
        assert list(decision.evict) == [k for k in prefix if k in decision.evict], "not oldest first"
    else:
        for waited in awaited:
            others = [a for a in awaited if a is not waited]
            assert not fits_without(residency, others, size), f"waiting for {waited.key} is not needed"


# -- admission from random states ------------------------------------------------------------------------

KEYS = [ModelKey(f"m{i}", v) for i in range(5) for v in (1, 2)]
NOW = 100.0


@st.composite
def residencies(draw: st.DrawFn) -> Residency:
    """A residency in a random state: entries in every state, pins, ages and guards, near its capacity."""
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS)))
    specs = [
        (
            key,
            draw(st.sampled_from([0, 1, 5, 10, 30, 60])),
            draw(st.sampled_from(list(ResidencyState))),
            draw(st.integers(0, 10)),  # how long ago it was used
            draw(st.integers(0, 10)),  # how long ago it was ensured or loaded
            draw(st.booleans()),  # pinned
        )
        for key in keys
    ]
    models = len(specs) + draw(st.integers(0, 2))
    size = sum(spec[1] for spec in specs) + draw(st.sampled_from([0, 5, 20]))
    capacity = Capacity(
        max_models=draw(st.none() | st.just(max(models, 1))),
        max_bytes=draw(st.none() | st.just(max(size, 1))),
    )
    residency = Residency(capacity, guard_window=draw(st.sampled_from([0.0, 3.0])))
    for key, size_bytes, state, used_ago, guarded_ago, pinned in specs:
        residency.start_loading(key, size_bytes, now=0)
        if state is not ResidencyState.LOADING:
            residency.loaded(key, now=NOW - max(used_ago, guarded_ago))
            residency.ensured(key, now=NOW - guarded_ago)
        residency.touch(key, now=NOW - used_ago)
        if state is ResidencyState.UNLOADING:
            residency.start_unloading(key)
        if pinned:
            residency.pin(key)
    return residency


@settings(max_examples=120, deadline=None)
@given(residency=residencies(), key=st.sampled_from(KEYS), size=st.sampled_from([0, 1, 5, 10, 30, 60, 200]))
def test_admission_decisions_follow_the_rules(residency: Residency, key: ModelKey, size: int) -> None:
    if key in residency:
        return
    decision = residency.plan_admission(key, size, NOW)
    check_admission(residency, decision, size, NOW)
    if isinstance(decision, Admit) and decision.ready:
        residency.start_loading(key, size, NOW)
        assert residency.capacity.holds(residency.usage())


# -- the state machine ---------------------------------------------------------------------------------


class ResidencyMachine(RuleBasedStateMachine):
    """Random sequences of operations on a Residency; every decision checked against the oracle."""

    residency: Residency

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    @initialize(
        max_models=st.none() | st.integers(1, 5),
        max_bytes=st.none() | st.integers(20, 200),
        guard=st.sampled_from([0.0, 1.0, 4.0]),
    )
    def setup(self, max_models: int | None, max_bytes: int | None, guard: float) -> None:
        self.residency = Residency(Capacity(max_models, max_bytes), guard_window=guard)

    @rule(seconds=st.sampled_from([0.5, 1.0, 5.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(
        key=st.sampled_from(KEYS), size=st.sampled_from([0, 1, 5, 10, 30, 60, 120]), load_ends=st.booleans()
    )
    def ensure(self, key: ModelKey, size: int, load_ends: bool) -> None:
        r = self.residency
        if key in r:
            assert r.ensured(key, self.now)
            return
        decision = r.plan_admission(key, size, self.now)
        check_admission(r, decision, size, self.now)
        if isinstance(decision, NoCapacity):
            return
        for victim in decision.evict:
            r.start_unloading(victim)
        if decision.ready:
            entry = r.start_loading(key, size, self.now)
            assert entry.pinned == (key in r.pins())
            if load_ends:
                r.loaded(key, self.now)

    @rule()
    def work_under_way_ends(self) -> None:
        for entry in self.residency.entries():
            if entry.state is ResidencyState.LOADING:
                self.residency.loaded(entry.key, self.now)
            elif entry.state is ResidencyState.UNLOADING:
                self.residency.unloaded(entry.key)

    @rule(key=st.sampled_from(KEYS))
    def load_fails(self, key: ModelKey) -> None:
        entry = self.residency.get(key)
        if entry is not None and entry.state is ResidencyState.LOADING:
            self.residency.load_failed(key)

    @rule(key=st.sampled_from(KEYS))
    def unload_fails(self, key: ModelKey) -> None:
        entry = self.residency.get(key)
        if entry is not None and entry.state is ResidencyState.UNLOADING:
            self.residency.unload_failed(key)

    @rule(key=st.sampled_from(KEYS))
    def operator_evicts(self, key: ModelKey) -> None:
        entry = self.residency.get(key)
        if entry is not None and entry.state is ResidencyState.RESIDENT and not entry.pinned:
            self.residency.start_unloading(key)

    @rule(key=st.sampled_from(KEYS), hits=st.integers(0, 3), late=st.sampled_from([0.0, 2.0]))
    def request_seen(self, key: ModelKey, hits: int, late: float) -> None:
        self.residency.touch(key, self.now - late, hits)

    @rule(key=st.sampled_from(KEYS), pinned=st.booleans())
    def operator_pins(self, key: ModelKey, pinned: bool) -> None:
        if pinned:
            self.residency.pin(key)
        else:
            self.residency.unpin(key)

    @rule()
    def trim_is_a_no_op_within_capacity(self) -> None:
        assert self.residency.plan_trim(self.now) == Admit()

    @invariant()
    def capacity_is_never_exceeded(self) -> None:
        r = self.residency
        assert r.capacity.holds(r.usage()), (r.usage(), r.capacity)

    @invariant()
    def pins_are_reflected_in_entries(self) -> None:
        pins = self.residency.pins()
        for entry in self.residency.entries():
            assert entry.pinned == (entry.key in pins)


ResidencyMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
TestResidencyMachine = ResidencyMachine.TestCase

"""``bench/RESULTS.md``: the machine, the exact command, one table per protocol, then any extra sections.

A table has one row per scenario x upstream x concurrency, in the order the rows were measured, with
requests/s, p50 and p99 latency and errors. Sections are Markdown written by the scenarios that need more
than a table (cold misses, route timing...), added after the tables in the order given.

Besides rows, scenarios leave ``Findings``: what the daemon saw during a measurement (``DaemonTraffic``),
the Envoy worker count each scenario ran with, whole sections and one-line notes. ``overhead_section``
compares two scenarios' rows point by point against the issue's criteria (``OverheadCriteria``).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.load import LoadSettings, Protocol, Result, find_h2load
from bench.standin import find_nginx
from tfscachectl.envoy_launcher import find_envoy_binary
from tfscachectl.errors import ProcessError

VERSION_TIMEOUT_S = 10.0
_UNKNOWN = "unknown"
_KIB = 1024


@dataclass(frozen=True, slots=True)
class Row:
    """One measured point: a scenario (``(a) direct``...), an upstream, a protocol and a concurrency."""

    scenario: str
    upstream: str
    protocol: Protocol
    concurrency: int
    result: Result
    envoy_cpu_us: float | None = None
    """The Envoy in the path: its CPU time (all threads) per request it handled over the whole run, warm-up
    included, in µs; None when no Envoy is in the path (or it was not read)."""
    round_rps: tuple[float, ...] = ()
    """When the point was measured in several rounds (``scenarios.median_round``): each round's requests/s;
    the row is the median one."""


@dataclass(frozen=True, slots=True)
class Section:
    """Extra Markdown under a ``##`` heading."""

    title: str
    body: str


@dataclass(frozen=True, slots=True)
class DaemonTraffic:
    """What the daemon's counters said while one scenario was measured against one upstream.

    ``ext_proc_requests``: requests Envoy asked the ext_proc server about
    (``tfscache_daemon_requests_total``), from just before the first check request to just after the last
    load. ``fast_path_requests``: requests Envoy served on fast-path routes over the same span and a little
    after (``..._fast_path_requests_total``, read from Envoy's route counters every recency interval).
    ``measured_requests``: requests in h2load's
    measured windows (its warm-ups and the checks come on top of them).
    """

    scenario: str
    upstream: str
    measured_requests: int
    ext_proc_requests: int
    fast_path_requests: int
    fast_path_on: bool
    """Whether hits are expected to bypass ext_proc (false: every request is meant to reach it)."""

    @property
    def as_expected(self) -> bool:
        if self.fast_path_on:
            return self.ext_proc_requests == 0
        return self.ext_proc_requests >= self.measured_requests


@dataclass
class Findings:
    """What the scenarios found besides their rows, for the sections after the tables (collected in order)."""

    daemon_traffic: list[DaemonTraffic] = field(default_factory=list)
    envoy_workers: dict[str, int] = field(default_factory=dict)
    """Scenario label -> Envoy's worker threads (``--concurrency``) as its admin ``/server_info`` said."""
    paired_baselines: dict[str, list[Row]] = field(default_factory=dict)
    """Scenario label -> rows of a baseline measured point by point right before it (not in the tables)."""
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclass(frozen=True, slots=True)
class OverheadCriteria:
    """The issue's bar for the cache on hits against the fast upstream, at every concurrency."""

    min_throughput_ratio: float = 0.90
    max_added_p50_ms: float = 0.5


@dataclass(frozen=True, slots=True)
class Machine:
    cpu_model: str
    cpus: int
    usable_cpus: int
    memory_gib: float
    kernel: str
    versions: tuple[tuple[str, str], ...]

    def markdown(self) -> str:
        lines = [
            f"- CPU: {self.cpus} x {self.cpu_model} ({self.usable_cpus} usable by this process, `nproc`)",
            f"- Memory: {self.memory_gib:.1f} GiB",
            f"- Kernel: Linux {self.kernel}",
            *(f"- {name}: {version}" for name, version in self.versions),
        ]
        return "\n".join(lines)


def _cpuinfo() -> tuple[str, int]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or _UNKNOWN, os.cpu_count() or 0
    models = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    return (models[0] if models else _UNKNOWN), (len(models) or os.cpu_count() or 0)


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / _KIB / _KIB
    except OSError:
        pass
    return math.nan


def _first_line_of(argv: Sequence[str]) -> str:
    """The first non-empty output line of a ``--version``-style command (stdout or stderr)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return _UNKNOWN
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return lines[0] if lines else _UNKNOWN


def tool_versions() -> tuple[tuple[str, str], ...]:
    """Envoy, h2load, nginx and Python, each as its own ``--version`` says (``unknown`` if missing)."""
    versions: list[tuple[str, str]] = []
    for name, find, flag in (
        ("Envoy", find_envoy_binary, "--version"),
        ("h2load", find_h2load, "--version"),
        ("nginx", find_nginx, "-v"),
    ):
        try:
            binary = find()
        except ProcessError:
            versions.append((name, "not installed"))
            continue
        versions.append((name, _first_line_of([str(binary), flag]).removeprefix(str(binary)).strip()))
    versions.append(("Python", f"{platform.python_implementation()} {platform.python_version()}"))
    return tuple(versions)


def describe_machine() -> Machine:
    cpu_model, cpus = _cpuinfo()
    return Machine(
        cpu_model=cpu_model,
        cpus=cpus,
        usable_cpus=len(os.sched_getaffinity(0)),
        memory_gib=_memory_gib(),
        kernel=platform.release(),
        versions=tool_versions(),
    )


def _number(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def results_table(rows: Sequence[Row], protocol: Protocol) -> str:
    """The Markdown table of ``protocol``'s rows, in measurement order."""
    lines = [
        "| scenario | upstream | concurrency | requests/s | p50 ms | p99 ms | errors / requests "
        "| Envoy CPU µs / request |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.protocol is not protocol:
            continue
        result = row.result
        lines.append(
            f"| {row.scenario} | {row.upstream} | {row.concurrency} | {_number(result.rps, 0)} "
            f"| {_number(result.p50_ms, 3)} | {_number(result.p99_ms, 3)} "
            f"| {result.errors} / {result.requests} | {_optional(row.envoy_cpu_us, 1)} |"
        )
    return "\n".join(lines)


def _optional(value: float | None, digits: int) -> str:
    return "-" if value is None else _number(value, digits)


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 100:.1f} %"


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3f}"


def _verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def overhead_section(
    rows: Sequence[Row],
    *,
    title: str,
    upstream: str,
    baseline: str,
    candidates: Sequence[str],
    paired: Mapping[str, Sequence[Row]] | None = None,
    criteria: OverheadCriteria = OverheadCriteria(),
) -> Section:
    """Each candidate scenario against ``baseline``, both against ``upstream``, at every protocol and
    concurrency measured for both: throughput ratio and added p50, each against ``criteria``.

    A candidate in ``paired`` is compared with those baseline rows (measured point by point, alternating with
    it); any other with the baseline's own rows in ``rows``.
    """
    ratio_head = f"req/s ratio (>= {criteria.min_throughput_ratio * 100:g} %)"
    added_head = f"added p50 ms (<= {criteria.max_added_p50_ms:g})"
    lines = [
        f"Against the {upstream}, each point compared with {baseline} at the same protocol and concurrency. "
        f'"paired": that {baseline} point was measured alternately with the cache\'s, each in turn '
        "first (b c, c b, b c...), so that both share the machine's state, in as many rounds as the last "
        f'column has (each side\'s row is its round of median requests/s); "(b) rows": the {baseline} '
        "rows of the tables above.",
        "",
        f"| scenario | protocol | concurrency | {baseline} | {baseline} req/s | req/s | {ratio_head} | met "
        f"| {baseline} p50 ms | p50 ms | {added_head} | met | {baseline} Envoy CPU µs / request "
        "| Envoy CPU µs / request | rounds: req/s ratio |",
        "|---|---|---:|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---|",
    ]
    header_lines = len(lines)
    verdicts: list[str] = []
    for candidate in candidates:
        own = (paired or {}).get(candidate)
        source = "paired" if own is not None else "(b) rows"
        base = {
            (r.protocol, r.concurrency): r
            for r in (own if own is not None else rows)
            if (r.scenario, r.upstream) == (baseline, upstream)
        }
        failed: list[str] = []
        compared = 0
        for row in rows:
            if (row.scenario, row.upstream) != (candidate, upstream):
                continue
            reference_row = base.get((row.protocol, row.concurrency))
            if reference_row is None:
                continue
            reference = reference_row.result
            compared += 1
            result = row.result
            ratio = result.rps / reference.rps if reference.rps > 0 else math.nan
            added = result.p50_ms - reference.p50_ms
            ratio_met = ratio >= criteria.min_throughput_ratio
            added_met = added <= criteria.max_added_p50_ms
            lines.append(
                f"| {candidate} | {row.protocol.value} | {row.concurrency} | {source} "
                f"| {_number(reference.rps, 0)} | {_number(result.rps, 0)} | {_percent(ratio)} "
                f"| {_verdict(ratio_met)} | {_number(reference.p50_ms, 3)} | {_number(result.p50_ms, 3)} "
                f"| {_signed(added)} | {_verdict(added_met)} | {_optional(reference_row.envoy_cpu_us, 1)} "
                f"| {_optional(row.envoy_cpu_us, 1)} | {_round_ratios(reference_row, row)} |"
            )
            if not ratio_met:
                failed.append(f"{row.protocol.value} c={row.concurrency} throughput {_percent(ratio)}")
            if not added_met:
                failed.append(f"{row.protocol.value} c={row.concurrency} p50 {_signed(added)} ms")
        if compared == 0:
            verdicts.append(f"- {candidate}: not compared (it or {baseline} was not measured in this run).")
        elif failed:
            verdicts.append(f"- {candidate}: the criteria are **not met** at: {'; '.join(failed)}.")
        else:
            verdicts.append(f"- {candidate}: the criteria are met at all {compared} points.")
    if len(lines) == header_lines:
        lines = lines[:1]  # nothing compared: no empty table
    return Section(title, "\n".join([*lines, "", *verdicts]))


def _round_ratios(reference: Row, row: Row) -> str:
    """Each round's throughput ratio, when both sides were measured in the same number of rounds."""
    if len(row.round_rps) < 2 or len(row.round_rps) != len(reference.round_rps):
        return "-"
    pairs = zip(row.round_rps, reference.round_rps, strict=True)
    ratios = [mine / theirs if theirs > 0 else math.nan for mine, theirs in pairs]
    return ", ".join(_percent(ratio) for ratio in ratios)


def daemon_traffic_section(title: str, traffic: Sequence[DaemonTraffic]) -> Section:
    """A row per measured cache scenario: requests measured, seen by ext_proc, served on fast-path routes."""
    lines = [
        "Read from the daemon's `/metrics` just before the first check request of a scenario and just after "
        "its last load. The fast-path count comes from Envoy's route counters, which the daemon reads every "
        "recency interval, so it is read again until it covers the measured requests (it also counts the "
        "warm-ups and checks).",
        "",
        "| scenario | upstream | requests measured | reached ext_proc | served on fast-path routes "
        "| as expected |",
        "|---|---|---:|---:|---:|---|",
    ]
    for item in traffic:
        expected = "none reach ext_proc" if item.fast_path_on else "every request reaches ext_proc"
        lines.append(
            f"| {item.scenario} | {item.upstream} | {item.measured_requests:,} | {item.ext_proc_requests:,} "
            f"| {item.fast_path_requests:,} | {_verdict(item.as_expected)} ({expected}) |"
        )
    return Section(title, "\n".join(lines))


def render_results(
    rows: Sequence[Row],
    *,
    command: str,
    settings: LoadSettings,
    machine: Machine,
    sections: Sequence[Section] = (),
    started: datetime | None = None,
) -> str:
    """The whole ``RESULTS.md``."""
    when = (started or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# tfscache benchmark results",
        f"Measured {when} on this machine:\n\n{machine.markdown()}",
        f"Command (from the repository's root):\n\n```\n{command}\n```",
        "## How it is measured\n\n"
        f"Each point is one h2load run (the paired comparisons below: several, see there): "
        f"{settings.warm_up_s:g} s of warm-up, then {settings.duration_s:g} s "
        "measured, with as many connections as the concurrency and one request in flight on each "
        f"(`-c N -m 1`, {settings.threads} h2load thread(s)). The request is a small `half_plus_two` predict "
        "(input `x` = [1.0, 2.0, 5.0]). REST is HTTP/1.1 (`--h1`); gRPC is HTTP/2 with one "
        "`PredictRequest` frame as the body. p50 and p99 are nearest-rank percentiles of the per-request "
        "times in h2load's `--log-file`; requests/s and the percentiles count only 2xx answers, errors are "
        "the requests without one. h2load sees HTTP status only, so a gRPC error inside a 200 answer would "
        "not count as one: before each gRPC load a real grpcio `Predict` call checks `grpc-status` and the "
        'response through the same path. "Envoy CPU µs / request": where an Envoy is in the path, the CPU '
        "time of its process (`/proc/<pid>/stat`, all threads) over the whole run, warm-up included, divided "
        "by the requests its HTTP connection managers counted over the same run (`downstream_rq_total`); it "
        "depends less than throughput on other work sharing the machine, but includes Envoy's background "
        "work (timers, stats, admin reads such as the daemon's recency feed), which weighs more at low "
        "request rates.",
        f"## REST (HTTP/1.1)\n\n{results_table(rows, Protocol.REST)}",
        f"## gRPC (HTTP/2)\n\n{results_table(rows, Protocol.GRPC)}",
        *(f"## {section.title}\n\n{section.body.strip()}" for section in sections),
    ]
    return "\n\n".join(parts) + "\n"


def write_results(
    path: Path,
    rows: Sequence[Row],
    *,
    command: str,
    settings: LoadSettings,
    sections: Sequence[Section] = (),
    machine: Machine | None = None,
    started: datetime | None = None,
) -> Path:
    """Write ``RESULTS.md`` to ``path`` (the machine is described now unless given); returns ``path``."""
    text = render_results(
        rows,
        command=command,
        settings=settings,
        machine=machine or describe_machine(),
        sections=sections,
        started=started,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path

"""``python -m bench.run [--duration S] [--warm-up S] [--out bench/RESULTS.md] [--only a,b,c,c1000,d,cold]``.

Starts the upstreams, measures every selected scenario against each of them (a scenario may be limited to
some upstreams), writes ``RESULTS.md``: the tables, then the cache's overhead against the fast upstream,
what the cache scenarios found, the setup, and how long the run took with the load average around it.
Every process it starts is stopped by PID when it ends, fails, is interrupted (Ctrl-C) or gets SIGTERM.
Without ``--work-dir`` its files (models, configurations, logs, h2load logs) go to a temporary directory
removed at the end.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, MappingProxyType

from bench.cache_scenarios import (
    CACHE_SCENARIOS,
    HITS,
    HITS_AMONG_ROUTES,
)
from bench.load import LoadSettings
from bench.payloads import write_payloads
from bench.report import (
    Findings,
    Row,
    Section,
    daemon_traffic_section,
    overhead_section,
    write_results,
)
from bench.scenarios import (
    DEFAULT_CONCURRENCIES,
    SCENARIOS,
    STAND_IN,
    STATIC_ENVOY,
    UPSTREAMS,
    BenchContext,
    Scenario,
    Upstream,
)
from tests.harness.processes import ProcessRegistry
from tests.harness.serving import REPO_ROOT
from tfscachectl.errors import TfsCacheError

DESCRIPTION = "Measure tfscache's request paths side by side and write RESULTS.md."
DEFAULT_OUT = REPO_ROOT / "bench" / "RESULTS.md"
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
#: Every scenario, by the letter ``--only`` takes, in the order they are measured against each upstream.
ALL_SCENARIOS: Mapping[str, Scenario] = MappingProxyType({**SCENARIOS, **CACHE_SCENARIOS})


def _letters(text: str) -> tuple[str, ...]:
    letters = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [letter for letter in letters if letter not in ALL_SCENARIOS]
    if unknown or not letters:
        raise argparse.ArgumentTypeError(f"scenarios are among {','.join(ALL_SCENARIOS)}, not {text!r}")
    return letters


def _concurrencies(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"concurrencies are positive integers, not {text!r}")
    return values


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"a number of seconds, not {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    defaults = LoadSettings()
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=DESCRIPTION)
    parser.add_argument(
        "--duration", type=_seconds, default=defaults.duration_s, help="measured seconds per point"
    )
    parser.add_argument(
        "--warm-up", type=_seconds, default=defaults.warm_up_s, help="warm-up seconds per point"
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrencies,
        default=DEFAULT_CONCURRENCIES,
        help="comma-separated connection counts (default 1,16,64)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the results")
    parser.add_argument(
        "--only",
        type=_letters,
        default=tuple(ALL_SCENARIOS),
        help=f"comma-separated scenarios among {','.join(ALL_SCENARIOS)} (default: all)",
    )
    parser.add_argument("--work-dir", type=Path, help="keep models, configurations and logs here")
    return parser


def command_line(argv: Sequence[str]) -> str:
    """How this run was started, as one would type it at the repository's root."""
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(REPO_ROOT))
    except ValueError:
        shown = str(python)
    return shlex.join([shown, "-m", "bench.run", *argv])


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the ``finally`` that stops the processes runs."""
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """A second Ctrl-C must not cut the stopping of the processes short."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _work_dir(kept: Path | None) -> Iterator[Path]:
    if kept is not None:
        kept.mkdir(parents=True, exist_ok=True)
        yield kept.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="tfscache-bench-") as temporary:
        yield Path(temporary)


def _load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def _setup_section(findings: Findings) -> Section:
    workers = findings.envoy_workers
    lines = []
    if workers:
        listed = ", ".join(f"{label}: {count}" for label, count in workers.items())
        lines.append(
            "- Envoy worker threads, as each Envoy's admin `/server_info` reports them (`--concurrency` is "
            f"given to none of them, so each runs Envoy's default, one per hardware thread): {listed}."
        )
    lines += [f"- {note}" for note in findings.notes]
    lines.append(
        "- Cache stacks: one node (the bundled backend, its agent), the daemon with its default settings "
        "except where a scenario says, and Envoy configured by the daemon. Against the nginx stand-in the "
        "daemon forwards to nginx while the agent still loads the models into the bundled backend."
    )
    return Section("Setup of the scenarios", "\n".join(lines))


def sections(rows: Sequence[Row], findings: Findings) -> list[Section]:
    """Everything after the tables, in the report's order."""
    found = [
        overhead_section(
            rows,
            title="Cache overhead against the fast upstream",
            upstream=STAND_IN,
            baseline=STATIC_ENVOY,
            candidates=[HITS, HITS_AMONG_ROUTES],
            paired=findings.paired_baselines,
        ),
        *findings.sections,
    ]
    if findings.daemon_traffic:
        found.append(daemon_traffic_section("Hits did not reach the daemon", findings.daemon_traffic))
    found.append(_setup_section(findings))
    return found


def run(args: argparse.Namespace, command: str) -> Path:
    """Measure and write the results; returns their path."""
    settings = LoadSettings(duration_s=args.duration, warm_up_s=args.warm_up)
    started_at, started, load_before = datetime.now(UTC), time.monotonic(), _load_average()
    with _work_dir(args.work_dir) as work_dir:
        registry = ProcessRegistry(work_dir / "processes")
        try:
            ctx = BenchContext(
                registry, work_dir, write_payloads(work_dir / "payloads"), settings, args.concurrency
            )
            rows: list[Row] = []
            upstreams: list[Upstream] = []
            for start in UPSTREAMS:
                upstreams.append(start(ctx))
                print(f"started {upstreams[-1].name}", flush=True)
            for upstream in upstreams:
                for letter in args.only:
                    scenario = ALL_SCENARIOS[letter]
                    if not scenario.runs_against(upstream):
                        continue
                    print(f"measuring {scenario.label} against {upstream.name}", flush=True)
                    rows += scenario.run(ctx, upstream)
        finally:
            with _signals_ignored():
                registry.stop_all()
    elapsed = time.monotonic() - started
    run_section = Section(
        "This run",
        f"{len(rows)} points measured in {elapsed / 60:.1f} minutes. Load average (1, 5, 15 min) before the "
        f"run: {load_before}; after: {_load_average()} (`os.getloadavg()`).",
    )
    return write_results(
        args.out,
        rows,
        command=command,
        settings=settings,
        sections=[*sections(rows, ctx.findings), run_section],
        started=started_at,
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(arguments)
    with _sigterm_interrupts():
        try:
            path = run(args, command_line(arguments))
        except KeyboardInterrupt:
            print("interrupted: every process started was stopped", file=sys.stderr)
            return EXIT_INTERRUPTED
        except TfsCacheError as exc:
            print(f"bench failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

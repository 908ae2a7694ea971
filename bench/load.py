"""Load with h2load, and what it measured: requests/s, p50 and p99 latency, errors.

One run is ``h2load`` with ``c`` connections and one request in flight per connection (``-c c -m 1``): a
warm-up (``--warm-up-time``), then a fixed measured duration (``-D``). REST goes over HTTP/1.1 (``--h1``);
gRPC over HTTP/2 as a POST with ``content-type: application/grpc`` and ``te: trailers`` whose body is one
gRPC frame. h2load prints no percentiles, so every run writes ``--log-file`` (one line per request of the
measured window: start time in µs since the epoch, HTTP status or -1 for a request that failed, µs until the
end of its response) and the numbers come from that file.

h2load sees only HTTP status: a gRPC error carried in a 200 answer's ``grpc-status`` trailer counts as a
success here. The scenarios check ``grpc-status`` with a real gRPC client before each load.
"""

from __future__ import annotations

import enum
import math
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.payloads import GRPC_CONTENT_TYPE, GRPC_PREDICT_PATH, REST_CONTENT_TYPE
from tfscachectl.errors import ConfigError, ProcessError

H2LOAD_PROGRAM = "h2load"
#: Allowed beyond warm-up + duration before h2load is stopped as hung.
H2LOAD_EXIT_MARGIN_S = 30.0
_MICROS_PER_MS = 1000.0
_FAILED_STATUS = -1


class Protocol(enum.Enum):
    """How a load run talks to its target."""

    REST = "REST"
    GRPC = "gRPC"


@dataclass(frozen=True, slots=True)
class LoadTarget:
    """Where requests go and what they carry: ``http://host:port/path`` and a body file."""

    protocol: Protocol
    address: str
    """``host:port``"""
    path: str
    body: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}{self.path}"


def rest_target(address: str, path: str, body: Path) -> LoadTarget:
    return LoadTarget(Protocol.REST, address, path, body)


def grpc_target(address: str, body: Path) -> LoadTarget:
    return LoadTarget(Protocol.GRPC, address, GRPC_PREDICT_PATH, body)


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """How long each run lasts, and h2load's own thread count (the machine's cores are shared with the
    servers under test)."""

    duration_s: float = 5.0
    warm_up_s: float = 1.0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.warm_up_s < 0 or self.threads < 1:
            raise ConfigError(
                f"a load needs a positive duration, no negative warm-up and a thread, not {self}"
            )


@dataclass(frozen=True, slots=True)
class Result:
    """One run's measured window.

    ``requests`` counts every request h2load finished in the window; ``errors`` those without a 2xx status
    (failed ones included). ``rps`` and the percentiles count only the 2xx ones (NaN when there are none).
    """

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    seconds: float


def find_h2load() -> Path:
    found = shutil.which(H2LOAD_PROGRAM)
    if found is None:
        raise ProcessError(f"{H2LOAD_PROGRAM} is not installed: run bench/tools.sh (Debian: nghttp2-client)")
    return Path(found)


def _duration(seconds: float) -> str:
    """h2load's duration syntax: whole milliseconds."""
    return f"{round(seconds * _MICROS_PER_MS)}ms"


def h2load_argv(
    binary: Path, target: LoadTarget, concurrency: int, settings: LoadSettings, log_file: Path
) -> list[str]:
    """The h2load command line for ``concurrency`` connections with one request in flight on each."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    argv = [
        str(binary),
        f"--clients={concurrency}",
        "--max-concurrent-streams=1",
        f"--threads={min(settings.threads, concurrency)}",
        f"--duration={_duration(settings.duration_s)}",
        f"--warm-up-time={_duration(settings.warm_up_s)}",
        f"--data={target.body}",
        f"--log-file={log_file}",
    ]
    if target.protocol is Protocol.REST:
        argv += ["--h1", f"--header=content-type: {REST_CONTENT_TYPE}"]
    else:
        argv += [f"--header=content-type: {GRPC_CONTENT_TYPE}", "--header=te: trailers"]
    argv.append(target.url)
    return argv


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN for none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def parse_log(lines: Iterable[str], seconds: float) -> Result:
    """The result of one measured window of ``seconds`` from h2load's ``--log-file`` lines."""
    latencies_us: list[float] = []
    requests = 0
    for line in lines:
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        requests += 1
        status, micros = int(fields[1]), float(fields[2])
        if status != _FAILED_STATUS and 200 <= status < 300:
            latencies_us.append(micros)
    latencies_us.sort()
    return Result(
        rps=len(latencies_us) / seconds,
        p50_ms=percentile(latencies_us, 0.50) / _MICROS_PER_MS,
        p99_ms=percentile(latencies_us, 0.99) / _MICROS_PER_MS,
        requests=requests,
        errors=requests - len(latencies_us),
        seconds=seconds,
    )


def run_load(target: LoadTarget, concurrency: int, settings: LoadSettings, work_dir: Path) -> Result:
    """Run h2load once against ``target``; its log and output stay in ``work_dir``.

    h2load is stopped (killed by PID) if this is interrupted or it outlives its duration by far.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    stem = f"h2load-{target.protocol.value}-{target.address.replace(':', '_')}-c{concurrency}"
    log_file = work_dir / f"{stem}.log"
    log_file.unlink(missing_ok=True)
    argv = h2load_argv(find_h2load(), target, concurrency, settings, log_file)
    timeout = settings.warm_up_s + settings.duration_s + H2LOAD_EXIT_MARGIN_S
    try:
        finished = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ProcessError(f"h2load against {target.url} did not finish within {timeout:g} s") from exc
    except OSError as exc:
        raise ProcessError(f"cannot run h2load: {exc}") from exc
    (work_dir / f"{stem}.out").write_text(finished.stdout + finished.stderr)
    if finished.returncode != 0:
        raise ProcessError(
            f"h2load against {target.url} exited with {finished.returncode}: "
            f"{(finished.stderr or finished.stdout).strip()[-2000:]}"
        )
    with log_file.open() as lines:
        return parse_log(lines, settings.duration_s)

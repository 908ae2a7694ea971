"""``run_local_stack``: the whole local stack in the foreground, until SIGINT or SIGTERM.

In order: refuse to start next to a running stack (and clear what a killed one left), check every port
and program, generate the example models if they are the store and are not there yet, write the children's
files, start the tiers (backends, agents, daemon, Envoy) waiting for each, report the endpoints, and watch.
Every way out stops every child first (see ``supervisor``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tfscachectl.envoy_launcher import find_envoy_binary
from tfscachectl.local import examples
from tfscachectl.local.endpoints import StackEndpoints
from tfscachectl.local.examples import ExampleModels
from tfscachectl.local.layout import StackLayout
from tfscachectl.local.plan import StackPlan, Tier, plan_stack
from tfscachectl.local.ports import LOOPBACK, allocate_ports
from tfscachectl.local.previous_run import clear_previous_run
from tfscachectl.local.settings import StackSettings
from tfscachectl.local.supervisor import StopRequest, Supervisor
from tfscachectl.modelgen.tenants import TENANT_PREFIX
from tfscachectl.stores.locations import open_store
from tfscachectl.stores.settings import StoreSettings


class StackReporter(Protocol):
    """What the stack tells its user while it starts, runs and stops."""

    def step(self, message: str) -> None: ...

    def ready(self, endpoints: StackEndpoints) -> None: ...

    def stopping(self, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class StackStopped:
    """How the stack ended without an error: by this signal (``SIGINT``, ``SIGTERM``)."""

    signal_name: str


async def run_local_stack(settings: StackSettings, reporter: StackReporter) -> StackStopped:
    """Run the stack until SIGINT or SIGTERM; returns how it was stopped.

    Raises ``ConfigError`` (a port taken, a stack already running, an unknown serving binary),
    ``StoreError`` (the store cannot be listed) and ``ProcessError`` (a child that died or was not ready,
    naming it, with the tail of its log); every child is stopped before anything is raised.
    """
    loop = asyncio.get_running_loop()
    stop = StopRequest()
    stop.install(loop)
    try:
        return await _run(settings, reporter, stop)
    finally:
        stop.remove(loop)


async def _run(settings: StackSettings, reporter: StackReporter, stop: StopRequest) -> StackStopped:
    layout = StackLayout(settings.state_root)
    orphans = await asyncio.to_thread(clear_previous_run, layout.state_file)
    if orphans:
        reporter.step(f"stopped the processes a killed run left behind: {', '.join(orphans)}")
    envoy = find_envoy_binary()
    store = _store_url(settings, layout)
    # Everything that can be checked is checked before the (slow) first generation of the example models.
    _plan(settings, layout, store, envoy)
    _prepare_directories(layout)
    supervisor = Supervisor(
        state_file=layout.state_file,
        state_dir=layout.root,
        ports=(),
        stop=stop,
        stop_grace=settings.timeouts.stop_grace,
        on_tier_ready=lambda tier, seconds: reporter.step(_tier_ready_message(tier, seconds)),
    )
    try:
        if settings.uses_examples and not await _examples_ready(settings, layout, supervisor, reporter):
            return _stopped(stop, reporter)
        example_model = settings.example_model or await asyncio.to_thread(_example_model, settings, store)
        plan = _plan(settings, layout, store, envoy)
        for file in plan.files:
            file.path.parent.mkdir(parents=True, exist_ok=True)
            file.path.write_text(file.text)
        supervisor.ports = plan.ports.all()
        reporter.step(
            f"starting {settings.nodes} serving backend(s) with their node agents, the daemon and Envoy "
            f"(logs in {layout.logs_dir})"
        )
        if not await supervisor.start(plan.tiers):
            return _stopped(stop, reporter)
        reporter.ready(_endpoints(settings, layout, plan, example_model))
        await supervisor.watch()
        return _stopped(stop, reporter)
    finally:
        await supervisor.stop_all()


def _plan(settings: StackSettings, layout: StackLayout, store: str, envoy: Path) -> StackPlan:
    return plan_stack(settings, layout, allocate_ports(settings), store, envoy, os.environ)


def _store_url(settings: StackSettings, layout: StackLayout) -> str:
    if settings.model_dir is not None:
        return str(settings.model_dir.absolute())
    if settings.store is not None:
        return settings.store
    return str(layout.examples_dir)


def _prepare_directories(layout: StackLayout) -> None:
    """A clean ``run/`` (this run's settings, caches and state) and ``logs/`` without old logs."""
    shutil.rmtree(layout.run_dir, ignore_errors=True)
    layout.run_dir.mkdir(parents=True)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    for old in layout.logs_dir.glob("*.log"):
        old.unlink(missing_ok=True)


async def _examples_ready(
    settings: StackSettings, layout: StackLayout, supervisor: Supervisor, reporter: StackReporter
) -> bool:
    """Generate the example models unless they are there; false if a stop was requested meanwhile."""
    wanted = ExampleModels(tenants=settings.example_tenants)
    directory = layout.examples_dir
    if examples.generated(directory, wanted):
        reporter.step(f"example models in {directory}")
        return True
    reporter.step(
        f"generating the example models in {directory} ({len(wanted.models)} TF Serving test models and "
        f"{wanted.tenants} tenant models, with TensorFlow; only on the first run)"
    )
    examples.discard_scratch(directory)
    try:
        done = await supervisor.run_once(
            examples.generation_spec(directory, wanted, layout.log("modelgen")), settings.timeouts.examples
        )
        if done:
            examples.install(directory, wanted)
        return done
    finally:
        examples.discard_scratch(directory)


def _example_model(settings: StackSettings, store: str) -> str | None:
    """The model the printed examples call: the first tenant model in the store, else its first model."""
    if settings.uses_examples:
        return ExampleModels(tenants=settings.example_tenants).first_tenant
    s3 = settings.s3
    names = open_store(
        store,
        StoreSettings(endpoint_url=s3.endpoint_url, region=s3.region, addressing_style=s3.addressing_style),
    ).list_models()
    tenants = [name for name in names if name.startswith(TENANT_PREFIX)]
    candidates = tenants or list(names)
    return candidates[0] if candidates else None


def _endpoints(
    settings: StackSettings, layout: StackLayout, plan: StackPlan, example_model: str | None
) -> StackEndpoints:
    try:
        admin: str | None = layout.envoy_admin_address.read_text().strip() or None
    except OSError:
        admin = None
    return StackEndpoints(
        host=settings.host,
        rest_port=plan.ports.rest,
        grpc_port=plan.ports.grpc,
        admin_address=admin,
        metrics_address=f"{LOOPBACK}:{plan.ports.metrics}",
        admin_api_address=f"{LOOPBACK}:{plan.ports.admin_api}",
        example_model=example_model,
        logs_dir=layout.logs_dir,
        store=plan.store,
        nodes=settings.nodes,
        max_models=settings.max_models,
    )


def _tier_ready_message(tier: Tier, seconds: float) -> str:
    names = ", ".join(child.name for child in tier.children)
    return f"{tier.name} ready in {seconds:.1f} s ({names})"


def _stopped(stop: StopRequest, reporter: StackReporter) -> StackStopped:
    name = stop.signal.name if stop.signal is not None else "a stop request"
    reporter.stopping(f"{name} received: stopping every process")
    return StackStopped(name)

"""Serving the REST application on ``--rest_api_port``."""

from __future__ import annotations

from concurrent.futures import Executor

from aiohttp import web

from tfscachectl.errors import Code
from tfscachectl.tfserving.manager import ServingManager
from tfscachectl.tfserving.metrics import PrometheusConfig, ServingMetrics
from tfscachectl.tfserving.options import ServerOptions
from tfscachectl.tfserving.rest import PrometheusEndpoint, create_rest_app


async def start_rest(
    options: ServerOptions,
    manager: ServingManager,
    executor: Executor,
    metrics: ServingMetrics,
    prometheus: PrometheusConfig,
) -> web.AppRunner:
    def on_request(model: str, api: str, code: Code, seconds: float) -> None:
        # TF Serving labels REST latency with the verb as typed (``predict``), empty for a GET
        metrics.record_request(model, api, "REST", code, seconds)

    app = create_rest_app(
        manager,
        executor,
        timeout_ms=options.rest_api_timeout_in_ms,
        enable_cors=options.rest_api_enable_cors_support,
        prometheus=PrometheusEndpoint(prometheus.path, metrics.render) if prometheus.enabled else None,
        on_request=on_request,
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, options.listen_address, options.rest_api_port, reuse_address=True)
    await site.start()
    return runner

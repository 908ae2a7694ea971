"""Start-up order and shutdown of the bundled backend, as tensorflow_model_server's ``Server::BuildAndStart``.

The initial models are loaded, and waited for, before the gRPC and REST ports open: a client that can connect
can be served. If an initial model fails, the process prints ``Failed to start server. Error: ...`` and exits
with status 255 (TF Serving's -1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from tfscachectl.errors import ServingError
from tfscachectl.tfserving import model_config
from tfscachectl.tfserving.grpc_services import MAX_MESSAGE_BYTES, add_services
from tfscachectl.tfserving.manager import ManagerOptions, ServingManager
from tfscachectl.tfserving.metrics import ServingMetrics, read_monitoring_config
from tfscachectl.tfserving.options import ServerOptions

log = logging.getLogger(__name__)

EXIT_START_FAILED = 255
SHUTDOWN_GRACE_SECONDS = 5.0


def initial_config(options: ServerOptions) -> Any:
    if options.model_config_file is not None:
        return model_config.read_file(options.model_config_file)
    return model_config.single_model_config(options.model_name, options.model_base_path)


def manager_options(options: ServerOptions) -> ManagerOptions:
    return ManagerOptions(
        file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
        max_num_load_retries=options.max_num_load_retries,
        load_retry_interval_seconds=options.load_retry_interval_micros / 1e6,
        allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
        enable_model_warmup=options.enable_model_warmup,
    )


async def serve(options: ServerOptions, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT); returns the process exit status."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    prometheus = read_monitoring_config(options.monitoring_config_file)
    config = initial_config(options)
    executor = ThreadPoolExecutor(max_workers=max(8, 4 * (os.cpu_count() or 1)), thread_name_prefix="tf")
    metrics = ServingMetrics()
    manager = ServingManager(manager_options(options), executor, on_load=metrics.record_load)
    try:
        try:
            await manager.start(config)
        except ServingError as exc:
            print(
                f"Failed to start server. Error: {exc.code.name}: {exc.message}", file=sys.stderr, flush=True
            )
            return EXIT_START_FAILED
        server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ]
        )
        add_services(server, manager, executor, metrics, options.enable_signature_method_name_check)
        grpc_port = server.add_insecure_port(f"{options.listen_address}:{options.port}")
        await server.start()
        print(f"Running gRPC ModelServer at {options.listen_address}:{grpc_port} ...", flush=True)
        rest_runner = None
        if options.rest_api_port:
            from tfscachectl.tfserving.rest_server import start_rest

            rest_runner = await start_rest(options, manager, executor, metrics, prometheus)
            print(
                f"Exporting HTTP/REST API at:{options.listen_address}:{options.rest_api_port} ...", flush=True
            )
        watcher = None
        if options.model_config_file is not None and options.model_config_file_poll_wait_seconds > 0:
            watcher = asyncio.create_task(_watch_config_file(options, manager), name="config-file-poll")
        await stop.wait()
        log.info("shutting_down")
        if watcher is not None:
            watcher.cancel()
        if rest_runner is not None:
            await rest_runner.cleanup()
        await server.stop(SHUTDOWN_GRACE_SECONDS)
        return 0
    finally:
        await manager.stop()
        executor.shutdown(wait=False, cancel_futures=True)


async def _watch_config_file(options: ServerOptions, manager: ServingManager) -> None:
    """``--model_config_file_poll_wait_seconds``: re-read the file and reload; errors are only logged."""
    assert options.model_config_file is not None
    while True:
        await asyncio.sleep(options.model_config_file_poll_wait_seconds)
        try:
            config = model_config.read_file(options.model_config_file)
            await manager.reload(config)
        except ServingError as exc:
            log.error("config_file_reload_failed code=%s error=%r", exc.code.name, exc.message)
        except Exception:
            log.exception("config_file_reload_failed")

"""The gRPC services of TF Serving: ``PredictionService`` and ``ModelService`` (``SessionService`` is not
registered, so it answers UNIMPLEMENTED, as tensorflow_model_server does)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from tfscachectl.errors import Code, ServingError
from tfscachectl.tfserving import inference
from tfscachectl.tfserving.manager import ModelSpecQuery, ServingManager
from tfscachectl.tfserving.metrics import ServingMetrics
from tfscachectl.tfserving.wire_errors import grpc_status_message

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 2**31 - 1
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


def grpc_code(code: Code) -> grpc.StatusCode:
    return _GRPC_CODES[int(code)]


def query_from_spec(spec: Any) -> ModelSpecQuery:
    which = spec.WhichOneof("version_choice")
    return ModelSpecQuery(
        name=spec.name,
        version=spec.version.value if which == "version" else None,
        label=spec.version_label if which == "version_label" else None,
    )


def _timeout_ms(context: grpc.aio.ServicerContext[Any, Any]) -> int | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > 2**31 / 1000:
        return None
    return max(int(remaining * 1000), 1)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        manager: ServingManager,
        executor: Executor,
        metrics: ServingMetrics,
        check_method_name: bool = False,
    ) -> None:
        self._manager = manager
        self._executor = executor
        self._metrics = metrics
        self._check = check_method_name

    async def _run(
        self,
        api: str,
        spec: Any | None,
        work: Callable[..., Any],
        context: grpc.aio.ServicerContext[Any, Any],
        *args: Any,
    ) -> Any:
        started = time.monotonic()
        name = spec.name if spec is not None else ""
        try:
            if spec is None:
                raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
            with self._manager.acquire(query_from_spec(spec)) as handle:
                loop = asyncio.get_running_loop()
                response = await loop.run_in_executor(self._executor, work, handle.model, *args)
        except ServingError as exc:
            self._metrics.record_request(name, api, "GRPC", exc.code, time.monotonic() - started)
            await context.abort(grpc_code(exc.code), grpc_status_message(exc.message))
        self._metrics.record_request(name, api, "GRPC", Code.OK, time.monotonic() - started)
        return response

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        spec = request.model_spec if request.HasField("model_spec") else None
        return await self._run("Predict", spec, inference.predict, context, request, _timeout_ms(context))

    async def Classify(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        spec = request.model_spec if request.HasField("model_spec") else None
        return await self._run(
            "Classify", spec, inference.classify, context, request, _timeout_ms(context), self._check
        )

    async def Regress(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        spec = request.model_spec if request.HasField("model_spec") else None
        return await self._run(
            "Regress", spec, inference.regress, context, request, _timeout_ms(context), self._check
        )

    async def MultiInference(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if not request.tasks:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "MultiInferenceRequest must contain at least one task."
            )
        return await self._run(
            "MultiInference",
            request.tasks[0].model_spec,
            inference.multi_inference,
            context,
            request,
            _timeout_ms(context),
            self._check,
        )

    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        spec = request.model_spec if request.HasField("model_spec") else None
        try:
            if spec is not None:
                inference.validate_metadata_request(request)
        except ServingError as exc:
            await context.abort(grpc_code(exc.code), grpc_status_message(exc.message))
        return await self._run("GetModelMetadata", spec, inference.get_model_metadata, context, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(self, manager: ServingManager) -> None:
        self._manager = manager

    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if not request.HasField("model_spec"):
                raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
            spec = request.model_spec
            version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
            statuses = self._manager.model_status(spec.name, version)
        except ServingError as exc:
            await context.abort(grpc_code(exc.code), grpc_status_message(exc.message))
        return status_response(statuses)

    async def HandleReloadConfigRequest(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        response = model_management_pb2.ReloadConfigResponse()
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise ServingError(
                    Code.INVALID_ARGUMENT,
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                    "Only ModelConfigList is currently supported",
                )
            names = [m.name for m in request.config.model_config_list.config]
            log.info("reload_config_requested models=%s", ",".join(names))
            # The reload is the manager's, not this call's: a client that gives up does not cancel it, and
            # it keeps the config lock until it ends, as TF Serving's reload does.
            await asyncio.shield(self._manager.start_reload(request.config))
        except ServingError as exc:
            log.error("reload_config_failed code=%s error=%r", exc.code.name, exc.message)
            response.status.error_code = int(exc.code)
            response.status.error_message = exc.message
            await context.abort(grpc_code(exc.code), grpc_status_message(exc.message))
        return response


def status_response(statuses: list[Any]) -> Any:
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        item = response.model_version_status.add()
        item.version = status.version
        item.state = int(status.state)
        item.status.error_code = int(status.error_code)
        item.status.error_message = status.error_message
    return response


def add_services(
    server: grpc.aio.Server,
    manager: ServingManager,
    executor: Executor,
    metrics: ServingMetrics,
    check_method_name: bool,
) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, executor, metrics, check_method_name), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)

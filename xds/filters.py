"""The HTTP filters of the two listeners: gRPC field extraction, ext_proc, router.

- ``grpc_field_extraction`` (gRPC listener only) reads ``model_spec`` out of the first request message of
  every TF Serving method that has one and writes it into the dynamic metadata namespace
  ``envoy.filters.http.grpc_field_extraction``, keyed by field path (``model_spec.name``...; see
  ``GRPC_MODEL_FIELDS``, which follows the daemon's request parsing). It buffers that first message, so
  it runs before ext_proc's header call.
- ``set_filter_state`` (gRPC listener only, ``xds.fastpath.model_key_filter``) writes the model key made
  of the extracted fields and clears the route cache, so fast-path routes can match gRPC requests.
- ``ext_proc`` sends the request headers only (never a body) to the daemon, with the extracted fields
  forwarded as metadata; its answer may name the node (``x-tfscache-node``) and the model header. It is
  disabled in the chain and enabled per route (``ext_proc_enabled``): only the slow path uses it.
- ``router`` forwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from envoy_data_plane.envoy.config.core.v3 import DataSource, GrpcService, GrpcServiceEnvoyGrpc
from envoy_data_plane.envoy.config.route.v3 import FilterConfig
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import (
    ExternalProcessor,
    ExtProcOverrides,
    ExtProcPerRoute,
    MetadataOptions,
    MetadataOptionsMetadataNamespaces,
    ProcessingMode,
    ProcessingModeBodySendMode,
    ProcessingModeHeaderSendMode,
)
from envoy_data_plane.envoy.extensions.filters.http.grpc_field_extraction.v3 import (
    FieldExtractions,
    GrpcFieldExtractionConfig,
    RequestFieldValueDisposition,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import HttpFilter
from envoy_data_plane.google.protobuf import Any

from tfscachectl.core.requests import GRPC_MODEL_METHODS
from xds import names
from xds.extensions import pack, seconds
from xds.view import Limits, Timeouts

#: Fully qualified gRPC method -> the field paths extracted from its first request message, as the daemon's
#: request parsing (``tfscachectl.core.requests``) reads them: the ``model_spec`` fields, and for
#: MultiInference those of the first task plus a field that shows a task was sent. The paths are also the
#: keys of the values in the ``envoy.filters.http.grpc_field_extraction`` metadata that ext_proc receives
#: (each a list of strings; an absent field gives an empty list).
GRPC_MODEL_FIELDS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {name: method.extracted_fields for name, method in GRPC_MODEL_METHODS.items()}
)


def grpc_field_extraction(descriptor_set: bytes) -> HttpFilter:
    """Extract ``model_spec`` from TF Serving's gRPC requests, given the API's FileDescriptorSet."""
    config = GrpcFieldExtractionConfig(
        descriptor_set=DataSource(inline_bytes=descriptor_set),
        extractions_by_method={
            method: FieldExtractions(
                request_field_extractions={path: RequestFieldValueDisposition() for path in paths}
            )
            for method, paths in GRPC_MODEL_FIELDS.items()
        },
    )
    return HttpFilter(name=names.FILTER_GRPC_FIELD_EXTRACTION, typed_config=pack(config))


def ext_proc(timeouts: Timeouts, limits: Limits) -> HttpFilter:
    """Ask the daemon about every request, headers only; fail closed.

    ``message_timeout`` covers a whole model load (the ensure deadline plus a margin): Envoy's default of
    200 ms would fail every cold request.
    """
    config = ExternalProcessor(
        grpc_service=GrpcService(
            envoy_grpc=GrpcServiceEnvoyGrpc(
                cluster_name=names.CLUSTER_EXT_PROC, max_receive_message_length=limits.message_bytes
            )
        ),
        failure_mode_allow=False,
        processing_mode=ProcessingMode(
            request_header_mode=ProcessingModeHeaderSendMode.SEND,
            response_header_mode=ProcessingModeHeaderSendMode.SKIP,
            request_body_mode=ProcessingModeBodySendMode.NONE,
            response_body_mode=ProcessingModeBodySendMode.NONE,
            request_trailer_mode=ProcessingModeHeaderSendMode.SKIP,
            response_trailer_mode=ProcessingModeHeaderSendMode.SKIP,
        ),
        message_timeout=seconds(timeouts.ext_proc_message_s),
        stat_prefix="tfscache",
        metadata_options=MetadataOptions(
            forwarding_namespaces=MetadataOptionsMetadataNamespaces(untyped=[names.GRPC_FIELDS_NAMESPACE]),
            receiving_namespaces=MetadataOptionsMetadataNamespaces(untyped=[names.LB_NAMESPACE]),
        ),
    )
    return HttpFilter(name=names.FILTER_EXT_PROC, typed_config=pack(config), disabled=True)


def router() -> HttpFilter:
    return HttpFilter(name=names.FILTER_ROUTER, typed_config=pack(Router()))


def ext_proc_disabled() -> dict[str, Any]:
    """A route's ``typed_per_filter_config`` that turns ext_proc off where the filter chain has it on."""
    return {names.FILTER_EXT_PROC: pack(ExtProcPerRoute(disabled=True))}


def ext_proc_enabled() -> dict[str, Any]:
    """A route's ``typed_per_filter_config`` that turns the (disabled by default) ext_proc filter on.

    Envoy refuses an empty per-route config, so it carries an empty ``overrides``: nothing else changes.
    """
    enabled = FilterConfig(disabled=False, config=pack(ExtProcPerRoute(overrides=ExtProcOverrides())))
    return {names.FILTER_EXT_PROC: pack(enabled)}

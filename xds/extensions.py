"""Small pieces every builder uses: ``Any`` packing, typed extension configs, addresses, durations,
config sources and HTTP/2 options.

betterproto2's ``Any.pack`` only knows a message type once the module defining it was imported; the
builders import each config class they pack, so the type is always registered by the time it is packed.
"""

from __future__ import annotations

import datetime

import betterproto2
from envoy_data_plane.envoy.config.core.v3 import (
    Address as EnvoyAddress,
)
from envoy_data_plane.envoy.config.core.v3 import (
    AggregatedConfigSource,
    ApiVersion,
    ConfigSource,
    Http2ProtocolOptions,
    SocketAddress,
    TypedExtensionConfig,
)
from envoy_data_plane.google.protobuf import Any

from xds.view import Address, Limits

#: HTTP/2 flow-control windows Envoy accepts.
HTTP2_WINDOW_BYTES = (65_535, 2**31 - 1)


def pack(message: betterproto2.Message) -> Any:
    """``message`` in a ``google.protobuf.Any``."""
    return Any.pack(message)


def extension(name: str, message: betterproto2.Message) -> TypedExtensionConfig:
    """A typed extension config: Envoy picks the extension by the packed type, ``name`` is for humans."""
    return TypedExtensionConfig(name=name, typed_config=pack(message))


def seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)


def socket_address(address: Address) -> EnvoyAddress:
    return EnvoyAddress(socket_address=SocketAddress(address=address.host, port_value=address.port))


def ads() -> ConfigSource:
    """Resources that come over the same ADS stream as the resource naming them."""
    return ConfigSource(ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3)


def http2_options(limits: Limits) -> Http2ProtocolOptions:
    """HTTP/2 windows as large as the largest message (Envoy's default is 16 MiB).

    A stream's buffer limit is its window, and filters that buffer a message (the gRPC field extraction
    buffers the whole first request message) refuse anything larger.
    """
    low, high = HTTP2_WINDOW_BYTES
    window = max(low, min(limits.message_bytes, high))
    return Http2ProtocolOptions(initial_stream_window_size=window, initial_connection_window_size=window)

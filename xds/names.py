"""Names shared by the resources, the daemon and Envoy: resources, headers, filters, metadata namespaces."""

from __future__ import annotations

from typing import Final

# Listeners and their route configurations (one each for REST and gRPC).
LISTENER_REST: Final = "tfscache_rest"
LISTENER_GRPC: Final = "tfscache_grpc"
ROUTES_REST: Final = "tfscache_rest"
ROUTES_GRPC: Final = "tfscache_grpc"
#: With the gRPC model-key module, gRPC misses leave the gRPC listener for this internal listener, where the
#: field extraction and ext_proc run (so a hit's filter chain has neither); its routes are inline.
LISTENER_GRPC_MISS: Final = "tfscache_grpc_miss"
ROUTES_GRPC_MISS: Final = "tfscache_grpc_miss"

# Clusters. The node clusters take their endpoints from EDS, under the same names.
CLUSTER_NODES_REST: Final = "tfscache_nodes_rest"
CLUSTER_NODES_GRPC: Final = "tfscache_nodes_grpc"
CLUSTER_EXT_PROC: Final = "tfscache_ext_proc"
#: The internal listener ``LISTENER_GRPC_MISS`` as an upstream of the gRPC listener.
CLUSTER_GRPC_MISS: Final = "tfscache_grpc_miss"

# Headers the daemon sets through ext_proc: the chosen node (IP:port of the listener's kind, REST or gRPC)
# and the model (for logs and the default route's hash policy).
NODE_HEADER: Final = "x-tfscache-node"
MODEL_HEADER: Final = "x-tfscache-model"

# HTTP filters, by the names Envoy knows them under (also the keys of per-route filter configs).
FILTER_EXT_PROC: Final = "envoy.filters.http.ext_proc"
FILTER_GRPC_FIELD_EXTRACTION: Final = "envoy.filters.http.grpc_field_extraction"
FILTER_ROUTER: Final = "envoy.filters.http.router"
#: The dynamic-modules HTTP filter running tfscache's gRPC model-key module (``envoy/modules``).
FILTER_GRPC_MODEL_KEY: Final = "tfscache.grpc_model_key"

#: The dynamic metadata namespace the gRPC field extraction writes to (fixed by Envoy), forwarded to ext_proc.
GRPC_FIELDS_NAMESPACE: Final = FILTER_GRPC_FIELD_EXTRACTION
#: The namespace ``override_host`` can read a chosen host from, accepted from ext_proc.
LB_NAMESPACE: Final = "envoy.lb"

# gRPC methods of TF Serving, as Envoy's ``:path``.
RELOAD_CONFIG_PATH: Final = "/tensorflow.serving.ModelService/HandleReloadConfigRequest"

"""The bundled TF Serving-compatible backend.

It behaves like ``tensorflow_model_server`` in everything the cache depends on (see ``docs/tfserving.md``):
the same gRPC services and REST API, the same reload semantics, the same errors. Modules:

- ``options``: the command-line flags, as ``tensorflow_model_server`` spells them
- ``model_config``: the text ``ModelServerConfig``, parsed and validated
- ``versions``: version directory names and version policies (pure)
- ``states``: servable states and the monitor that never forgets them
- ``servable``: one loaded SavedModel version (TF1 v1 loader, as TF Serving loads them)
- ``manager``: aspired versions, loading with retries, unloading after in-flight requests, labels, reloads
- ``inference``: Predict, Classify, Regress, MultiInference, GetModelMetadata on protos
- ``json_codec`` / ``rest_paths`` / ``rest``: the REST API
- ``grpc_services``: the gRPC services
- ``metrics``: the Prometheus text exposition
- ``server``: start-up order and shutdown
"""

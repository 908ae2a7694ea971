"""tfscache: a model cache and load balancer for TensorFlow Serving, with Envoy as its data plane."""

__version__ = "0.1.0.dev0"

"""The node agent: the single writer of one TF Serving's model set.

- ``settings``: ``AgentSettings``, from a YAML file and ``TFSCACHE_AGENT_*`` environment variables
- ``controller``: ``TFServingController``, the full model config sent with ``HandleReloadConfigRequest``
  and the wait for a version to be AVAILABLE (or to fail) under the agent's own deadlines
- ``node``: ``NodeAgent``, ensure / evict / pin / status on top of the pure core, the store and the controller
- ``api``: the agent's gRPC API for the daemon and the CLI
- ``metrics``: its Prometheus metrics
"""

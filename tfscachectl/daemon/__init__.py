"""The control daemon (``tfscachectl serve``): Envoy's control plane and the slow path of requests.

- ``extproc``: the ext_proc server; reads the model a request names, asks a ``RequestRouter`` for a node,
  answers Envoy with the node's address or with TF Serving's error
- ``router``: placement and the agents' ensure calls behind ``RequestRouter``

Modules are imported where they are used; importing this package loads nothing else.
"""

"""How TF Serving puts an error on the wire, shared by the backend and the daemon (no TensorFlow import).

- gRPC: the status message, truncated to 1024 characters plus ``...TRUNCATED`` (grpc_status_util.cc);
- REST outside ``/v1/``: libevent's own 404 page (``evhttp_send_error(req, 404, NULL)``), HTML, not JSON.
"""

from __future__ import annotations

MAX_GRPC_MESSAGE = 1024
TRUNCATED = "...TRUNCATED"
NOT_FOUND_PAGE = (
    b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"
)


def grpc_status_message(message: str) -> str:
    """A status message as TF Serving sends it over gRPC (long ones truncated)."""
    if len(message) > MAX_GRPC_MESSAGE:
        return message[:MAX_GRPC_MESSAGE] + TRUNCATED
    return message

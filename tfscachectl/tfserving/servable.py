"""One loaded SavedModel version, loaded the way TF Serving loads it.

TF Serving loads every SavedModel, TF 1 graph or TF 2, through the v1 loader (``LoadSavedModel`` with the
``serve`` tag) into its own graph and session, runs the restore and init ops, and then calls
``Session::Run`` for each request. This module does the same with TensorFlow's Python API.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfscachectl.errors import Code, ServingError

SERVE_TAG = "serve"
_MAX_CALLABLES = 256


@dataclass(frozen=True, order=True)
class ServableId:
    name: str
    version: int

    def __str__(self) -> str:
        return f"{{name: {self.name} version: {self.version}}}"


def _tf() -> Any:
    """TensorFlow, imported on first use: importing it costs seconds and hundreds of MB."""
    import tensorflow as tf

    return tf


class LoadedModel:
    """A SavedModel version in its own graph and session."""

    def __init__(self, servable_id: ServableId, path: Path, tags: Sequence[str] = (SERVE_TAG,)) -> None:
        tf = _tf()
        self.id = servable_id
        self.path = path
        self._graph = tf.Graph()
        config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
        self._session = tf.compat.v1.Session(graph=self._graph, config=config)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._callables: dict[tuple[tuple[str, ...], tuple[str, ...], int], Any] = {}
        try:
            with self._graph.as_default():
                self.meta_graph = tf.compat.v1.saved_model.loader.load(self._session, list(tags), str(path))
        except Exception as exc:
            self._session.close()
            raise _load_error(path, exc) from exc
        self._graph.finalize()

    @property
    def signatures(self) -> Mapping[str, Any]:
        """Signature name to ``SignatureDef`` proto."""
        return self.meta_graph.signature_def  # type: ignore[no-any-return]

    def run(
        self,
        feeds: Mapping[str, Any],
        fetches: Sequence[str],
        timeout_ms: int | None = None,
    ) -> list[Any]:
        """Run the session: ``feeds`` maps tensor names to numpy arrays; returns numpy arrays.

        Like TF Serving's ``Session::Run`` (and unlike ``tf.Session.run``), feeds are not checked against
        the placeholders' static shapes: a scalar placeholder accepts a batch, as in TF Serving.
        """
        tf = _tf()
        names = tuple(feeds)
        run = self._callable(names, tuple(fetches), timeout_ms or 0)
        try:
            return list(run(*(feeds[n] for n in names)))
        except tf.errors.OpError as exc:
            raise ServingError(Code(exc.error_code), exc.message) from exc
        except (ValueError, TypeError) as exc:
            raise ServingError(Code.INVALID_ARGUMENT, str(exc)) from exc

    def _callable(self, feeds: tuple[str, ...], fetches: tuple[str, ...], timeout_ms: int) -> Any:
        key = (feeds, fetches, timeout_ms)
        with self._lock:
            found = self._callables.get(key)
            if found is None:
                from tensorflow.core.protobuf import config_pb2

                options = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
                if timeout_ms > 0:
                    options.run_options.timeout_in_ms = timeout_ms
                if len(self._callables) >= _MAX_CALLABLES:
                    self._callables.clear()
                found = self._session._make_callable_from_options(options)
                self._callables[key] = found
            return found

    def close(self) -> None:
        """Close the session and hand the freed memory back to the operating system."""
        if not self._closed.is_set():
            self._closed.set()
            with self._lock:
                self._callables.clear()
            self._session.close()
            del self._session, self._graph, self.meta_graph
            gc.collect()
            _release_free_memory()


def _release_free_memory() -> None:
    """glibc keeps freed heap memory for reuse; ``malloc_trim`` hands it back to the system."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


def _load_error(path: Path, exc: Exception) -> ServingError:
    """TF Serving's status for a SavedModel that does not load."""
    code = getattr(exc, "error_code", None)
    message = getattr(exc, "message", None) or str(exc)
    if code is not None:
        return ServingError(Code(code), message)
    if "does not exist" in message:
        return ServingError(
            Code.NOT_FOUND,
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}. "
            "Check that the directory exists and that you have the right permissions for accessing it.",
        )
    if "Cannot parse" in message or "Error parsing" in message:
        return ServingError(Code.DATA_LOSS, f"Can't parse {path}/saved_model.pb as binary proto")
    return ServingError(Code.INTERNAL, f"Failed to load SavedModel at {path}: {message}")

"""Saving a TF 1 graph the way TF 1 exporters did: ``SavedModelBuilder`` with the ``serve`` tag."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tfscachectl.modelgen._tensorflow import import_tensorflow

SERVE_TAG = "serve"

# TF Serving's half_plus_* test models carry one small asset file with this name and content.
ASSET_FILENAME = "foo.txt"
ASSET_CONTENT = "asset-file-contents"


class Tf1Graph(AbstractContextManager["Tf1Graph"]):
    """A fresh graph and session to build one TF 1 model in; closed on exit."""

    def __init__(self) -> None:
        tf = import_tensorflow()
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        self._graph_context = self.graph.as_default()

    def __enter__(self) -> Tf1Graph:
        self._graph_context.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._graph_context.__exit__(*exc_info)
        self.session.close()


def ref_variable(value: float, name: str) -> Any:
    """A TF 1 reference variable (``VariableV2``), as TF 1 exporters created them."""
    tf = import_tensorflow()
    return tf.compat.v1.Variable(value, dtype=tf.float32, name=name, use_resource=False)


def asset_file_assignment(source_dir: Path) -> tuple[Any, Any]:
    """The TF 1 asset pattern: a file registered in ``ASSET_FILEPATHS`` and an op that uses its name.

    Returns the asset path tensor (for the builder's assets collection) and the assignment op to run
    at load time (the main op). ``source_dir`` must outlive the save: the builder copies the file from it.
    """
    tf = import_tensorflow()
    source = source_dir / ASSET_FILENAME
    source.write_text(ASSET_CONTENT)
    asset_path = tf.constant(str(source))
    tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.ASSET_FILEPATHS, asset_path)
    filename = tf.compat.v1.Variable(
        ASSET_FILENAME, name="filename_tensor", trainable=False, collections=[], use_resource=False
    )
    return asset_path, filename.assign(ASSET_FILENAME)


def save_tf1_model(
    graph: Tf1Graph,
    export_dir: Path,
    signatures: Mapping[str, Any],
    *,
    assets: list[Any] | None = None,
    main_op: Any = None,
) -> None:
    """Initialise the graph's variables and save it as a SavedModel with the ``serve`` tag."""
    tf = import_tensorflow()
    graph.session.run(tf.compat.v1.global_variables_initializer())
    builder = tf.compat.v1.saved_model.Builder(str(export_dir))
    builder.add_meta_graph_and_variables(
        graph.session,
        [SERVE_TAG],
        signature_def_map=dict(signatures),
        assets_collection=assets,
        main_op=main_op,
    )
    builder.save()


def asset_source_dir() -> tempfile.TemporaryDirectory[str]:
    """A scratch directory for asset files the builder copies into the SavedModel."""
    return tempfile.TemporaryDirectory(prefix="tfscache-modelgen-assets-")

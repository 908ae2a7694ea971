"""The generated models load the way TF Serving loads them and compute what TF Serving's test models do.

Every model is loaded with TensorFlow's v1 loader (``serve`` tag) and its signatures' tensors are run in the
session. Where TF Serving's real testdata is present, the generated signatures are compared with the real
files' signatures: names, input and output keys, dtypes, shapes and method names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfscachectl.modelgen import (
    CATALOG,
    TESTDATA_EQUIVALENTS,
    ModelStoreTree,
    VersionNaming,
    model_store_layout,
    tenant_name,
    tenant_number,
    tenant_weights,
)
from tfscachectl.modelgen.half_plus_three import LEGACY_REGRESS_SIGNATURE

pytestmark = pytest.mark.integration

# half_plus_two_cpu lacks classify_x2_to_y3, which the two-version model (and ours) has.
ALLOWED_EXTRA_SIGNATURES = {"half_plus_two": {"classify_x2_to_y3"}}


@pytest.fixture(scope="module")
def tf() -> Any:
    return pytest.importorskip("tensorflow")


@contextmanager
def loaded(tf: Any, export_dir: Path) -> Iterator[tuple[Any, Any]]:
    """A session with the SavedModel loaded the way TF Serving loads it, and its MetaGraphDef."""
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(export_dir))
        yield session, meta_graph


def run_signature(session: Any, meta_graph: Any, name: str, feeds: Mapping[str, Any], output: str) -> Any:
    signature = meta_graph.signature_def[name]
    feed_dict = {signature.inputs[key].name: value for key, value in feeds.items()}
    return session.run(signature.outputs[output].name, feed_dict=feed_dict)


def examples(tf: Any, *xs: float) -> list[bytes]:
    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
            )
        ).SerializeToString()
        for x in xs
    ]


def version_dirs(base_path: Path) -> list[Path]:
    return sorted(p for p in base_path.iterdir() if p.is_dir())


# --- layout -----------------------------------------------------------------------------------------------


def test_store_layout_has_every_model_and_tf_serving_version_names(generated_models: ModelStoreTree) -> None:
    for name, model in CATALOG.items():
        names = [p.name for p in version_dirs(generated_models.base_path(name))]
        assert names == [model.naming.directory_name(v) for v in model.versions]
    assert [p.name for p in version_dirs(generated_models.base_path("half_plus_two_2_versions"))] == [
        "00000123",
        "00000124",
    ]
    assert [p.name for p in version_dirs(generated_models.base_path(tenant_name(1)))] == ["1"]
    assert (generated_models.base_path("half_plus_two") / "00000123" / "assets" / "foo.txt").read_text() == (
        "asset-file-contents"
    )


def test_two_versions_are_byte_identical(generated_models: ModelStoreTree) -> None:
    v123, v124 = version_dirs(generated_models.base_path("half_plus_two_2_versions"))
    files = sorted(p.relative_to(v123) for p in v123.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(v124) for p in v124.rglob("*") if p.is_file())
    for relative in files:
        assert (v123 / relative).read_bytes() == (v124 / relative).read_bytes()


def test_layout_rejects_unknown_models(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="no_such_model"):
        model_store_layout(tmp_path, ["half_plus_two", "no_such_model"])
    assert not any(tmp_path.iterdir())


def test_names_and_version_naming() -> None:
    assert tenant_name(1) == "tenant-0001"
    assert tenant_name(12345) == "tenant-12345"
    assert tenant_number("tenant-0042") == 42
    with pytest.raises(ValueError, match="not a tenant"):
        tenant_number("half_plus_two")
    assert VersionNaming.PADDED.directory_name(123) == "00000123"
    assert VersionNaming.PLAIN.directory_name(1) == "1"
    assert len({tenant_weights(n) for n in range(1, 200)}) == 199


# --- values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["half_plus_two", "half_plus_two_2_versions"])
def test_half_plus_two_tf1(tf: Any, generated_models: ModelStoreTree, name: str) -> None:
    for version_dir in version_dirs(generated_models.base_path(name)):
        with loaded(tf, version_dir) as (session, meta_graph):
            y = run_signature(session, meta_graph, "serving_default", {"x": [[2.0], [3.0], [4.0]]}, "y")
            np.testing.assert_allclose(y, [[3.0], [3.5], [4.0]])
            ex = examples(tf, 2.0, 80.0)
            np.testing.assert_allclose(
                run_signature(session, meta_graph, "regress_x_to_y", {"inputs": ex}, "outputs"),
                [[3.0], [42.0]],
            )
            np.testing.assert_allclose(
                run_signature(session, meta_graph, "regress_x_to_y2", {"inputs": ex}, "outputs"),
                [[4.0], [43.0]],
            )
            np.testing.assert_allclose(
                run_signature(session, meta_graph, "classify_x_to_y", {"inputs": ex}, "scores"),
                [[3.0], [42.0]],
            )
            x2 = {"inputs": [[2.0]]}
            np.testing.assert_allclose(
                run_signature(session, meta_graph, "regress_x2_to_y3", x2, "outputs"), [[4.0]]
            )
            np.testing.assert_allclose(
                run_signature(session, meta_graph, "classify_x2_to_y3", x2, "scores"), [[4.0]]
            )


def test_half_plus_three(tf: Any, generated_models: ModelStoreTree) -> None:
    (version_dir,) = version_dirs(generated_models.base_path("half_plus_three"))
    with loaded(tf, version_dir) as (session, meta_graph):
        np.testing.assert_allclose(
            run_signature(session, meta_graph, "serving_default", {"x": [[2.0]]}, "y"), [[4.0]]
        )
        regress = run_signature(
            session, meta_graph, LEGACY_REGRESS_SIGNATURE, {"inputs": examples(tf, 2.0)}, "outputs"
        )
        np.testing.assert_allclose(regress, [[4.0]])


def test_half_plus_two_tf2(tf: Any, generated_models: ModelStoreTree) -> None:
    (version_dir,) = version_dirs(generated_models.base_path("half_plus_two_tf2"))
    assert (version_dir / "fingerprint.pb").is_file()
    with loaded(tf, version_dir) as (session, meta_graph):
        assert {s.method_name for k, s in meta_graph.signature_def.items() if not k.startswith("__")} == {
            "tensorflow/serving/predict"
        }
        np.testing.assert_allclose(
            run_signature(session, meta_graph, "serving_default", {"x": [2.0]}, "y"), [3.0]
        )
        ex = {"inputs": examples(tf, 2.0, 80.0)}
        np.testing.assert_allclose(
            run_signature(session, meta_graph, "regress_x_to_y", ex, "outputs"), [[3.0], [42.0]]
        )
        np.testing.assert_allclose(
            run_signature(session, meta_graph, "regress_x_to_y2", ex, "outputs"), [[4.0], [43.0]]
        )
        np.testing.assert_allclose(
            run_signature(session, meta_graph, "classify_x_to_y", ex, "scores"), [[3.0], [42.0]]
        )
        x2 = {"inputs": [2.0]}
        np.testing.assert_allclose(
            run_signature(session, meta_graph, "regress_x2_to_y3", x2, "outputs"), [4.0]
        )
        np.testing.assert_allclose(
            run_signature(session, meta_graph, "classify_x2_to_y3", x2, "scores"), [4.0]
        )


def test_counter_is_stateful(tf: Any, generated_models: ModelStoreTree) -> None:
    (version_dir,) = version_dirs(generated_models.base_path("counter"))
    with loaded(tf, version_dir) as (session, meta_graph):
        calls = [
            ("get_counter", {}),
            ("incr_counter", {}),
            ("reset_counter", {}),
            ("incr_counter", {}),
            ("incr_counter_by", {"delta": 3.0}),
            ("get_counter", {}),
        ]
        results = [float(run_signature(session, meta_graph, name, feeds, "output")) for name, feeds in calls]
        assert results == [0.0, 1.0, 0.0, 1.0, 4.0, 4.0]


def test_tenants(tf: Any, generated_models: ModelStoreTree) -> None:
    tenants = [name for name in generated_models.names if name.startswith("tenant-")]
    assert len(tenants) >= 2
    for name in tenants:
        (version_dir,) = version_dirs(generated_models.base_path(name))
        weights = tenant_weights(tenant_number(name))
        with loaded(tf, version_dir) as (session, meta_graph):
            signature = meta_graph.signature_def["serving_default"]
            assert [d.size for d in signature.inputs["x"].tensor_shape.dim] == [-1]
            y = run_signature(session, meta_graph, "serving_default", {"x": [1.0, 2.0, -3.0]}, "y")
            np.testing.assert_allclose(y, [weights.predict(x) for x in (1.0, 2.0, -3.0)])


def test_slow_runs_its_loop_as_many_times_as_asked(tf: Any, generated_models: ModelStoreTree) -> None:
    (version_dir,) = version_dirs(generated_models.base_path("slow"))
    assert [p.name for p in version_dir.iterdir() if p.is_file()] == ["saved_model.pb"]  # no variables
    with loaded(tf, version_dir) as (session, meta_graph):
        signature = meta_graph.signature_def["serving_default"]
        assert signature.method_name == "tensorflow/serving/predict"
        assert signature.inputs["iterations"].dtype == tf.int64.as_datatype_enum
        assert list(signature.inputs["iterations"].tensor_shape.dim) == []
        for iterations in (0, 1, 1000):
            count = run_signature(session, meta_graph, "serving_default", {"iterations": iterations}, "count")
            assert count.dtype == np.int64
            assert int(count) == iterations


def test_broken_model_does_not_load(tf: Any, generated_models: ModelStoreTree) -> None:
    (version_dir,) = version_dirs(generated_models.base_path("broken"))
    with pytest.raises(OSError, match="Cannot parse file"), loaded(tf, version_dir):
        pass


# --- signatures against TF Serving's own files --------------------------------------------------------------


@dataclass(frozen=True)
class TensorSummary:
    dtype: str
    shape: tuple[int, ...] | None  # None: unknown rank


@dataclass(frozen=True)
class SignatureSummary:
    method_name: str
    inputs: Mapping[str, TensorSummary]
    outputs: Mapping[str, TensorSummary]


def signature_summaries(tf: Any, export_dir: Path) -> dict[str, SignatureSummary]:
    """The serving signatures of a SavedModel, read from ``saved_model.pb`` without loading it."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((export_dir / "saved_model.pb").read_bytes())
    (meta_graph,) = [m for m in saved_model.meta_graphs if "serve" in m.meta_info_def.tags]

    def tensors(infos: Any) -> dict[str, TensorSummary]:
        return {
            key: TensorSummary(
                dtype=tf.dtypes.as_dtype(info.dtype).name,
                shape=None
                if info.tensor_shape.unknown_rank
                else tuple(d.size for d in info.tensor_shape.dim),
            )
            for key, info in infos.items()
        }

    return {
        name: SignatureSummary(signature.method_name, tensors(signature.inputs), tensors(signature.outputs))
        for name, signature in meta_graph.signature_def.items()
        if not name.startswith("__")  # TF 2's __saved_model_init_op is not a serving signature
    }


@pytest.mark.parametrize("name", TESTDATA_EQUIVALENTS)
def test_signatures_match_tf_serving_testdata(
    tf: Any, generated_models: ModelStoreTree, testdata_dir: Path, name: str
) -> None:
    model = CATALOG[name]
    assert model.testdata_name is not None
    real_base = testdata_dir / model.testdata_name
    generated_base = generated_models.base_path(name)
    assert [p.name for p in version_dirs(generated_base)] == [p.name for p in version_dirs(real_base)]
    real = signature_summaries(tf, version_dirs(real_base)[0])
    generated = signature_summaries(tf, version_dirs(generated_base)[0])
    extra = set(generated) - set(real)
    assert extra <= ALLOWED_EXTRA_SIGNATURES.get(name, set()), f"unexpected signatures {extra}"
    assert set(real) <= set(generated), f"missing signatures {set(real) - set(generated)}"
    for signature_name, summary in real.items():
        assert generated[signature_name] == summary, signature_name

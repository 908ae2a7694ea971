"""The local-directory model store and the disk cache, on real files (TF Serving's testdata and generated
models): listing, describing, labels, fetching into the cache, verification, interruption and recovery."""

from __future__ import annotations

import filecmp
import os
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness import ProcessRegistry, wait_until
from tests.harness.serving import REPO_ROOT
from tfscachectl.core.refs import ModelKey, ModelRef
from tfscachectl.errors import ModelNotInStoreError, StoreError
from tfscachectl.modelgen.store import ModelStoreTree
from tfscachectl.stores import (
    LABELS_FILE_NAME,
    CachedVersion,
    LocalModelStore,
    StoredFile,
    StoredVersion,
    UnknownLabelError,
    delete_version,
    fetch_version,
    latest_version,
    open_store,
    prepare_cache,
    resolve,
    resolve_label,
    scan_cache,
)
from tfscachectl.stores.disk_cache import staging_root, tree_sizes
from tfscachectl.stores.labels import format_labels

pytestmark = pytest.mark.integration

TWO_VERSIONS = "saved_model_half_plus_two_2_versions"
TESTDATA_MODELS = (
    "saved_model_counter",
    "saved_model_half_plus_three",
    TWO_VERSIONS,
    "saved_model_half_plus_two_cpu",
    "saved_model_half_plus_two_tf2_cpu",
)
PARTIAL_FETCH_TIMEOUT_S = 30.0


@pytest.fixture
def store_root(testdata_dir: Path, tmp_path: Path) -> Path:
    """A writable store: TF Serving's testdata copied under the test's temporary directory."""
    root = tmp_path / "store"
    shutil.copytree(testdata_dir, root)
    return root


@pytest.fixture
def store(store_root: Path) -> LocalModelStore:
    return LocalModelStore(store_root)


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def staged_entries(cache_root: Path) -> list[Path]:
    root = staging_root(cache_root)
    return sorted(root.iterdir()) if root.is_dir() else []


def assert_same_tree(copy: Path, original: Path) -> None:
    assert tree_sizes(copy) == tree_sizes(original)
    for relative in tree_sizes(original):
        assert filecmp.cmp(copy / relative, original / relative, shallow=False), relative


# --- listing and describing ---------------------------------------------------------------------------------


def test_lists_models_and_versions_as_tf_serving_reads_them(testdata_dir: Path) -> None:
    store = LocalModelStore(testdata_dir)  # read-only use of the shared testdata
    assert store.list_models() == TESTDATA_MODELS  # LICENSE and README.md are files, not models
    assert store.list_versions(TWO_VERSIONS) == (123, 124)  # directories 00000123 and 00000124
    assert latest_version(store, TWO_VERSIONS) == 124
    assert resolve(store, ModelRef(TWO_VERSIONS)) == ModelKey(TWO_VERSIONS, 124)
    assert resolve(store, ModelRef(TWO_VERSIONS, 123)) == ModelKey(TWO_VERSIONS, 123)
    with pytest.raises(ModelNotInStoreError, match="no version 7"):
        resolve(store, ModelRef(TWO_VERSIONS, 7))


def test_describe_lists_every_file_with_its_size(testdata_dir: Path) -> None:
    store = LocalModelStore(testdata_dir)
    description = store.describe(TWO_VERSIONS, 123)
    version_dir = testdata_dir / TWO_VERSIONS / "00000123"
    assert description.key == ModelKey(TWO_VERSIONS, 123)
    assert description.sizes == tree_sizes(version_dir)
    assert [file.path for file in description.files] == sorted(tree_sizes(version_dir))
    assert "saved_model.pb" in description.sizes
    assert "variables/variables.index" in description.sizes
    assert description.total_bytes == sum(tree_sizes(version_dir).values())
    assert description.location == version_dir.as_uri()


def test_open_store_takes_paths_and_file_urls(testdata_dir: Path, tmp_path: Path) -> None:
    for url in (str(testdata_dir), testdata_dir.as_uri()):
        store = open_store(url)
        assert isinstance(store, LocalModelStore)
        assert store.list_versions(TWO_VERSIONS) == (123, 124)
    with pytest.raises(StoreError, match="does not exist"):
        open_store(str(tmp_path / "nowhere"))


def test_generated_models_are_a_store(generated_models: ModelStoreTree, cache_root: Path) -> None:
    store = LocalModelStore(generated_models.root)
    assert store.list_models() == tuple(sorted(generated_models.names))
    version = latest_version(store, "half_plus_two")
    path = store.fetch("half_plus_two", version, cache_root)
    assert_same_tree(path, generated_models.base_path("half_plus_two") / f"{version:08d}")


# --- missing models and unsafe names ------------------------------------------------------------------------


def test_a_missing_model_or_version_is_not_found(store: LocalModelStore, cache_root: Path) -> None:
    for call in (
        lambda: store.list_versions("nope"),
        lambda: store.describe("nope", 1),
        lambda: store.read_labels("nope"),
        lambda: store.fetch("nope", 1, cache_root),
        lambda: latest_version(store, "nope"),
    ):
        with pytest.raises(ModelNotInStoreError, match="'nope' is not in the store"):
            call()
    with pytest.raises(ModelNotInStoreError, match="no version 7"):
        store.describe(TWO_VERSIONS, 7)
    with pytest.raises(ModelNotInStoreError, match="no version 7"):
        store.fetch(TWO_VERSIONS, 7, cache_root)
    assert not cache_root.exists() or not any(cache_root.iterdir())


def test_a_model_without_versions_exists_but_has_no_latest(store: LocalModelStore, store_root: Path) -> None:
    (store_root / "empty").mkdir()
    assert store.list_versions("empty") == ()
    with pytest.raises(ModelNotInStoreError, match="has no versions"):
        latest_version(store, "empty")


@pytest.mark.parametrize("name", ["..", "../outside", "/etc", "store/../outside", "a\x00b", "x" * 300])
def test_names_cannot_reach_outside_the_store(tmp_path: Path, cache_root: Path, name: str) -> None:
    # A real model right next to the store root: reachable only by escaping it.
    outside = tmp_path / "outside" / "1"
    outside.mkdir(parents=True)
    (outside / "saved_model.pb").write_bytes(b"secret")
    root = tmp_path / "store"
    root.mkdir()
    store = LocalModelStore(root)
    with pytest.raises(ModelNotInStoreError, match="no model can have this name"):
        store.list_versions(name)
    with pytest.raises(ModelNotInStoreError, match="no model can have this name"):
        store.fetch(name, 1, cache_root)
    assert not cache_root.exists()


def test_versions_cannot_be_negative(store: LocalModelStore, cache_root: Path) -> None:
    with pytest.raises(ModelNotInStoreError, match="no model version can be -1"):
        store.fetch(TWO_VERSIONS, -1, cache_root)


def test_a_version_without_saved_model_is_refused_before_any_download(
    store: LocalModelStore, store_root: Path, cache_root: Path
) -> None:
    (store_root / TWO_VERSIONS / "00000123" / "saved_model.pb").unlink()
    with pytest.raises(StoreError, match="is not a SavedModel"):
        store.fetch(TWO_VERSIONS, 123, cache_root)
    assert not (cache_root / TWO_VERSIONS / "123").exists()


def test_two_directories_for_one_version_are_ambiguous(store: LocalModelStore, store_root: Path) -> None:
    shutil.copytree(store_root / TWO_VERSIONS / "00000123", store_root / TWO_VERSIONS / "123")
    assert store.list_versions(TWO_VERSIONS) == (123, 124)
    with pytest.raises(StoreError, match="ambiguous"):
        store.describe(TWO_VERSIONS, 123)


def test_a_directory_symlink_inside_a_version_is_refused(
    store: LocalModelStore, store_root: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret").write_bytes(b"x")
    (store_root / TWO_VERSIONS / "00000123" / "linked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(StoreError, match="symbolic link to a directory"):
        store.describe(TWO_VERSIONS, 123)


# --- labels -------------------------------------------------------------------------------------------------


def test_labels_resolve_through_the_label_file(store: LocalModelStore, store_root: Path) -> None:
    assert store.read_labels(TWO_VERSIONS) == {}
    (store_root / TWO_VERSIONS / LABELS_FILE_NAME).write_bytes(format_labels({"stable": 123, "canary": 124}))
    assert store.read_labels(TWO_VERSIONS) == {"stable": 123, "canary": 124}
    assert resolve_label(store, TWO_VERSIONS, "stable") == ModelKey(TWO_VERSIONS, 123)
    assert resolve_label(store, TWO_VERSIONS, "canary") == ModelKey(TWO_VERSIONS, 124)
    with pytest.raises(UnknownLabelError, match="no version label 'beta'") as caught:
        resolve_label(store, TWO_VERSIONS, "beta")
    assert caught.value.label == "beta"
    # The label file is not a version.
    assert store.list_versions(TWO_VERSIONS) == (123, 124)


def test_a_label_naming_a_missing_version_is_not_found(store: LocalModelStore, store_root: Path) -> None:
    (store_root / TWO_VERSIONS / LABELS_FILE_NAME).write_text('{"stable": 99}')
    with pytest.raises(ModelNotInStoreError, match="names version 99, which is not in the store"):
        resolve_label(store, TWO_VERSIONS, "stable")


def test_a_broken_label_file_is_a_store_error(store: LocalModelStore, store_root: Path) -> None:
    path = store_root / TWO_VERSIONS / LABELS_FILE_NAME
    path.write_text('{"stable": "one-two-three"}')
    with pytest.raises(StoreError, match="must name an integer version") as caught:
        store.read_labels(TWO_VERSIONS)
    assert str(path) in str(caught.value)


# --- fetching into the disk cache ---------------------------------------------------------------------------


def test_fetch_copies_a_complete_version_into_the_cache(
    store: LocalModelStore, store_root: Path, cache_root: Path
) -> None:
    path = store.fetch(TWO_VERSIONS, 124, cache_root)
    assert path == cache_root / TWO_VERSIONS / "124"
    assert_same_tree(path, store_root / TWO_VERSIONS / "00000124")
    assert staged_entries(cache_root) == []
    assert scan_cache(cache_root) == (
        CachedVersion(ModelKey(TWO_VERSIONS, 124), path, store.describe(TWO_VERSIONS, 124).total_bytes),
    )
    # Fetching again finds the complete copy and leaves it alone.
    inode = path.stat().st_ino
    assert store.fetch(TWO_VERSIONS, 124, cache_root) == path
    assert path.stat().st_ino == inode


def test_concurrent_fetches_of_one_version_end_with_one_copy(
    store: LocalModelStore, cache_root: Path
) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = list(pool.map(lambda _: store.fetch(TWO_VERSIONS, 123, cache_root), range(8)))
    assert set(paths) == {cache_root / TWO_VERSIONS / "123"}
    assert [cached.key for cached in scan_cache(cache_root)] == [ModelKey(TWO_VERSIONS, 123)]
    assert staged_entries(cache_root) == []


def test_a_size_mismatch_is_detected_and_nothing_is_installed(
    store: LocalModelStore, store_root: Path, cache_root: Path
) -> None:
    description = store.describe(TWO_VERSIONS, 123)
    source = store_root / TWO_VERSIONS / "00000123"

    def truncating_copy(file: StoredFile, target: Path) -> None:
        data = (source / file.path).read_bytes()
        target.write_bytes(data[:-1] if file.path == "saved_model.pb" else data)

    with pytest.raises(StoreError, match=r"'saved_model.pb' has \d+ bytes, the store lists \d+"):
        fetch_version(description, cache_root, truncating_copy)
    assert not (cache_root / TWO_VERSIONS / "123").exists()
    assert staged_entries(cache_root) == []


def test_extra_and_missing_files_are_detected(
    store: LocalModelStore, store_root: Path, cache_root: Path
) -> None:
    description = store.describe(TWO_VERSIONS, 123)
    source = store_root / TWO_VERSIONS / "00000123"
    claimed = StoredVersion(
        description.name,
        description.version,
        (*description.files, StoredFile("variables/phantom", 10)),
        description.location,
    )

    def copy_what_exists(file: StoredFile, target: Path) -> None:
        if (source / file.path).exists():
            shutil.copyfile(source / file.path, target)

    with pytest.raises(StoreError, match="'variables/phantom' is missing"):
        fetch_version(claimed, cache_root, copy_what_exists)
    assert not (cache_root / TWO_VERSIONS / "123").exists()

    def copy_and_add(file: StoredFile, target: Path) -> None:
        shutil.copyfile(source / file.path, target)
        (target.parent / "stray").write_bytes(b"?")

    with pytest.raises(StoreError, match="'stray' is not in the store"):
        fetch_version(description, cache_root, copy_and_add)
    assert not (cache_root / TWO_VERSIONS / "123").exists()
    assert staged_entries(cache_root) == []


def test_a_cached_copy_that_differs_from_the_store_is_refused(
    store: LocalModelStore, cache_root: Path
) -> None:
    path = store.fetch(TWO_VERSIONS, 123, cache_root)
    with (path / "variables" / "variables.index").open("ab") as file:
        file.write(b"tampered")
    with pytest.raises(StoreError, match="does not match"):
        store.fetch(TWO_VERSIONS, 123, cache_root)


def test_a_download_failing_midway_leaves_nothing(store: LocalModelStore, cache_root: Path) -> None:
    description = store.describe(TWO_VERSIONS, 123)
    written: list[Path] = []

    def failing_copy(file: StoredFile, target: Path) -> None:
        if written:
            target.write_bytes(b"half")
            raise OSError("the disk went away")
        target.write_bytes(b"x" * file.size)
        written.append(target)

    with pytest.raises(StoreError, match="the disk went away"):
        fetch_version(description, cache_root, failing_copy)
    assert written  # something was written before the failure...
    assert not written[0].exists()  # ...and it is gone
    assert not (cache_root / TWO_VERSIONS / "123").exists()
    assert staged_entries(cache_root) == []


# A fetch that writes part of a file, then blocks until it is killed.
_BLOCKING_FETCH = """
import signal, sys
from pathlib import Path
from tfscachectl.stores import LocalModelStore, fetch_version

store_root, cache_root, name, version = sys.argv[1:]
store = LocalModelStore(Path(store_root))
description = store.describe(name, int(version))

def half_then_block(file, target):
    target.write_bytes(b"x" * (file.size // 2 + 1))
    signal.pause()

fetch_version(description, Path(cache_root), half_then_block)
"""


def test_a_killed_fetch_leaves_nothing_visible_and_is_cleaned_at_start(
    processes: ProcessRegistry, store: LocalModelStore, store_root: Path, cache_root: Path
) -> None:
    child = processes.start(
        "blocking-fetch",
        [sys.executable, "-c", _BLOCKING_FETCH, str(store_root), str(cache_root), TWO_VERSIONS, "123"],
        env={"PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
    )

    def partial_file_written() -> bool:
        return any(size > 0 for entry in staged_entries(cache_root) for size in tree_sizes(entry).values())

    wait_until(partial_file_written, PARTIAL_FETCH_TIMEOUT_S, "a partly fetched file", process=child)
    child.kill()
    assert not (cache_root / TWO_VERSIONS / "123").exists()
    assert scan_cache(cache_root) == ()
    assert staged_entries(cache_root)  # the leftover, invisible to TF Serving

    assert prepare_cache(cache_root) == ()
    assert staged_entries(cache_root) == []
    path = store.fetch(TWO_VERSIONS, 123, cache_root)
    assert_same_tree(path, store_root / TWO_VERSIONS / "00000123")


# --- the cache at start, and deletion ---------------------------------------------------------------------


def test_prepare_cache_finds_complete_versions_and_ignores_the_rest(
    store: LocalModelStore, cache_root: Path
) -> None:
    first = store.fetch(TWO_VERSIONS, 123, cache_root)
    second = store.fetch("saved_model_counter", 123, cache_root)
    (cache_root / "README").write_text("not a model")
    (cache_root / TWO_VERSIONS / "not-a-version").mkdir()
    (cache_root / TWO_VERSIONS / "7").mkdir()  # no saved_model.pb
    (cache_root / ".tfscache-staging" / "fetching-leftover" / "version").mkdir(parents=True)
    found = prepare_cache(cache_root)
    assert [(cached.key, cached.path) for cached in found] == [
        (ModelKey("saved_model_counter", 123), second),
        (ModelKey(TWO_VERSIONS, 123), first),
    ]
    assert found[1].size_bytes == store.describe(TWO_VERSIONS, 123).total_bytes
    assert staged_entries(cache_root) == []


def test_delete_version_removes_it_and_keeps_the_base_path(store: LocalModelStore, cache_root: Path) -> None:
    store.fetch(TWO_VERSIONS, 123, cache_root)
    store.fetch(TWO_VERSIONS, 124, cache_root)
    assert delete_version(cache_root, TWO_VERSIONS, 123)
    assert not delete_version(cache_root, TWO_VERSIONS, 123)
    assert [cached.key for cached in scan_cache(cache_root)] == [ModelKey(TWO_VERSIONS, 124)]
    assert (cache_root / TWO_VERSIONS).is_dir()  # TF Serving's base path stays
    assert staged_entries(cache_root) == []


def test_fetch_and_scan_are_thread_safe_across_models(store: LocalModelStore, cache_root: Path) -> None:
    errors: list[BaseException] = []
    keys = [(name, version) for name in TESTDATA_MODELS for version in store.list_versions(name)]

    def fetch(name: str, version: int) -> None:
        try:
            store.fetch(name, version, cache_root)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=key) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [(cached.key.name, cached.key.version) for cached in scan_cache(cache_root)] == sorted(keys)
    assert os.listdir(staging_root(cache_root)) == []

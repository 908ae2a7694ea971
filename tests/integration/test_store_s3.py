"""The S3 model store against a real S3 server (moto's, from the harness): pagination, multipart downloads,
labels, missing models, retries, broken and interrupted transfers, and the disk cache they leave behind.

Faults are made by a small TCP proxy in front of the S3 server (``FaultyProxy``): it drops connections, or
forwards only so many response bytes on a connection and then cuts or stalls it.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.harness import LOOPBACK, ProcessRegistry, S3Bucket, s3_credentials_env, upload_tree, wait_until
from tests.harness.serving import REPO_ROOT
from tfscachectl.core.refs import ModelKey, ModelRef
from tfscachectl.errors import ModelNotInStoreError, StoreError
from tfscachectl.stores import (
    LABELS_FILE_NAME,
    S3ModelStore,
    StoreSettings,
    UnknownLabelError,
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

MIB = 1024 * 1024
PREFIX = "models"
TWO_VERSIONS = "saved_model_half_plus_two_2_versions"
HALF_PLUS_TWO = "saved_model_half_plus_two_cpu"
BIG = "big"  # half_plus_two with a 12 MiB asset: multipart uploads and downloads
BIG_ASSET = "assets/big.bin"
BIG_ASSET_BYTES = 12 * MIB
PART_BYTES = 5 * MIB  # S3's smallest part
PARTIAL_FETCH_TIMEOUT_S = 60.0
# Attempts per request in tests: enough to show retries, few enough to fail fast.
TEST_MAX_ATTEMPTS = 3
# How often the proxy's threads look at their stop signal.
POLL_S = 0.05


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Credentials from the environment (boto3's standard chain), and nothing from this machine's ~/.aws."""
    for variable in list(os.environ):
        if variable.startswith("AWS_"):
            monkeypatch.delenv(variable)
    env = {
        **s3_credentials_env(),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    return env


@pytest.fixture(scope="module")
def big_model(testdata_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory with one version holding a file large enough for multipart transfers."""
    base = tmp_path_factory.mktemp("big-model")
    shutil.copytree(testdata_dir / HALF_PLUS_TWO / "00000123", base / "1")
    (base / "1" / BIG_ASSET).write_bytes(os.urandom(BIG_ASSET_BYTES))
    return base


@pytest.fixture
def bucket(s3_bucket: S3Bucket, testdata_dir: Path, big_model: Path) -> S3Bucket:
    """The bucket with TF Serving's testdata models and the big model under ``models/``."""
    for name in (TWO_VERSIONS, HALF_PLUS_TWO):
        upload_tree(s3_bucket.client, s3_bucket.name, f"{PREFIX}/{name}", testdata_dir / name)
    upload_tree(s3_bucket.client, s3_bucket.name, f"{PREFIX}/{BIG}", big_model)
    return s3_bucket


def store_settings(endpoint_url: str, **options: Any) -> StoreSettings:
    options.setdefault("max_attempts", TEST_MAX_ATTEMPTS)
    return StoreSettings(endpoint_url=endpoint_url, addressing_style="path", **options)


@pytest.fixture
def store(bucket: S3Bucket) -> Iterator[S3ModelStore]:
    store = S3ModelStore(bucket.name, PREFIX, store_settings(bucket.endpoint_url))
    yield store
    store.close()


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def staged_entries(cache_root: Path) -> list[Path]:
    root = staging_root(cache_root)
    return sorted(root.iterdir()) if root.is_dir() else []


def count_calls(store: S3ModelStore, operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call the store's client makes from now on (retries excluded)."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    store.client.meta.events.register(f"before-parameter-build.s3.{operation}", record)
    return calls


def assert_same_tree(copy: Path, original: Path) -> None:
    assert tree_sizes(copy) == tree_sizes(original)
    for relative in tree_sizes(original):
        assert (copy / relative).read_bytes() == (original / relative).read_bytes(), relative


class FaultyProxy:
    """A loopback TCP proxy to the S3 server that misbehaves on purpose.

    - The first ``drop_connections`` connections are closed at once, unanswered.
    - After ``response_budget`` bytes of responses on one connection, the rest is ``cut`` (both sides closed)
      or ``stall``-ed (nothing more is forwarded; the sockets stay open until the proxy stops).
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        drop_connections: int = 0,
        response_budget: int | None = None,
        after_budget: Literal["cut", "stall"] = "cut",
    ) -> None:
        self.upstream_port = upstream_port
        self.drop_connections = drop_connections
        self.response_budget = response_budget
        self.after_budget = after_budget
        self.dropped = 0
        self.budgets_spent = 0
        self._stop = threading.Event()
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> FaultyProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()  # every thread polls it at least every POLL_S
        self._acceptor.join()  # no new connections, so no new threads
        for thread in self._threads:
            thread.join()
        self._listener.close()
        for sock in self._sockets:
            self._close(sock)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], POLL_S)
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.dropped < self.drop_connections:
                self.dropped += 1
                self._close(client)
                continue
            upstream = socket.create_connection((LOOPBACK, self.upstream_port))
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, None)
            self._spawn(self._pump, upstream, client, self.response_budget)

    def _pump(self, source: socket.socket, target: socket.socket, budget: int | None) -> None:
        forwarded = 0
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([source], [], [], POLL_S)
                if not ready:
                    continue
                data = source.recv(64 * 1024)
                if not data:
                    break
                if budget is not None and forwarded + len(data) > budget:
                    target.sendall(data[: budget - forwarded])
                    with self._lock:
                        self.budgets_spent += 1
                    if self.after_budget == "stall":
                        self._stop.wait()
                    break
                target.sendall(data)
                forwarded += len(data)
        except (OSError, ValueError):  # ValueError: the other direction's pump closed this socket first
            pass
        self._close(source)
        self._close(target)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def upstream_port(bucket: S3Bucket) -> int:
    return int(bucket.endpoint_url.rsplit(":", 1)[1])


# --- listing, describing, resolving -------------------------------------------------------------------------


def test_lists_models_and_versions(store: S3ModelStore) -> None:
    assert store.list_models() == tuple(sorted((BIG, HALF_PLUS_TWO, TWO_VERSIONS)))
    assert store.list_versions(TWO_VERSIONS) == (123, 124)  # keys under 00000123/ and 00000124/
    assert latest_version(store, TWO_VERSIONS) == 124
    assert resolve(store, ModelRef(TWO_VERSIONS)) == ModelKey(TWO_VERSIONS, 124)
    assert store.url == f"s3://{store.bucket}/{PREFIX}"


def test_describe_lists_every_key_with_its_size(store: S3ModelStore, testdata_dir: Path) -> None:
    description = store.describe(TWO_VERSIONS, 123)
    assert description.sizes == tree_sizes(testdata_dir / TWO_VERSIONS / "00000123")
    assert description.location == f"s3://{store.bucket}/{PREFIX}/{TWO_VERSIONS}/00000123/"


def test_open_store_reads_s3_urls(bucket: S3Bucket) -> None:
    store = open_store(f"s3://{bucket.name}/{PREFIX}/", store_settings(bucket.endpoint_url))
    try:
        assert isinstance(store, S3ModelStore)
        assert store.list_versions(TWO_VERSIONS) == (123, 124)
    finally:
        store.close()


def test_the_endpoint_can_come_from_the_standard_boto3_configuration(
    bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", bucket.endpoint_url)
    store = open_store(f"s3://{bucket.name}/{PREFIX}")  # no endpoint_url setting
    try:
        assert store.list_versions(TWO_VERSIONS) == (123, 124)
    finally:
        store.close()


def test_a_store_at_the_bucket_root(bucket: S3Bucket, testdata_dir: Path) -> None:
    upload_tree(bucket.client, bucket.name, "at-root", testdata_dir / HALF_PLUS_TWO)
    store = S3ModelStore(bucket.name, "", store_settings(bucket.endpoint_url))
    try:
        assert store.list_models() == ("at-root", PREFIX)  # "models" could be a model too: it is a prefix
        assert store.list_versions("at-root") == (123,)
    finally:
        store.close()


# --- pagination ---------------------------------------------------------------------------------------------


def test_small_pages_list_everything(bucket: S3Bucket, testdata_dir: Path) -> None:
    for version in (1, 2, 3, 4, 5):
        upload_tree(
            bucket.client, bucket.name, f"{PREFIX}/many/{version}", testdata_dir / HALF_PLUS_TWO / "00000123"
        )
    store = S3ModelStore(bucket.name, PREFIX, store_settings(bucket.endpoint_url, list_page_size=2))
    try:
        listings = count_calls(store, "ListObjectsV2")
        assert store.list_models() == tuple(sorted((BIG, HALF_PLUS_TWO, TWO_VERSIONS, "many")))
        assert len(listings) == 2  # 4 models, 2 a page
        assert all(call["MaxKeys"] == 2 for call in listings)
        listings.clear()
        assert store.list_versions("many") == (1, 2, 3, 4, 5)
        assert len(listings) == 3
        listings.clear()
        description = store.describe("many", 3)
        assert description.sizes == tree_sizes(testdata_dir / HALF_PLUS_TWO / "00000123")
        assert len(listings) > 1 + len(description.files) // 2  # versions, then the files 2 at a time
    finally:
        store.close()


def test_more_than_a_thousand_keys(store: S3ModelStore, bucket: S3Bucket) -> None:
    keys = [f"{PREFIX}/wide/7/assets/{number:04d}.txt" for number in range(1001)]
    keys.append(f"{PREFIX}/wide/7/saved_model.pb")
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda key: bucket.client.put_object(Bucket=bucket.name, Key=key, Body=b"12345"), keys))
    listings = count_calls(store, "ListObjectsV2")
    description = store.describe("wide", 7)
    assert len(description.files) == 1002
    assert description.total_bytes == 5 * 1002
    assert len(listings) == 3  # the version prefixes, then 1000 + 2 files


# --- fetching -----------------------------------------------------------------------------------------------


def test_fetch_downloads_a_complete_version(
    store: S3ModelStore, testdata_dir: Path, cache_root: Path
) -> None:
    path = store.fetch(TWO_VERSIONS, 124, cache_root)
    assert path == cache_root / TWO_VERSIONS / "124"
    assert_same_tree(path, testdata_dir / TWO_VERSIONS / "00000124")
    assert staged_entries(cache_root) == []
    assert [cached.key for cached in scan_cache(cache_root)] == [ModelKey(TWO_VERSIONS, 124)]
    gets = count_calls(store, "GetObject")
    assert store.fetch(TWO_VERSIONS, 124, cache_root) == path  # already cached: nothing downloaded
    assert gets == []


def test_large_files_are_downloaded_in_parts(bucket: S3Bucket, big_model: Path, cache_root: Path) -> None:
    settings = store_settings(
        bucket.endpoint_url, multipart_threshold_bytes=PART_BYTES, multipart_chunk_bytes=PART_BYTES
    )
    store = S3ModelStore(bucket.name, PREFIX, settings)
    try:
        gets = count_calls(store, "GetObject")
        path = store.fetch(BIG, 1, cache_root)
    finally:
        store.close()
    assert_same_tree(path, big_model / "1")
    big_gets = [call for call in gets if call["Key"].endswith(BIG_ASSET)]
    starts = sorted(int(call["Range"].removeprefix("bytes=").split("-")[0]) for call in big_gets)
    assert starts == list(range(0, BIG_ASSET_BYTES, PART_BYTES))  # 3 ranged parts
    assert all("Range" not in call for call in gets if not call["Key"].endswith(BIG_ASSET))


def test_threads_share_one_store(store: S3ModelStore, testdata_dir: Path, cache_root: Path) -> None:
    keys = [(TWO_VERSIONS, 123), (TWO_VERSIONS, 124), (HALF_PLUS_TWO, 123)] * 3
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        paths = set(pool.map(lambda key: store.fetch(key[0], key[1], cache_root), keys))
    assert len(paths) == 3
    assert [(c.key.name, c.key.version) for c in scan_cache(cache_root)] == sorted(set(keys))
    assert staged_entries(cache_root) == []


# --- missing models, bad names, bad keys --------------------------------------------------------------------


def test_a_missing_model_or_version_is_not_found(store: S3ModelStore, cache_root: Path) -> None:
    for call in (
        lambda: store.list_versions("nope"),
        lambda: store.describe("nope", 1),
        lambda: store.read_labels("nope"),
        lambda: store.fetch("nope", 1, cache_root),
    ):
        with pytest.raises(ModelNotInStoreError, match="'nope' is not in the store"):
            call()
    with pytest.raises(ModelNotInStoreError, match="no version 7"):
        store.fetch(TWO_VERSIONS, 7, cache_root)
    # A model whose name is a prefix of another's is still missing.
    with pytest.raises(ModelNotInStoreError):
        store.list_versions("saved_model_half_plus_two")
    assert not cache_root.exists()


def test_a_missing_bucket_is_a_store_error_not_a_missing_model(bucket: S3Bucket) -> None:
    store = S3ModelStore("no-such-bucket-here", PREFIX, store_settings(bucket.endpoint_url))
    try:
        with pytest.raises(StoreError, match="bucket 'no-such-bucket-here' does not exist") as caught:
            store.list_versions(TWO_VERSIONS)
        assert not isinstance(caught.value, ModelNotInStoreError)
    finally:
        store.close()


def test_missing_credentials_are_a_clear_store_error(
    bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = S3ModelStore(bucket.name, PREFIX, store_settings(bucket.endpoint_url))
    try:
        with pytest.raises(StoreError, match=r"no usable AWS credentials.*AWS_ACCESS_KEY_ID"):
            store.list_models()
    finally:
        store.close()


@pytest.mark.parametrize("name", ["..", "../models", "a/b", "\x00", "x" * 300])
def test_names_cannot_reach_other_keys(store: S3ModelStore, cache_root: Path, name: str) -> None:
    calls = count_calls(store, "ListObjectsV2")
    with pytest.raises(ModelNotInStoreError, match="no model can have this name"):
        store.list_versions(name)
    with pytest.raises(ModelNotInStoreError, match="no model can have this name"):
        store.fetch(name, 1, cache_root)
    assert calls == []  # refused before any request


def test_keys_that_would_escape_the_cache_make_the_version_unusable(
    store: S3ModelStore, bucket: S3Bucket, cache_root: Path, tmp_path: Path
) -> None:
    for key in (f"{PREFIX}/evil/1/saved_model.pb", f"{PREFIX}/evil/1/variables/../../../../escaped"):
        bucket.client.put_object(Bucket=bucket.name, Key=key, Body=b"x")
    with pytest.raises(StoreError, match=r"has an empty, '\.' or '\.\.' part"):
        store.fetch("evil", 1, cache_root)
    assert not any(tmp_path.rglob("escaped"))
    assert not (cache_root / "evil" / "1").exists()


def test_names_and_keys_with_characters_that_need_encoding(
    store: S3ModelStore, bucket: S3Bucket, testdata_dir: Path, cache_root: Path
) -> None:
    name = "modèle+1%20&=?"
    upload_tree(bucket.client, bucket.name, f"{PREFIX}/{name}/3", testdata_dir / HALF_PLUS_TWO / "00000123")
    bucket.client.put_object(Bucket=bucket.name, Key=f"{PREFIX}/{name}/3/assets/a b+c%2F.txt", Body=b"odd")
    assert name in store.list_models()
    assert store.list_versions(name) == (3,)
    path = store.fetch(name, 3, cache_root)
    assert path == cache_root / name / "3"
    assert (path / "assets" / "a b+c%2F.txt").read_bytes() == b"odd"


def test_folder_markers_are_ignored(store: S3ModelStore, bucket: S3Bucket) -> None:
    bucket.client.put_object(
        Bucket=bucket.name, Key=f"{PREFIX}/{HALF_PLUS_TWO}/00000123/variables/", Body=b""
    )
    assert "variables/" not in store.describe(HALF_PLUS_TWO, 123).sizes


# --- labels -------------------------------------------------------------------------------------------------


def test_labels_resolve_through_the_label_file(store: S3ModelStore, bucket: S3Bucket) -> None:
    assert store.read_labels(TWO_VERSIONS) == {}
    key = f"{PREFIX}/{TWO_VERSIONS}/{LABELS_FILE_NAME}"
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=format_labels({"stable": 123, "canary": 124}))
    assert store.read_labels(TWO_VERSIONS) == {"stable": 123, "canary": 124}
    assert resolve_label(store, TWO_VERSIONS, "canary") == ModelKey(TWO_VERSIONS, 124)
    with pytest.raises(UnknownLabelError):
        resolve_label(store, TWO_VERSIONS, "beta")
    assert store.list_versions(TWO_VERSIONS) == (123, 124)

    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=b'{"stable": 999}')
    with pytest.raises(ModelNotInStoreError, match="names version 999"):
        resolve_label(store, TWO_VERSIONS, "stable")
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=b'{"stable": [1]}')
    with pytest.raises(StoreError, match=f"label file s3://{bucket.name}/{key}"):
        store.read_labels(TWO_VERSIONS)


# --- retries, broken and interrupted transfers --------------------------------------------------------------


def test_dropped_connections_are_retried(bucket: S3Bucket) -> None:
    with FaultyProxy(upstream_port(bucket), drop_connections=TEST_MAX_ATTEMPTS - 1) as proxy:
        store = S3ModelStore(bucket.name, PREFIX, store_settings(proxy.endpoint_url))
        try:
            assert store.list_versions(TWO_VERSIONS) == (123, 124)
        finally:
            store.close()
    assert proxy.dropped == TEST_MAX_ATTEMPTS - 1


def test_retries_give_up_with_a_store_error(bucket: S3Bucket) -> None:
    with FaultyProxy(upstream_port(bucket), drop_connections=TEST_MAX_ATTEMPTS) as proxy:
        store = S3ModelStore(bucket.name, PREFIX, store_settings(proxy.endpoint_url))
        try:
            with pytest.raises(StoreError, match="listing versions of model") as caught:
                store.list_versions(TWO_VERSIONS)
            assert not isinstance(caught.value, ModelNotInStoreError)
        finally:
            store.close()


def test_a_download_cut_midway_leaves_nothing(bucket: S3Bucket, cache_root: Path) -> None:
    with FaultyProxy(upstream_port(bucket), response_budget=MIB, after_budget="cut") as proxy:
        store = S3ModelStore(bucket.name, PREFIX, store_settings(proxy.endpoint_url, max_attempts=2))
        try:
            with pytest.raises(
                StoreError, match=f"downloading s3://{bucket.name}/{PREFIX}/{BIG}/1/{BIG_ASSET}"
            ):
                store.fetch(BIG, 1, cache_root)
        finally:
            store.close()
    assert proxy.budgets_spent >= 2  # the stream broke, was retried, and broke again
    assert not (cache_root / BIG / "1").exists()
    assert staged_entries(cache_root) == []
    assert scan_cache(cache_root) == ()


def test_a_size_mismatch_is_detected(store: S3ModelStore, bucket: S3Bucket, cache_root: Path) -> None:
    """The object changes between the listing and the download: the copy does not match the listing."""
    key = f"{PREFIX}/{TWO_VERSIONS}/00000123/variables/variables.index"
    replaced: list[str] = []

    def replace_object_once(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == key and not replaced:
            replaced.append(key)
            bucket.client.put_object(Bucket=bucket.name, Key=key, Body=b"a different, longer index file" * 10)

    for operation in ("HeadObject", "GetObject"):
        store.client.meta.events.register(f"before-parameter-build.s3.{operation}", replace_object_once)
    with pytest.raises(StoreError, match=r"'variables/variables.index' has 300 bytes, the store lists \d+"):
        store.fetch(TWO_VERSIONS, 123, cache_root)
    assert replaced
    assert not (cache_root / TWO_VERSIONS / "123").exists()
    assert staged_entries(cache_root) == []


# Fetch one version into a cache through the given endpoint, in a child process.
_FETCH = """
import sys
from pathlib import Path
from tfscachectl.stores import StoreSettings, open_store

url, endpoint, cache_root, name, version = sys.argv[1:]
store = open_store(url, StoreSettings(endpoint_url=endpoint, addressing_style="path", max_attempts=1))
print(store.fetch(name, int(version), Path(cache_root)), flush=True)
"""


def test_a_killed_s3_fetch_leaves_nothing_visible_and_is_cleaned_at_start(
    processes: ProcessRegistry,
    bucket: S3Bucket,
    store: S3ModelStore,
    big_model: Path,
    cache_root: Path,
    aws_environment: dict[str, str],
) -> None:
    with FaultyProxy(upstream_port(bucket), response_budget=MIB, after_budget="stall") as proxy:
        argv = [sys.executable, "-c", _FETCH, f"s3://{bucket.name}/{PREFIX}", proxy.endpoint_url]
        child = processes.start(
            "s3-fetch",
            [*argv, str(cache_root), BIG, "1"],
            env={**aws_environment, "PYTHONPATH": str(REPO_ROOT)},
            cwd=REPO_ROOT,
        )

        def partly_downloaded() -> bool:
            return any(
                size > 0 for entry in staged_entries(cache_root) for size in tree_sizes(entry).values()
            )

        wait_until(partly_downloaded, PARTIAL_FETCH_TIMEOUT_S, "a partly downloaded model", process=child)
        child.kill()
    assert not (cache_root / BIG / "1").exists()
    assert scan_cache(cache_root) == ()
    assert staged_entries(cache_root)  # the leftover, where TF Serving does not look

    assert prepare_cache(cache_root) == ()
    assert staged_entries(cache_root) == []
    path = store.fetch(BIG, 1, cache_root)
    assert_same_tree(path, big_model / "1")

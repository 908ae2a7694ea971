"""Model stores: where the node agent fetches model files from, behind one interface.

- ``base``: the ``ModelStore`` Protocol, ``StoredVersion``/``StoredFile``, ``latest_version``, ``resolve``
- ``local``: ``LocalModelStore``, a directory in TF Serving's layout
- ``s3``: ``S3ModelStore``, the same layout in a bucket (``s3_client``: boto3 client and error translation)
- ``labels``: the per-model label file (``labels.json``) and ``resolve_label``
- ``names``: path safety for model names, versions and file paths
- ``disk_cache``: the local disk cache layout, the scan at start-up, deleting a version
- ``fetching``: staging, verification and the atomic rename into the cache; cleanup of leftovers at start
- ``settings``: ``StoreSettings`` (S3 endpoint, region, retries, multipart sizes, timeouts)
- ``locations``: store URLs and ``open_store``

The S3 module (and boto3) is imported only when an S3 store is opened or ``S3ModelStore`` is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tfscachectl.stores.base import (
    SAVED_MODEL_FILES,
    ModelStore,
    StoredFile,
    StoredVersion,
    latest_version,
    resolve,
)
from tfscachectl.stores.disk_cache import CachedVersion, delete_version, model_path, scan_cache, version_path
from tfscachectl.stores.fetching import clean_leftovers, fetch_version, prepare_cache, verify_copy
from tfscachectl.stores.labels import LABELS_FILE_NAME, UnknownLabelError, parse_labels, resolve_label
from tfscachectl.stores.local import LocalModelStore
from tfscachectl.stores.locations import LocalLocation, S3Location, StoreLocation, open_store, parse_store_url
from tfscachectl.stores.settings import StoreSettings

if TYPE_CHECKING:
    from tfscachectl.stores.s3 import S3ModelStore

__all__ = [
    "LABELS_FILE_NAME",
    "SAVED_MODEL_FILES",
    "CachedVersion",
    "LocalLocation",
    "LocalModelStore",
    "ModelStore",
    "S3Location",
    "S3ModelStore",
    "StoreLocation",
    "StoreSettings",
    "StoredFile",
    "StoredVersion",
    "UnknownLabelError",
    "clean_leftovers",
    "delete_version",
    "fetch_version",
    "latest_version",
    "model_path",
    "open_store",
    "parse_labels",
    "parse_store_url",
    "prepare_cache",
    "resolve",
    "resolve_label",
    "scan_cache",
    "verify_copy",
    "version_path",
]


def __getattr__(name: str) -> Any:
    if name == "S3ModelStore":
        from tfscachectl.stores.s3 import S3ModelStore

        return S3ModelStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

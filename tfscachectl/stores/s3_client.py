"""The boto3 side of the S3 store: one client built from ``StoreSettings``, and botocore errors translated.

A boto3 *client* is thread-safe and is shared by every thread of the agent; sessions and resources are not,
so the session lives only as long as it takes to make the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from tfscachectl.errors import ModelNotInStoreError, StoreError
from tfscachectl.stores.settings import StoreSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Error codes S3 uses for a key or object that does not exist (HEAD answers with the bare status).
MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"})
_CREDENTIALS_HINT = (
    "boto3 looks for credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials and "
    "~/.aws/config (AWS_PROFILE), web identity, and container or instance roles"
)


def make_client(settings: StoreSettings) -> S3Client:
    """An S3 client with the settings' endpoint, region, timeouts and retry policy."""
    config = Config(
        region_name=settings.region,
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
        max_pool_connections=settings.max_pool_connections,
        s3={"addressing_style": settings.addressing_style},
    )
    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
        return session.client("s3", endpoint_url=settings.endpoint_url, config=config)
    except (BotoCoreError, Boto3Error) as exc:
        raise StoreError(f"cannot create an S3 client: {exc}") from exc


def transfer_config(settings: StoreSettings) -> TransferConfig:
    """How one file is downloaded: ranged parts above the threshold, streams retried like requests."""
    return TransferConfig(
        multipart_threshold=settings.multipart_threshold_bytes,
        multipart_chunksize=settings.multipart_chunk_bytes,
        max_concurrency=settings.max_concurrency,
        num_download_attempts=settings.max_attempts,
        use_threads=settings.max_concurrency > 1,
        preferred_transfer_client="classic",
    )


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing_object(exc: BaseException) -> bool:
    """Whether ``exc`` says the key does not exist."""
    return isinstance(exc, ClientError) and error_code(exc) in MISSING_OBJECT_CODES


def translate(exc: Exception, doing: str, *, bucket: str) -> StoreError:
    """A ``StoreError`` that says what failed while ``doing`` something; raise it ``from exc``."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code == "NoSuchBucket":
            return StoreError(f"{doing}: the S3 bucket {bucket!r} does not exist")
        if code in _DENIED_CODES:
            return StoreError(f"{doing}: access denied ({code}: {message}); {_CREDENTIALS_HINT}")
        if code in MISSING_OBJECT_CODES:
            return ModelNotInStoreError(
                f"{doing}: the object is not in the bucket (it may have just been removed)"
            )
        return StoreError(f"{doing}: S3 error {code}: {message}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StoreError(f"{doing}: no usable AWS credentials ({exc}); {_CREDENTIALS_HINT}")
    return StoreError(f"{doing}: {type(exc).__name__}: {exc}")

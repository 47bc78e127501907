"""The S3 store interface the gateway uses, its S3 implementation and store events."""
from storage.base import (
    ChecksumMismatch,
    CompletedPart,
    ObjectStore,
    PresignedRequest,
    StoredObject,
    StoredPart,
    StoreError,
    StoreUnavailable,
    UploadNotFound,
)

__all__ = [
    "ChecksumMismatch",
    "CompletedPart",
    "ObjectStore",
    "PresignedRequest",
    "StoredObject",
    "StoredPart",
    "StoreError",
    "StoreUnavailable",
    "UploadNotFound",
]

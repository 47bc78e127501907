"""Store events: MinIO's S3 event records and the embedded store's filer events,
turned into one internal type so the gateway never sees either wire format.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

EventKind = Literal["part_uploaded", "object_created", "object_removed"]

# SeaweedFS keeps multipart parts at /buckets/<bucket>/.uploads/<upload id>/<NNNN>_<uuid>.part
SEAWEED_PART = re.compile(r"^/buckets/(?P<bucket>[^/]+)/\.uploads/(?P<upload_id>[^/]+)/(?P<number>\d{4,})_[^/]*\.part$")
# MinIO's (and S3's) names for how an object was created: a multipart upload's completion, or whole in one request.
MINIO_COMPLETION = {"s3:ObjectCreated:CompleteMultipartUpload": True, "s3:ObjectCreated:Put": False,
                    "s3:ObjectCreated:Post": False, "s3:ObjectCreated:Copy": False}
# SeaweedFS marks the entry of a completed multipart upload with its upload's id (in ``extended``, base64 values);
# an object written whole by PutObject has ``extended`` (its ETag, its owner) without it.
SEAWEED_UPLOAD_ID = "X-Seaweedfs-Upload-Id"
SEAWEED_OBJECT = re.compile(r"^/buckets/(?P<bucket>[^/.][^/]*)/(?P<key>(?!\.uploads/)(?!\.system/).+)$")


class MalformedEvent(ValueError):
    """The body is not an event of the expected format."""


@dataclass(frozen=True)
class StoreEvent:
    kind: EventKind
    bucket: str
    key: str | None = None  # object key; None for a part (the store names only its upload)
    upload_id: str | None = None
    part_number: int | None = None
    size: int | None = None
    source: str = ""  # the store's own event name, for the logs
    # For ``object_created``: whether the store says the object is a multipart upload's completion (True),
    # or was written whole by one request, a PutObject or a copy (False); None when the event does not say.
    completion: bool | None = None


def parse_minio(body: Any) -> list[StoreEvent]:
    """MinIO's bucket notification (S3 event records), as its webhook target posts it."""
    if not isinstance(body, dict) or not isinstance(body.get("Records"), list):
        raise MalformedEvent("expected a MinIO bucket notification: an object with a `Records` list")
    events = []
    for index, record in enumerate(body["Records"]):
        try:
            name = record["eventName"]
            bucket = record["s3"]["bucket"]["name"]
            obj = record["s3"]["object"]
            key = obj["key"]
        except (KeyError, TypeError) as exc:
            raise MalformedEvent(f"Records[{index}] lacks {exc}") from exc
        if not all(isinstance(value, str) for value in (name, bucket, key)):
            raise MalformedEvent(f"Records[{index}]: `eventName`, `s3.bucket.name` and `s3.object.key` must be strings")
        key = unquote_plus(key)  # MinIO and S3 send keys URL-encoded
        if name.startswith("s3:ObjectCreated:"):
            kind: EventKind = "object_created"
        elif name.startswith("s3:ObjectRemoved:"):
            kind = "object_removed"
        else:
            continue  # other notifications (access, replication) are not ours to act on
        size = obj.get("size")
        events.append(StoreEvent(kind, bucket, key=key, size=size if isinstance(size, int) else None, source=name,
                                 completion=MINIO_COMPLETION.get(name) if kind == "object_created" else None))
    return events


def parse_seaweedfs(body: Any) -> list[StoreEvent]:
    """One SeaweedFS filer event; directories and the store's own system files are ignored."""
    if not isinstance(body, dict) or not isinstance(body.get("key"), str) or not isinstance(body.get("event_type"), str):
        raise MalformedEvent("expected a SeaweedFS filer event: an object with `event_type` and `key`")
    event_type, path = body["event_type"], body["key"]
    message = body.get("message")
    message = {} if message is None else message
    if not isinstance(message, dict):
        raise MalformedEvent("a SeaweedFS filer event's `message` is an object")
    entry = message.get("new_entry") if event_type in ("create", "update") else message.get("old_entry")
    if not isinstance(entry, dict) or entry.get("is_directory"):
        return []
    attributes = entry.get("attributes")
    size = attributes.get("file_size") if isinstance(attributes, dict) else None
    size = size if isinstance(size, int) and not isinstance(size, bool) else None
    source = f"seaweedfs:{event_type}"
    part = SEAWEED_PART.match(path)
    if part:
        if event_type != "create":
            return []  # parts are deleted when the upload completes or is aborted
        return [
            StoreEvent(
                "part_uploaded",
                part["bucket"],
                upload_id=part["upload_id"],
                part_number=int(part["number"]),
                size=size,
                source=source,
            )
        ]
    obj = SEAWEED_OBJECT.match(path)
    if not obj:
        return []
    kind: EventKind = "object_removed" if event_type == "delete" else "object_created"
    extended = entry.get("extended")
    completion = SEAWEED_UPLOAD_ID in extended if kind == "object_created" and isinstance(extended, dict) else None
    return [StoreEvent(kind, obj["bucket"], key=obj["key"], size=size, source=source, completion=completion)]


PARSERS = {"minio": parse_minio, "seaweedfs": parse_seaweedfs}

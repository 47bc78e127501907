"""Store events: the embedded store's real webhook, MinIO's recorded payloads, reconciliation."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest

from gateway.core.content import content_key
from storage.embedded import free_port
from storage.events import MalformedEvent, StoreEvent, parse_minio, parse_seaweedfs
from tests.harness import BUCKET, EVENTS_TOKEN, Api, make_claim, put_chunks, upload

MIB = 1024 * 1024
CHUNK = 5 * MIB
FIXTURES = Path(__file__).parent / "fixtures" / "minio"


def minio_payload(name: str, key: str, size: int = 0, bucket: str = BUCKET) -> dict:
    text = (FIXTURES / f"{name}.json").read_text()
    text = text.replace("KEY_ENCODED", quote(key, safe="")).replace("BUCKET", bucket).replace("SIZE", str(size))
    return json.loads(text)


async def wait_for(check, timeout: float = 20.0, interval: float = 0.2):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


# --- the two wire formats become one event type ------------------------------------


def test_minio_records_parse_into_store_events():
    key = content_key("ab" * 32)
    created = parse_minio(minio_payload("complete_multipart_upload", key, 123))
    assert created == [StoreEvent("object_created", BUCKET, key=key, size=123,
                                  source="s3:ObjectCreated:CompleteMultipartUpload", completion=True)]
    put = parse_minio(minio_payload("put", key, 5))[0]
    assert put.kind == "object_created" and put.completion is False  # written whole: no upload's completion
    removed = parse_minio(minio_payload("removed", key))
    assert removed[0].kind == "object_removed" and removed[0].key == key
    with pytest.raises(MalformedEvent):
        parse_minio({"no": "records"})
    with pytest.raises(MalformedEvent):
        parse_minio({"Records": [{"eventName": "s3:ObjectCreated:Put"}]})


def test_seaweedfs_filer_events_parse_into_store_events():
    part = {
        "event_type": "create",
        "key": "/buckets/b1/.uploads/c3fd_6827/0002_047cc742.part",
        "message": {"new_entry": {"name": "0002_047cc742.part", "attributes": {"file_size": 4}}},
    }
    assert parse_seaweedfs(part) == [
        StoreEvent("part_uploaded", "b1", upload_id="c3fd_6827", part_number=2, size=4, source="seaweedfs:create")
    ]
    obj = {"event_type": "create", "key": "/buckets/b1/content/abc", "message": {"new_entry": {"attributes": {"file_size": 9}}}}
    assert parse_seaweedfs(obj)[0] == StoreEvent("object_created", "b1", key="content/abc", size=9, source="seaweedfs:create")
    # As SeaweedFS 4.48 sends them (values base64): a PutObject's entry, and a completed multipart upload's,
    # which names its upload; an entry without `extended` does not say.
    put = {"event_type": "create", "key": "/buckets/b1/content/abc", "message": {"new_entry": {
        "attributes": {"file_size": 9}, "extended": {"Seaweed-X-Amz-ETag": "Zjg4NA==", "Seaweed-X-Amz-Owner": "YWRtaW4="}}}}
    completed = {"event_type": "update", "key": "/buckets/b1/content/abc", "message": {"new_entry": {
        "attributes": {"file_size": 9}, "extended": {"X-Seaweedfs-Multipart-Parts-Count": "MQ==",
                                                     "X-Seaweedfs-Upload-Id": "MmZjMGJkZTY4"}}}}
    assert [parse_seaweedfs(e)[0].completion for e in (put, completed, obj)] == [False, True, None]
    gone = {"event_type": "delete", "key": "/buckets/b1/content/abc", "message": {"old_entry": {"attributes": {}}}}
    assert parse_seaweedfs(gone)[0].kind == "object_removed" and parse_seaweedfs(gone)[0].completion is None
    directory = {"event_type": "create", "key": "/buckets/b1/.uploads", "message": {"new_entry": {"is_directory": True}}}
    system = {"event_type": "create", "key": "/buckets/.system/x", "message": {"new_entry": {}}}
    part_removed = {**part, "event_type": "delete", "message": {"old_entry": part["message"]["new_entry"]}}
    assert parse_seaweedfs(directory) == parse_seaweedfs(system) == parse_seaweedfs(part_removed) == []
    with pytest.raises(MalformedEvent):
        parse_seaweedfs(["not", "an", "event"])


@pytest.mark.parametrize("body", [
    {"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "b1"}, "object": {"key": {}}}}]},
    {"Records": [{"eventName": 5, "s3": {"bucket": {"name": "b1"}, "object": {"key": "k"}}}]},
    {"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": []}, "object": {"key": "k"}}}]},
])
def test_minio_records_of_the_wrong_types_are_malformed_not_a_crash(body):
    with pytest.raises(MalformedEvent):
        parse_minio(body)


@pytest.mark.parametrize("body", [
    {"event_type": {}, "key": "/buckets/b1/content/abc"},
    {"event_type": "create", "key": "/buckets/b1/content/abc", "message": False},
    {"event_type": "create", "key": "/buckets/b1/content/abc", "message": [1]},
])
def test_seaweedfs_events_of_the_wrong_types_are_malformed_not_a_crash(body):
    with pytest.raises(MalformedEvent):
        parse_seaweedfs(body)


def test_seaweedfs_sizes_that_are_not_integers_are_left_out():
    odd = {"event_type": "create", "key": "/buckets/b1/content/abc", "message": {"new_entry": {"attributes": [9]}}}
    assert parse_seaweedfs(odd)[0].size is None
    odd["message"]["new_entry"]["attributes"] = {"file_size": "9"}
    assert parse_seaweedfs(odd)[0].size is None


# --- the real embedded store's webhook ------------------------------------------------


async def test_upload_turns_uploaded_without_complete_with_progress_from_events(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)  # on the port the store's webhook posts to
    user = await Api(http, gateway.url).signup()
    data = os.urandom(2 * CHUNK + 10)
    started = await user.post("/dropbox/v1/files", json=make_claim(data, CHUNK))
    file_id = started.body["file_id"]
    assert await put_chunks(user, file_id, data, CHUNK, [1]) == [200]

    async def progress():
        body = (await user.get(f"/dropbox/v1/files/{file_id}")).body
        return body if body["uploaded_chunks"] == 1 else None

    body = await wait_for(progress)
    assert [c["status"] for c in body["chunks"]] == ["pending", "uploaded", "pending"]
    assert body["status"] == "uploading"

    assert await put_chunks(user, file_id, data, CHUNK, [0, 2]) == [200, 200]

    async def uploaded():
        body = (await user.get(f"/dropbox/v1/files/{file_id}")).body
        return body if body["status"] == "uploaded" else None

    body = await wait_for(uploaded)  # no POST .../complete was sent
    assert body["uploaded_chunks"] == 3


async def test_the_event_of_an_inline_upload_is_answered_without_a_look(make_gateway, http):
    """The real store's event for the object an inline upload wrote (a PutObject) says it was written whole:
    the gateway, which recorded the file in the upload's own request, looks nothing up for it. The event of
    a multipart upload's completion says it is one, and is looked at."""
    import aiohttp

    from gateway.http.appkeys import METRICS

    gateway = await make_gateway(chunk_size=CHUNK)  # on the port the store's webhook posts to
    user = await Api(http, gateway.url).signup()
    form = aiohttp.FormData()
    form.add_field("file_metadata", '{"file_name": "small.bin"}', content_type="application/json")
    form.add_field("file", os.urandom(20_000), filename="small.bin", content_type="application/octet-stream")
    response = await user.post("/dropbox/v1/files", data=form)
    assert response.status == 201 and response.body["status"] == "uploaded"
    registry = gateway.app[METRICS].registry

    async def answered() -> bool:
        return bool(registry.get_sample_value("gateway_store_events_ignored_total", {"outcome": "written_whole"}))

    await wait_for(answered)
    assert (await user.get(f"/dropbox/v1/files/{response.body['file_id']}")).body["status"] == "uploaded"

    # A multipart upload's completion (the gateway's own, on the client's complete) says it is one: looked at.
    assert (await upload(user, os.urandom(CHUNK + 10), CHUNK))["status"] == "uploaded"

    async def both_came() -> bool:
        return registry.get_sample_value("gateway_store_events_received_total", {"kind": "object_created"}) == 2

    await wait_for(both_came)
    assert registry.get_sample_value("gateway_store_events_ignored_total", {"outcome": "written_whole"}) == 1


async def test_reconciliation_finishes_an_upload_whose_events_never_came(make_gateway, http):
    # The gateway listens where the store's webhook does not post: every event is lost.
    # No grace, and a look again every second: a round may look while the chunks are still on their way
    # (the PUTs go to the store, which tells this gateway nothing), so one look is not enough.
    gateway = await make_gateway(chunk_size=CHUNK, port=free_port(), reconcile_interval=0.3, reconcile_grace=0,
                                 reconcile_recheck=1.0)
    user = await Api(http, gateway.url).signup()
    data = os.urandom(CHUNK + 1)
    file_id = (await user.post("/dropbox/v1/files", json=make_claim(data, CHUNK))).body["file_id"]
    assert await put_chunks(user, file_id, data, CHUNK) == [200, 200]

    async def uploaded():
        return (await user.get(f"/dropbox/v1/files/{file_id}")).body["status"] == "uploaded"

    await wait_for(uploaded, timeout=15)


async def test_progress_from_the_part_list_when_the_store_sends_no_part_events(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, port=free_port(), store_part_events=False)
    user = await Api(http, gateway.url).signup()
    data = os.urandom(CHUNK + 1)
    file_id = (await user.post("/dropbox/v1/files", json=make_claim(data, CHUNK))).body["file_id"]
    await put_chunks(user, file_id, data, CHUNK, [0])
    body = (await user.get(f"/dropbox/v1/files/{file_id}")).body
    assert [c["status"] for c in body["chunks"]] == ["uploaded", "pending"]


# --- MinIO's payloads, auth, replays and order ---------------------------------------------


async def _upload_started_where_no_events_arrive(make_gateway, http, *, send_chunks: bool):
    gateway = await make_gateway(chunk_size=CHUNK, port=free_port())
    api = Api(http, gateway.url)
    user = await api.signup()
    data = os.urandom(CHUNK + 7)
    claim = make_claim(data, CHUNK)
    file_id = (await user.post("/dropbox/v1/files", json=claim)).body["file_id"]
    if send_chunks:
        assert await put_chunks(user, file_id, data, CHUNK) == [200, 200]
    return api, user, data, claim, file_id


async def test_events_need_the_events_token_and_change_nothing_without_it(make_gateway, http):
    api, user, _, claim, file_id = await _upload_started_where_no_events_arrive(make_gateway, http, send_chunks=True)
    payload = minio_payload("complete_multipart_upload", content_key(claim["fingerprint"]), claim["file_size"])
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": EVENTS_TOKEN}):
        refused = await api.post("/dropbox/v1/events", json=payload, headers=headers)
        assert refused.status == 401
        assert refused.body["error"]["code"] == "invalid_events_token"
    assert (await user.get(f"/dropbox/v1/files/{file_id}")).body["status"] == "uploading"

    accepted = await api.post("/dropbox/v1/events", json=payload, headers={"Authorization": f"Bearer {EVENTS_TOKEN}"})
    assert accepted.status == 200
    assert accepted.body["outcomes"] == ["uploads:uploaded"]
    assert (await user.get(f"/dropbox/v1/files/{file_id}")).body["status"] == "uploaded"

    replayed = await api.post("/dropbox/v1/events", json=payload, headers={"Authorization": f"Bearer {EVENTS_TOKEN}"})
    assert replayed.status == 200 and replayed.body["outcomes"] == ["nothing_uploading"]
    body = (await user.get(f"/dropbox/v1/files/{file_id}")).body
    assert body["status"] == "uploaded" and body["uploaded_chunks"] == 2


async def test_a_completion_event_before_the_parts_changes_nothing(make_gateway, http):
    api, user, data, claim, file_id = await _upload_started_where_no_events_arrive(make_gateway, http, send_chunks=False)
    auth = {"Authorization": f"Bearer {EVENTS_TOKEN}"}
    early = minio_payload("complete_multipart_upload", content_key(claim["fingerprint"]), claim["file_size"])
    response = await api.post("/dropbox/v1/events", json=early, headers=auth)
    assert response.status == 200 and response.body["outcomes"] == ["uploads:uploading"]
    body = (await user.get(f"/dropbox/v1/files/{file_id}")).body
    assert body["status"] == "uploading" and body["uploaded_chunks"] == 0
    # A removal event for content nobody holds changes nothing either.
    stale = await api.post("/dropbox/v1/events", json=minio_payload("removed", content_key(claim["fingerprint"])), headers=auth)
    assert stale.body["outcomes"] == ["removed"]
    # Then the parts, then the event: now it completes.
    await put_chunks(user, file_id, data, CHUNK)
    late = await api.post("/dropbox/v1/events", json=early, headers=auth)
    assert late.body["outcomes"] == ["uploads:uploaded"]
    gone_again = await api.post("/dropbox/v1/events", json=minio_payload("removed", content_key(claim["fingerprint"])), headers=auth)
    assert gone_again.body["outcomes"] == ["still_present"]


async def test_unknown_objects_are_acknowledged_and_malformed_bodies_refused(gateway, http):
    api = Api(http, gateway.url)
    auth = {"Authorization": f"Bearer {EVENTS_TOKEN}"}
    for name, key, outcome in (("complete_multipart_upload", content_key("cd" * 32), "nothing_uploading"),
                               ("put", content_key("cd" * 32), "written_whole"),
                               ("put", "elsewhere/file.txt", "ignored_not_content")):
        response = await api.post("/dropbox/v1/events", json=minio_payload(name, key, 1), headers=auth)
        assert response.status == 200 and response.body["outcomes"] == [outcome]
    other_bucket = await api.post("/dropbox/v1/events", json=minio_payload("put", "x", 1, bucket="not-ours"), headers=auth)
    assert other_bucket.body["outcomes"] == ["ignored_other_bucket"]
    bad = await api.post("/dropbox/v1/events", data=b"{", headers=auth)
    assert bad.status == 400 and bad.body["error"]["code"] == "invalid_event"
    wrong_shape = await api.post("/dropbox/v1/events/seaweedfs", json={"Records": []}, headers=auth)
    assert wrong_shape.status == 400


async def test_abandoned_uploads_are_aborted_and_finished_files_untouched(make_gateway, http):
    from storage import UploadNotFound
    from tests.harness import upload

    gateway = await make_gateway(chunk_size=CHUNK, port=free_port(), reconcile_grace=0, abandon_after=3600)
    user = await Api(http, gateway.url).signup()
    finished = await upload(user, os.urandom(100), CHUNK, file_name="keep.txt")
    stale_data = os.urandom(CHUNK + 1)
    stale = (await user.post("/dropbox/v1/files", json=make_claim(stale_data, CHUNK))).body
    await put_chunks(user, stale["file_id"], stale_data, CHUNK, [0])
    upload_id = await gateway.core.db.fetchval("SELECT upload_id FROM uploads WHERE file_id = :id", {"id": stale["file_id"]})
    # Nothing is old enough yet: nothing is abandoned.
    assert (await gateway.core.reconcile_once())["abandoned"] == 0

    gateway.config = dataclasses.replace(gateway.config, abandon_after=0)
    await gateway.restart()
    assert (await gateway.core.reconcile_once())["abandoned"] == 1
    body = (await user.get(f"/dropbox/v1/files/{stale['file_id']}")).body
    assert body["status"] == "failed" and "abandoned" in body["failure_reason"]
    assert (await user.get(f"/dropbox/v1/files/{finished['file_id']}")).body["status"] == "uploaded"
    with pytest.raises(UploadNotFound):  # aborted in the store too
        await gateway.core.store.list_parts(content_key(stale["fingerprint"]), upload_id)


# --- events are hints: a forged one changes nothing ------------------------------------------


def seaweedfs_part_event(upload_id: str, part_number: int, size: int) -> dict:
    """The filer event the embedded store posts when a part lands (storage/events.py parses it)."""
    name = f"{part_number:04d}_forged.part"
    return {
        "event_type": "create",
        "key": f"/buckets/{BUCKET}/.uploads/{upload_id}/{name}",
        "message": {"new_entry": {"name": name, "attributes": {"file_size": size}}},
    }


async def upload_id_of(user: Api, file_id: str) -> str:
    """What a client learns of its multipart upload: the uploadId in its presigned URLs."""
    from urllib.parse import parse_qs, urlsplit

    urls = await user.post(f"/dropbox/v1/files/{file_id}/upload-urls")
    return parse_qs(urlsplit(urls.body["urls"][0]["url"]).query)["uploadId"][0]


async def test_a_forged_part_event_does_not_hand_over_another_users_content(make_gateway, http):
    """Issue 17, item 1: B claims A's fingerprint, posts one part event for its own upload, sends no byte."""
    from tests.harness import upload

    gateway = await make_gateway(chunk_size=CHUNK, port=free_port(), part_events_delay=0)
    api = Api(http, gateway.url)
    alice, bob = await api.signup(), await api.signup()
    data = os.urandom(1000)
    theirs = await upload(alice, data, CHUNK, file_name="alice.txt")
    assert theirs["status"] == "uploaded"

    claimed = await bob.post("/dropbox/v1/files", json=make_claim(data, CHUNK, file_name="bob.txt"))
    assert claimed.status == 201 and claimed.body["status"] == "uploading"
    file_id = claimed.body["file_id"]
    forged = seaweedfs_part_event(await upload_id_of(bob, file_id), 1, len(data))
    answered = await api.post("/dropbox/v1/events/seaweedfs", json=forged,
                              headers={"Authorization": f"Bearer {EVENTS_TOKEN}"})
    assert answered.status == 200
    await gateway.core.refresh_progress_once()  # what the part event scheduled: the store's own part list

    body = (await bob.get(f"/dropbox/v1/files/{file_id}")).body
    assert body["uploaded_chunks"] == 0 and body["chunks"][0]["status"] == "pending"
    # Settling (here: abandoning, as the reconciler does) finds A's verified object, but B's
    # upload never had a part the store listed: B's file fails, it never becomes A's content.
    await gateway.core.uploads.abandon(file_id)
    body = (await bob.get(f"/dropbox/v1/files/{file_id}")).body
    assert body["status"] == "failed" and "download_url" not in body
    assert (await bob.get(f"/dropbox/v1/files/{file_id}/content")).status == 409

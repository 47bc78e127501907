"""Limits per user (contract v1.1 "Limits and quotas", issue 17 item 2), on the real store and both databases.

A storage quota and a cap on uploads in progress, enforced atomically however
many requests (and gateways) start files at once; listings without chunk
arrays; share calls capped and throttled in the database.
"""
from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from gateway.core.content import content_key
from storage.embedded import free_port
from tests.harness import BUCKET, Api, make_claim, put_chunks, raw_s3, upload

MIB = 1024 * 1024
CHUNK = 5 * MIB
FILES = "/dropbox/v1/files"


async def usage(user: Api) -> dict:
    me = await user.get("/dropbox/v1/users/me")
    assert me.status == 200, me.body
    return {"quota_bytes": me.body["quota_bytes"], "used_bytes": me.body["used_bytes"]}


def open_uploads_of(gateway, fingerprint: str) -> list[str]:
    """The multipart uploads the store holds for this content (the tests' own S3 client)."""
    listed = raw_s3(gateway.config.s3_endpoint).list_multipart_uploads(Bucket=BUCKET, Prefix=content_key(fingerprint))
    return [u["UploadId"] for u in listed.get("Uploads", [])]


# --- the quota -----------------------------------------------------------------------------------


@pytest.mark.every_engine  # the usage query
async def test_the_quota_counts_uploaded_and_uploading_files_and_refuses_what_would_pass_it(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, user_quota_bytes=3 * MIB)
    user = await Api(http, gateway.url).signup()
    assert await usage(user) == {"quota_bytes": 3 * MIB, "used_bytes": 0}

    done_data = os.urandom(MIB)
    done = await upload(user, done_data, CHUNK, file_name="done.bin")
    under_way = (await user.post(FILES, json=make_claim(os.urandom(MIB), CHUNK, file_name="underway.bin"))).body
    assert under_way["status"] == "uploading"
    assert await usage(user) == {"quota_bytes": 3 * MIB, "used_bytes": 2 * MIB}  # an upload counts from its start

    too_big = make_claim(os.urandom(MIB + 1), CHUNK, file_name="too-big.bin")
    refused = await user.post(FILES, json=too_big)
    assert refused.status == 403, refused.body
    error = refused.body["error"]
    assert error["code"] == "quota_exceeded" and error["quota_bytes"] == 3 * MIB and error["used_bytes"] == 2 * MIB
    assert open_uploads_of(gateway, too_big["fingerprint"]) == []  # refused before any work in the store
    # Exactly up to the quota is fine.
    fits = await upload(user, os.urandom(MIB), CHUNK, file_name="fits.bin")
    assert fits["status"] == "uploaded"
    assert await usage(user) == {"quota_bytes": 3 * MIB, "used_bytes": 3 * MIB}
    # A copy of the user's own content moves no bytes but takes room all the same; so does an inline upload.
    copy = await user.post(FILES, json=make_claim(done_data, CHUNK, file_name="copy.bin"))
    assert copy.status == 403 and copy.body["error"]["code"] == "quota_exceeded"
    form = aiohttp.FormData()
    form.add_field("file", os.urandom(10), filename="inline.bin")
    inline = await user.post(FILES, data=form)
    assert inline.status == 403 and inline.body["error"]["code"] == "quota_exceeded"

    # Deleting for good frees the room (the trash still counts); a failed file holds none.
    assert (await user.delete(f"{FILES}/{done['file_id']}")).status == 204
    assert (await usage(user))["used_bytes"] == 3 * MIB
    assert (await user.delete(f"/dropbox/v1/trash/{done['file_id']}")).status == 204
    assert (await usage(user))["used_bytes"] == 2 * MIB
    await gateway.core.uploads.abandon(under_way["file_id"])  # as the reconciler does with a stale upload
    assert (await usage(user))["used_bytes"] == MIB
    assert (await user.post(FILES, json=too_big)).status == 201


async def test_a_quota_set_for_one_user_overrides_the_setting_and_zero_is_unlimited(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, user_quota_bytes=MIB)
    api = Api(http, gateway.url)
    roomy, unlimited, other = await api.signup(), await api.signup(), await api.signup()
    for user, quota in ((roomy, 4 * MIB), (unlimited, 0)):
        await gateway.core.db.execute("UPDATE users SET quota_bytes = :q WHERE id = :id", {"q": quota, "id": user.user_id})
    assert (await usage(roomy))["quota_bytes"] == 4 * MIB
    assert (await usage(unlimited))["quota_bytes"] is None
    assert (await usage(other))["quota_bytes"] == MIB
    two_mib = make_claim(os.urandom(2 * MIB), CHUNK)
    assert (await roomy.post(FILES, json=two_mib)).status == 201
    assert (await unlimited.post(FILES, json=two_mib)).status == 201
    assert (await other.post(FILES, json=two_mib)).status == 403


# --- uploads in progress ---------------------------------------------------------------------------


async def test_the_cap_on_uploads_in_progress_answers_429_with_retry_after(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK, max_uploads_in_progress=2)
    user = await Api(http, gateway.url).signup()
    first_data = os.urandom(100)
    first = await user.post(FILES, json=make_claim(first_data, CHUNK, file_name="first.bin"))
    second = await user.post(FILES, json=make_claim(os.urandom(100), CHUNK, file_name="second.bin"))
    assert (first.status, second.status) == (201, 201)

    third_claim = make_claim(os.urandom(100), CHUNK, file_name="third.bin")
    refused = await user.post(FILES, json=third_claim)
    assert refused.status == 429, refused.body
    assert refused.body["error"]["code"] == "too_many_uploads" and refused.body["error"]["max_uploads_in_progress"] == 2
    assert int(refused.headers["Retry-After"]) > 0
    assert open_uploads_of(gateway, third_claim["fingerprint"]) == []
    # Resuming an upload the user has is not a new one; neither is a file that needs no upload.
    resumed = await user.post(FILES, json=make_claim(first_data, CHUNK, file_name="first.bin"))
    assert resumed.status == 200 and resumed.body["file_id"] == first.body["file_id"]
    assert (await user.post(FILES, json=make_claim(b"", CHUNK, file_name="empty.txt"))).status == 201

    # Finishing one frees its slot.
    assert await put_chunks(user, first.body["file_id"], first_data, CHUNK) == [200]
    assert (await user.post(f"{FILES}/{first.body['file_id']}/complete")).status == 200
    assert (await user.post(FILES, json=third_claim)).status == 201


@pytest.mark.every_engine  # concurrent transactions
async def test_concurrent_starts_never_pass_the_last_slot_or_byte_whichever_gateway_they_reach(make_gateway, http):
    # Two gateways on one database: the check runs in the inserting transaction, under a lock on the user's row.
    first = await make_gateway(chunk_size=CHUNK, max_uploads_in_progress=3, user_quota_bytes=0)
    second = await make_gateway(chunk_size=CHUNK, max_uploads_in_progress=3, user_quota_bytes=0, port=free_port())
    user = await Api(http, first.url).signup()
    via_second = Api(http, second.url, user.token)
    claims = [make_claim(os.urandom(64), CHUNK, file_name=f"slot-{i}") for i in range(12)]
    answers = await asyncio.gather(
        *((user if i % 2 else via_second).post(FILES, json=claim) for i, claim in enumerate(claims))
    )
    assert sorted(a.status for a in answers) == [201] * 3 + [429] * 9, [a.body for a in answers]
    uploading = await first.core.db.fetchval(
        "SELECT count(*) FROM files WHERE owner_id = :id AND status = 'uploading'", {"id": user.user_id}
    )
    assert uploading == 3
    refused = [claim for claim, answer in zip(claims, answers, strict=True) if answer.status == 429]
    # A start refused after its multipart upload began (it lost the race in the transaction) aborts it.
    assert all(open_uploads_of(first, claim["fingerprint"]) == [] for claim in refused)

    # The same for the quota: room for exactly two more files of 1 MiB.
    await first.core.db.execute("UPDATE users SET quota_bytes = :q WHERE id = :id", {"q": 2 * MIB + 3 * 64, "id": user.user_id})
    await first.core.db.execute("UPDATE files SET status = 'uploaded' WHERE owner_id = :id", {"id": user.user_id})
    claims = [make_claim(os.urandom(MIB), CHUNK, file_name=f"room-{i}") for i in range(8)]
    answers = await asyncio.gather(
        *((user if i % 2 else via_second).post(FILES, json=claim) for i, claim in enumerate(claims))
    )
    assert sorted(a.status for a in answers) == [201] * 2 + [403] * 6, [a.body for a in answers]
    assert (await usage(user))["used_bytes"] == 2 * MIB + 3 * 64


# --- listings --------------------------------------------------------------------------------------


async def test_listings_give_no_chunk_arrays_but_the_counts_and_one_file_gives_them(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    api = Api(http, gateway.url)
    owner, friend = await api.signup(), await api.signup()
    data = os.urandom(2 * CHUNK + 1)
    started = (await owner.post(FILES, json=make_claim(data, CHUNK))).body
    assert await put_chunks(owner, started["file_id"], data, CHUNK, [1]) == [200]
    missing = await owner.post(f"{FILES}/{started['file_id']}/complete")  # reads the part list: chunk 1 is there
    assert missing.status == 409 and missing.body["error"]["missing"] == [0, 2]
    done = await upload(owner, os.urandom(100), CHUNK, file_name="done.txt")
    assert (await owner.post(f"{FILES}/share", json={"file_id": started["file_id"], "users": [friend.username]})).status == 200

    own = (await owner.get(FILES)).body["files"]
    shared = (await friend.get(f"{FILES}/shared")).body["files"]
    for listed in (*own, *shared):
        assert "chunks" not in listed
    counts = {f["file_id"]: (f["uploaded_chunks"], f["total_chunks"]) for f in own}
    assert counts == {started["file_id"]: (1, 3), done["file_id"]: (1, 1)}
    assert [(f["uploaded_chunks"], f["total_chunks"]) for f in shared] == [(1, 3)]
    one = (await friend.get(f"{FILES}/{started['file_id']}")).body
    assert [c["status"] for c in one["chunks"]] == ["pending", "uploaded", "pending"] and one["uploaded_chunks"] == 1


# --- sharing: a cap per call, a limit per user -------------------------------------------------


async def test_a_share_call_names_at_most_50_users(make_gateway, http):
    gateway = await make_gateway(chunk_size=CHUNK)
    api = Api(http, gateway.url)
    owner, friend = await api.signup(), await api.signup()
    file = await upload(owner, os.urandom(100), CHUNK)
    guesses = [f"guess-{n}" for n in range(1000)] + [friend.username]
    answer = await owner.post(f"{FILES}/share", json={"file_id": file["file_id"], "users": guesses})
    assert answer.status == 400 and answer.body["error"]["code"] == "too_many_users"
    assert "guess" not in answer.body["error"]["message"]  # it tells nothing about the names
    fifty = [f"guess-{n}" for n in range(49)] + [friend.username]
    answer = await owner.post(f"{FILES}/share", json={"file_id": file["file_id"], "users": fifty})
    assert answer.status == 404 and len(answer.body["error"]["users"]) == 49


@pytest.mark.every_engine  # counters shared through the database
async def test_share_calls_are_throttled_per_user_across_gateways(make_gateway, http):
    first = await make_gateway(chunk_size=CHUNK, share_limit=6, share_window=600)
    second = await make_gateway(chunk_size=CHUNK, share_limit=6, share_window=600, port=free_port())
    api = Api(http, first.url)
    owner, friend, bystander = await api.signup(), await api.signup(), await api.signup()
    file = await upload(owner, os.urandom(100), CHUNK)
    share = {"file_id": file["file_id"], "users": [friend.username]}
    assert (await owner.post(f"{FILES}/share", json=share)).status == 200  # counts 1
    # Each unknown name tells the caller something: 1 for the call, 3 for the names.
    guesses = await owner.post(f"{FILES}/share", json={"file_id": file["file_id"], "users": ["nobody-1", "nobody-2", "nobody-3"]})
    assert guesses.status == 404
    assert (await owner.delete(f"{FILES}/{file['file_id']}/shares/{friend.username}")).status == 204  # 6

    # Over the limit now, on the other gateway too, for share and unshare alike, and for valid calls.
    via_second = Api(http, second.url, owner.token)
    for answer in (
        await via_second.post(f"{FILES}/share", json=share),
        await owner.post(f"{FILES}/share", json=share),
        await via_second.delete(f"{FILES}/{file['file_id']}/shares/nobody-4"),
    ):
        assert answer.status == 429, answer.body
        assert answer.body["error"]["code"] == "too_many_requests" and int(answer.headers["Retry-After"]) > 0
    # Another user is not held back by it.
    theirs = await upload(bystander, os.urandom(100), CHUNK)
    answer = await bystander.post(f"{FILES}/share", json={"file_id": theirs["file_id"], "users": [friend.username]})
    assert answer.status == 200


# --- the embedded store's webhook path ---------------------------------------------------------


async def test_the_embedded_stores_event_path_exists_only_where_that_store_is_used(make_gateway, http):
    from tests.harness import EVENTS_TOKEN

    gateway = await make_gateway(chunk_size=CHUNK, port=free_port(), store_part_events=False)
    api = Api(http, gateway.url)
    auth = {"Authorization": f"Bearer {EVENTS_TOKEN}"}
    event = {"event_type": "create", "key": f"/buckets/{BUCKET}/content/x", "message": {"new_entry": {}}}
    absent = await api.post("/dropbox/v1/events/seaweedfs", json=event, headers=auth)
    assert absent.status == 404 and absent.body["error"]["code"] == "unknown_endpoint"
    minio = await api.post("/dropbox/v1/events", json={"Records": []}, headers=auth)
    assert minio.status == 200

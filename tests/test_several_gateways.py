"""Several gateways on one database: nothing correct rests on a gateway's memory.

Two gateway apps serve the same database (SQLite file or PostgreSQL) and the
same store, on ports the store's webhook does not post to, so uploads settle
only through completion calls and reconciler rounds, which may run on both.
"""
from __future__ import annotations

import asyncio
import os

import pytest

from storage.embedded import free_port
from tests.harness import Api, make_claim, put_chunks

pytestmark = pytest.mark.every_engine  # gateways racing on one database

CHUNK = 5 * 1024 * 1024
FILES = "/dropbox/v1/files"


async def two_gateways(make_gateway, **overrides):
    first = await make_gateway(chunk_size=CHUNK, port=free_port(), **overrides)
    second = await make_gateway(chunk_size=CHUNK, port=free_port(), **overrides)
    return first, second


async def uploaded_but_not_completed(api: Api) -> dict:
    """An upload whose every chunk the store holds, that nobody has completed yet."""
    data = os.urandom(CHUNK + 100)
    started = (await api.post(FILES, json=make_claim(data, CHUNK))).body
    assert await put_chunks(api, started["file_id"], data, CHUNK) == [200, 200]
    return started


async def test_completing_through_two_gateways_at_once_settles_the_upload_once(make_gateway, http):
    first, second = await two_gateways(make_gateway)
    user = await Api(http, first.url).signup()
    on_second = Api(http, second.url, user.token)
    file = await uploaded_but_not_completed(user)
    path = f"{FILES}/{file['file_id']}/complete"
    answers = await asyncio.gather(user.post(path), on_second.post(path), user.post(path), on_second.post(path))
    assert [a.status for a in answers] == [200] * 4, [a.body for a in answers]
    assert {a.body["status"] for a in answers} == {"uploaded"}
    assert await first.core.db.fetchval("SELECT count(*) FROM uploads WHERE file_id = :id", {"id": file["file_id"]}) == 0  # settled: the session (and its lease) ended


async def test_reconcilers_of_two_gateways_settle_each_upload_once(make_gateway, http):
    first, second = await two_gateways(make_gateway, reconcile_grace=0)
    user = await Api(http, first.url).signup()
    files = [await uploaded_but_not_completed(user) for _ in range(3)]
    rounds = await asyncio.gather(first.core.reconcile_once(), second.core.reconcile_once())
    assert sum(r["completed"] for r in rounds) == 3, rounds
    assert sum(r["errors"] for r in rounds) == 0, rounds
    for file in files:
        assert (await user.get(f"{FILES}/{file['file_id']}")).body["status"] == "uploaded"
    again = await second.core.reconcile_once()
    assert again["checked"] == 0


async def test_an_upload_another_gateway_is_settling_is_skipped_then_settled(make_gateway, http):
    first, second = await two_gateways(make_gateway, reconcile_grace=0)
    user = await Api(http, first.url).signup()
    file = await uploaded_but_not_completed(user)
    token = await first.core.uploads.leases.try_claim(file["file_id"])  # first is "settling" it
    assert token is not None
    busy = await second.core.reconcile_once()
    assert busy["busy"] == 1 and busy["completed"] == 0
    assert (await user.get(f"{FILES}/{file['file_id']}")).body["status"] == "uploading"

    # A client's completion on the other gateway waits for the lease instead of racing it...
    waiting = asyncio.ensure_future(Api(http, second.url, user.token).post(f"{FILES}/{file['file_id']}/complete"))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    from gateway.db import uploads as uploads_db

    await uploads_db.release_lease(first.core.db, file["file_id"], token)
    done = await asyncio.wait_for(waiting, 30)
    assert done.status == 200 and done.body["status"] == "uploaded"  # ...and finishes once it is free


async def test_a_lease_left_by_a_dead_gateway_runs_out(make_gateway, http):
    first, second = await two_gateways(make_gateway, reconcile_grace=0)
    user = await Api(http, first.url).signup()
    file = await uploaded_but_not_completed(user)
    # As a gateway killed while completing leaves it: a lease nobody will give back, long expired.
    await first.core.db.execute(
        "UPDATE uploads SET lease_token = 'dead-gateway', lease_expires_at = '2000-01-01T00:00:00.000000Z' WHERE file_id = :id",
        {"id": file["file_id"]},
    )
    done = await asyncio.wait_for(Api(http, second.url, user.token).post(f"{FILES}/{file['file_id']}/complete"), 30)
    assert done.status == 200 and done.body["status"] == "uploaded"


# --- the tree (contract v1.2): races between gateways end in one answer, never a broken tree ---------

FOLDERS = "/dropbox/v1/folders"


async def test_two_gateways_moving_two_folders_into_each_other_at_once_leave_no_cycle(make_gateway, http):
    first, second = await two_gateways(make_gateway)
    user = await Api(http, first.url).signup()
    on_second = Api(http, second.url, user.token)
    for n in range(4):
        a = (await user.post(FOLDERS, json={"path": f"/a{n}"})).body
        b = (await user.post(FOLDERS, json={"path": f"/b{n}"})).body
        answers = await asyncio.gather(
            user.request("PATCH", f"{FOLDERS}/{a['folder_id']}", json={"parent_id": b["folder_id"]}),
            on_second.request("PATCH", f"{FOLDERS}/{b['folder_id']}", json={"parent_id": a["folder_id"]}),
        )
        assert sorted(answer.status for answer in answers) == [200, 409], [answer.body for answer in answers]
        assert [answer.body["error"]["code"] for answer in answers if answer.status == 409] == ["cycle"]
        paths = sorted([(await user.get(f"{FOLDERS}/{f['folder_id']}")).body["path"] for f in (a, b)], key=len)
        assert paths[1] == paths[0] + "/" + paths[1].rsplit("/", 1)[1] and paths[0].count("/") == 1


async def test_two_gateways_making_one_name_at_once_answer_201_and_409(make_gateway, http):
    first, second = await two_gateways(make_gateway)
    user = await Api(http, first.url).signup()
    on_second = Api(http, second.url, user.token)
    answers = await asyncio.gather(
        user.post(FOLDERS, json={"parent_id": "root", "name": "Inbox"}),
        on_second.post(FOLDERS, json={"parent_id": "root", "name": "INBOX"}),
    )
    assert sorted(answer.status for answer in answers) == [201, 409]
    renamed = await asyncio.gather(*(
        api.post(FOLDERS, json={"parent_id": "root", "name": "inbox", "autorename": True}) for api in (user, on_second)
    ))
    assert sorted(answer.body["name"] for answer in renamed) == ["inbox (1)", "inbox (2)"]
    listed = (await on_second.get(f"{FOLDERS}/root/entries")).body["entries"]
    assert len(listed) == 3 and len({entry["name"].casefold() for entry in listed}) == 3


async def open_waits(http, metrics_url: str) -> float:
    async with http.get(f"{metrics_url}/metrics") as answer:
        text = await answer.text()
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("gateway_change_waits_open "))


async def test_a_change_through_one_gateway_process_ends_a_wait_on_another(make_gateway_process, http):
    """PostgreSQL: LISTEN/NOTIFY; SQLite: each process reads the journal's tail (gateway/core/changes.py)."""
    metrics_port = free_port()
    waiting_on = await make_gateway_process(chunk_size=CHUNK, metrics_port=metrics_port)
    changing_on = await make_gateway_process(chunk_size=CHUNK)
    user = await Api(http, waiting_on.url).signup()
    listed = await user.get("/dropbox/v1/changes")
    assert listed.status == 200 and listed.body["has_more"] is False
    wait = asyncio.ensure_future(user.get(f"/dropbox/v1/changes/wait?cursor={listed.body['cursor']}&timeout=120"))
    while await open_waits(http, f"http://127.0.0.1:{metrics_port}") < 1:  # the wait is parked, not answered
        assert not wait.done(), wait.result().body
        await asyncio.sleep(0.05)
    made = await Api(http, changing_on.url, user.token).post("/dropbox/v1/folders", json={"path": "/from-the-other"})
    assert made.status == 201
    answer = await asyncio.wait_for(wait, 120)
    assert answer.status == 200 and answer.body == {"changes": True}  # woken, not timed out
    since = await user.get(f"/dropbox/v1/changes?cursor={listed.body['cursor']}")
    assert [change["path"] for change in since.body["changes"]] == ["/from-the-other"]

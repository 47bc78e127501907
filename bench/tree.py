"""A folder of many files: the first and the last page of its entries, and a search, beside one ``GET /healthz``.

Contract v1.2 pages a folder by a keyset (never OFFSET), so the last page of
100,000 entries should cost what the first does. The folder is filled through
the gateway's own database (:func:`fill` says why not through the API). Then,
in the same run, each measurement is repeated: ``GET
/dropbox/v1/folders/{id}/entries`` without a cursor (the first page) and with
the cursor of the page before the last (the last page), ``GET
/dropbox/v1/search?q=`` for a name that matches one file (on SQLite it reads the
user's names; on PostgreSQL a trigram index serves it, revision 0014), and ``GET /healthz`` (the request's fixed cost). Each figure is
the median of the runs, in milliseconds, with its ratio to ``/healthz``.
Both engines: one gateway on SQLite, then one on PostgreSQL.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import urllib.request
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from sqlalchemy import insert

from bench.stack import BenchStack, Figure, api_post, print_table, signup
from deploy.postgres import PostgresCluster
from gateway.db import Database, database_url, tables
from gateway.db import files as files_db
from protocol.fingerprints import EMPTY_FINGERPRINT
from protocol.paths import name_key

BATCH = 5000


@contextlib.contextmanager
def stack_on(engine: str) -> Iterator[BenchStack]:
    """The local stack with its gateway on SQLite or on a private PostgreSQL, and no cap on files per user."""
    env = {"GATEWAY_MAX_FILES_PER_USER": "0"}
    if engine == "sqlite":
        with BenchStack(gateway_env=env) as stack:
            yield stack
        return
    postgres = PostgresCluster(Path(tempfile.mkdtemp(prefix="bench-postgres-")), sync_init=False)
    try:
        postgres.start()
        with BenchStack(gateway_env={**env, "GATEWAY_DATABASE_URL": postgres.url}) as stack:
            yield stack
    finally:
        postgres.destroy()


async def fill(database_url: str, owner_id: int, folder_id: str, files: int) -> float:
    """``files`` empty files named file-000000.txt, ... into the folder, written as the gateway writes an
    uploaded file (a ``files`` row and its node), straight into its database; the files per second it took.

    Not through the API, which would take a request (and a name lookup) per file: 100,000 of them take
    many minutes on this machine. The owner's usage counters are kept as the gateway keeps them
    (gateway/db/files.py's count_usage, in the same transaction). What is measured below goes through
    the API only.
    """
    db = await Database.open(database_url)
    started = time.monotonic()
    try:
        now = "2026-01-01T00:00:00.000000Z"
        for start in range(0, files, BATCH):
            names = [f"file-{n:06d}.txt" for n in range(start, min(files, start + BATCH))]
            ids = [secrets.token_hex(16) for _ in names]
            rows = [{"id": file_id, "owner_id": owner_id, "file_name": name, "file_size": 0, "file_type": "text/plain",
                     "fingerprint": EMPTY_FINGERPRINT, "chunk_size": 8 * 1024 * 1024, "total_chunks": 0,
                     "status": "uploaded", "created_at": now, "updated_at": now, "completed_at": now}
                    for file_id, name in zip(ids, names, strict=True)]
            async with db.transaction() as conn:
                await conn.execute(insert(tables.files), rows)
                await files_db.count_usage(conn, rows, added=True)
                await conn.execute(insert(tables.nodes), [
                    {"id": file_id, "owner_id": owner_id, "kind": "file", "parent_id": folder_id, "name": name,
                     "name_key": name_key(name), "created_at": now, "modified_at": now}
                    for file_id, name in zip(ids, names, strict=True)])
    finally:
        await db.close()
    return files / (time.monotonic() - started)


def api_get(gateway_url: str, path: str, token: str) -> dict:
    request = urllib.request.Request(gateway_url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


async def timed(session: aiohttp.ClientSession, url: str) -> tuple[float, dict]:
    started = time.perf_counter()
    async with session.get(url) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {body}")
    return (time.perf_counter() - started) * 1000, body


async def last_cursor(session: aiohttp.ClientSession, entries_url: str, limit: int) -> str | None:
    """The cursor that fetches the last page (walking every page once, untimed)."""
    cursor = None
    while True:
        _, page = await timed(session, entries_url + f"?limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        if page["cursor"] is None:
            return cursor
        cursor = page["cursor"]


async def measure(gateway_url: str, token: str, folder_id: str, files: int, limit: int, runs: int) -> dict[str, Figure]:
    entries = f"{gateway_url}/dropbox/v1/folders/{folder_id}/entries"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        cursor = await last_cursor(session, entries, limit)
        urls = {
            "GET /healthz": f"{gateway_url}/healthz",
            f"first page ({limit} entries)": f"{entries}?limit={limit}",
            f"last page ({limit} entries)": f"{entries}?limit={limit}" + (f"&cursor={cursor}" if cursor else ""),
            "search (one match)": f"{gateway_url}/dropbox/v1/search?q=file-{files - 1:06d}",
        }
        found: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(runs):  # interleaved, so a noisy moment weighs on every figure alike
            for name, url in urls.items():
                found[name].append((await timed(session, url))[0])
        last = (await timed(session, urls[f"last page ({limit} entries)"]))[1]
        assert last["cursor"] is None and last["entries"][-1]["name"] == f"file-{files - 1:06d}.txt", last["cursor"]
    return {name: Figure(values) for name, values in found.items()}


def run_engine(engine: str, args) -> tuple[list[tuple[str, ...]], float]:
    with stack_on(engine) as stack:
        _, token = signup(stack.gateway_url)
        folder = api_post(stack.gateway_url, "/dropbox/v1/folders", {"path": "/big"}, token)
        owner = api_get(stack.gateway_url, "/dropbox/v1/users/me", token)["user_id"]
        env = stack.gateway_environment()
        url = database_url(env.get("GATEWAY_DATABASE_URL", ""), env.get("GATEWAY_DATABASE_PATH", ""))
        rate = asyncio.run(fill(url, owner, folder["folder_id"], args.files))
        figures = asyncio.run(measure(stack.gateway_url, token, folder["folder_id"], args.files, args.limit, args.runs))
    base = statistics.median(figures["GET /healthz"].values)
    rows: list[tuple[str, ...]] = [(f"{engine}: {name}", f"{figure} ms", f"{figure.median / base:.1f}x") for name, figure in figures.items()]
    return rows, rate


def main(argv: list[str] | None = None) -> list[tuple[str, ...]]:
    parser = argparse.ArgumentParser(prog="python -m bench tree", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000, help="files in the folder")
    parser.add_argument("--limit", type=int, default=100, help="entries per page")
    parser.add_argument("--runs", type=int, default=21, help="times each request is timed")
    parser.add_argument("--engine", action="append", choices=("sqlite", "postgresql"),
                        help="only this engine (repeatable); default: both")
    args = parser.parse_args(argv)
    rows, rates = [], []
    for engine in args.engine or ("sqlite", "postgresql"):
        engine_rows, rate = run_engine(engine, args)
        rows += engine_rows
        rates.append(f"{engine} {rate:,.0f}")
    print_table(
        f"A folder of {args.files:,} files: median of {args.runs} runs (min, max), ratio to GET /healthz in the same run; "
        f"rows written at {', '.join(rates)} files/s",
        rows, ("request", "time", "ratio to /healthz"),
    )
    return rows


if __name__ == "__main__":
    main()

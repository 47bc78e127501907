"""``dbx sync LOCAL_DIR [REMOTE_PATH]``: the command around the engine (apply.py).

Its state (the index) lives outside the synced folder, under
``$XDG_STATE_HOME/dbx/sync`` (``~/.local/state`` by default), one database per
server, local folder and remote folder; ``--state PATH`` names another. With
``--once`` it makes one pass and exits 0 when both sides agree; without it, it
watches: it makes a pass, then another as soon as the change journal
(``/changes/wait``) or the local file system's events (watch.py) have news,
listing again only the local folders the events name; the whole local folder
is scanned on the first pass, after a failed pass, when the events cannot be
followed, and every ``--interval`` seconds as a safety net. A line per
operation and a summary line per pass go to stderr; with ``--json``, one JSON
object per operation and per pass to stdout instead.
"""
from __future__ import annotations

import datetime
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.errors import ClientError, SyncStopped, UsageError

TRANSFERS = 4  # operations of a batch in flight at once (each file's chunks move in parallel too)

if TYPE_CHECKING:  # the engine (aiohttp, SQLite) is loaded when `dbx sync` runs, not for every dbx command
    from client.cli import Context
    from client.sync import apply, watch


def add_arguments(parser: Any) -> None:
    parser.add_argument("local_dir", metavar="LOCAL_DIR")
    parser.add_argument("remote_path", nargs="?", default="/", metavar="REMOTE_PATH",
                        help="the folder of your tree to keep the same (default: /, all of it)")
    parser.add_argument("--once", action="store_true", help="one pass; exit 0 when both sides agree")
    parser.add_argument("--allow-mass-delete", action="store_true",
                        help="let a pass delete more than half of the files on one side")
    parser.add_argument("--state", metavar="PATH", help="the sync state's database (default: under $XDG_STATE_HOME)")
    parser.add_argument("--interval", type=float, default=600.0, metavar="SECONDS",
                        help="without --once: the longest time between two scans of the whole local folder "
                             "(default 600; between them, the file system's events say what to read)")


def state_path(server: str, local: Path, remote_path: str, environ: Any = os.environ) -> Path:
    base = Path(environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    pairing = hashlib.sha256(f"{server}\0{local}\0{remote_path}".encode()).hexdigest()[:16]
    return base / "dbx" / "sync" / f"{pairing}.sqlite3"


RETRY = 30.0  # seconds before what failed (an operation, a wait on the gateway, the watcher) is tried again


async def remote_news(engine: apply.Engine, cursor: str) -> None:
    """Until the journal has news after ``cursor`` (or the gateway does not answer for a while: a pass says why)."""
    import asyncio

    from client.sync.remote import RemoteFailure

    try:
        while not await engine.remote.wait(cursor, 120):
            pass
    except RemoteFailure:
        await asyncio.sleep(RETRY)


async def wait_for_news(engine: apply.Engine, cursor: str | None, watcher: watch.LocalWatcher, seconds: float) -> bool:
    """Until the journal or the local folder has news (True), or ``seconds`` have passed (False)."""
    import asyncio

    waits: list[asyncio.Task[Any]] = [asyncio.create_task(watcher.news.wait())]
    if cursor is not None:
        waits.append(asyncio.create_task(remote_news(engine, cursor)))
    try:
        done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    return bool(done)


# What an operation on each side looks like in a line for people.
WORDS = {("upload", "remote"): "uploaded", ("download", "local"): "downloaded", ("mkdir", "remote"): "made on the server",
         ("mkdir", "local"): "made here", ("move", "remote"): "moved on the server", ("move", "local"): "moved here",
         ("delete", "remote"): "deleted on the server (to its trash)", ("delete", "local"): "deleted here"}


def reporter(ctx: Context):
    """Each operation as it is done: a line on stderr for people, an event on stdout with --json."""

    def on_op(op: Any, error: str | None) -> None:
        side = op.side.value if op.side is not None else None
        if ctx.json:
            ctx.emit({"ok": error is None, "event": "op", "action": op.action.value, "side": side, "path": op.path,
                      "reason": op.reason, **({"error": error} if error else {})})
        elif error is not None:
            ctx.info(f"{op.path}: {op.action.value} failed ({error}); tried again next pass")
        elif side is not None:
            ctx.info(f"{op.path}: {WORDS.get((op.action.value, side), op.action.value)}")

    return on_op


def summary_json(summary: apply.PassSummary) -> dict:
    return {"ok": True, "event": "pass", "rounds": summary.rounds, "done": summary.done,
            "failures": summary.failures, "notes": summary.notes, "bytes_read": summary.bytes_read,
            "files_hashed": summary.files_hashed, "seconds": round(summary.seconds, 4)}


def folders(ctx: Context) -> tuple[Path, Path]:
    """(the local folder, the state's database), checked: the state is never inside what it syncs."""
    args = ctx.args
    local = Path(args.local_dir).resolve()
    if not local.is_dir():
        raise UsageError(f"{local} is not a folder; create it first (an empty folder syncs the remote one into it)")
    state = Path(args.state).resolve() if getattr(args, "state", None) else state_path(ctx.server, local, args.remote_path)
    if state == local or local in state.parents:
        raise UsageError("the sync state cannot live inside the folder it syncs; pick another --state")
    state.parent.mkdir(parents=True, exist_ok=True)
    return local, state


async def cmd_sync(ctx: Context) -> int:
    from client.sync import apply
    from client.sync.index import Index
    from client.sync.remote import HttpRemote, RemoteFailure

    args = ctx.args
    local, state = folders(ctx)
    async with ctx.client() as client:
        config = await client.config()
        index = Index(state)
        try:
            engine = apply.Engine(index, HttpRemote(client, config, quiet=ctx.quiet), local, args.remote_path,
                                  chunk_size=int(config["chunk_size"]), today=datetime.date.today,
                                  allow_mass_delete=args.allow_mass_delete, parallel=TRANSFERS, on_op=reporter(ctx))
            if args.once:
                await one_pass(ctx, engine, None)
                return 0
            return await keep_watching(ctx, engine, local)
        except (apply.PassFailed, RemoteFailure) as exc:
            cause = exc.__cause__  # the gateway's own answer: its exit code (3 unreachable, ...)
            raise cause if isinstance(cause, ClientError) else SyncStopped(str(exc)) from None
        finally:
            index.close()


async def one_pass(ctx: Context, engine: apply.Engine, changed: set[str] | None, *, say_idle: bool = True) -> bool:
    """A pass, reported; whether all went well (False: some operation failed and is tried again).

    ``say_idle``: a line for people even when nothing was done (watch mode says only the passes that did
    something: its own downloads wake it once more, for nothing).

    :class:`SyncStopped` when it must not go on; PassFailed and RemoteFailure go up.
    """
    from client.sync import apply
    from client.sync.remote import RemoteFailure
    from client.sync.scan import ScanError

    try:
        summary = await engine.sync_once(changed=changed)
    except (apply.PassFailed, RemoteFailure):
        raise
    except (apply.SyncStopped, ScanError) as exc:
        raise SyncStopped(str(exc)) from None
    for note in summary.notes:
        ctx.info(note)
    if ctx.json:
        ctx.emit(summary_json(summary))
    elif say_idle or summary.done or summary.failures:
        ctx.info(summary.line())
    return not summary.failures


async def keep_watching(ctx: Context, engine: apply.Engine, local: Path) -> int:
    """Watch mode: a pass whenever either side has news (see the module's docstring); runs until stopped."""
    import time

    from client.sync import apply, watch
    from client.sync.remote import RemoteFailure

    watcher = watch.LocalWatcher(local)
    watcher.start()  # before the first (whole) scan: nothing changed during it is missed
    full_scan_at = time.monotonic()
    first = True
    try:
        while True:
            changed = watcher.take()
            for reason in changed.reasons:
                ctx.info(reason)
            if changed.full:
                full_scan_at = time.monotonic()
            try:
                smooth = await one_pass(ctx, engine, changed.to_scan(), say_idle=first)
                first = False
            except (apply.PassFailed, RemoteFailure) as exc:
                ctx.info(f"{exc}; trying again")  # what failed is planned again next pass, from a whole scan
                watcher.pending.merge(watch.Changed(full=True))
                smooth = False
            timeout = ctx.args.interval - (time.monotonic() - full_scan_at)
            if not watcher.watching or not smooth:  # what failed is tried again soon, news or not
                timeout = min(timeout, RETRY)
            if not await wait_for_news(engine, engine.index.get("cursor"), watcher, max(timeout, 0.0)):
                watcher.pending.merge(watch.Changed(full=True))  # the safety net: events can be lost unsaid
                watcher.start()  # again, if it had stopped
    finally:
        await watcher.stop()

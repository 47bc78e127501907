"""``dbx sync LOCAL_DIR [REMOTE_PATH]``: the command around the engine (apply.py).

Its state (the index) lives outside the synced folder, under
``$XDG_STATE_HOME/dbx/sync`` (``~/.local/state`` by default), one database per
server, local folder and remote folder; ``--state PATH`` names another. With
``--once`` it makes one pass and exits 0 when both sides agree; without it, it
makes a pass, then waits on the change journal (``/changes/wait``) and makes
another as soon as the server has news, or after ``--interval`` seconds at the
latest for what changed locally (following the file system's events is for
later). A line per operation and a summary line per pass go to stderr; with
``--json``, one JSON object per operation and per pass to stdout instead.
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
    from client.sync import apply


def add_arguments(parser: Any) -> None:
    parser.add_argument("local_dir", metavar="LOCAL_DIR")
    parser.add_argument("remote_path", nargs="?", default="/", metavar="REMOTE_PATH",
                        help="the folder of your tree to keep the same (default: /, all of it)")
    parser.add_argument("--once", action="store_true", help="one pass; exit 0 when both sides agree")
    parser.add_argument("--allow-mass-delete", action="store_true",
                        help="let a pass delete more than half of the files on one side")
    parser.add_argument("--state", metavar="PATH", help="the sync state's database (default: under $XDG_STATE_HOME)")
    parser.add_argument("--interval", type=float, default=30.0, metavar="SECONDS",
                        help="without --once: the longest wait between passes (default 30)")


def state_path(server: str, local: Path, remote_path: str, environ: Any = os.environ) -> Path:
    base = Path(environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    pairing = hashlib.sha256(f"{server}\0{local}\0{remote_path}".encode()).hexdigest()[:16]
    return base / "dbx" / "sync" / f"{pairing}.sqlite3"


async def wait_for_news(engine: apply.Engine, cursor: str | None, interval: float) -> None:
    """Until the journal has news after ``cursor``, or ``interval`` seconds (local changes are found by the scan)."""
    import asyncio

    from client.sync.remote import RemoteFailure

    try:
        if cursor is not None:
            await engine.remote.wait(cursor, min(interval, 120))
            return
    except RemoteFailure:
        pass  # unreachable for now: wait, then try a pass again
    await asyncio.sleep(interval)


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
            "failures": summary.failures, "notes": summary.notes, "bytes_read": summary.bytes_read}


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
    from client.sync.scan import ScanError

    args = ctx.args
    local, state = folders(ctx)
    async with ctx.client() as client:
        config = await client.config()
        index = Index(state)
        try:
            engine = apply.Engine(index, HttpRemote(client, config, quiet=ctx.quiet), local, args.remote_path,
                                  chunk_size=int(config["chunk_size"]), today=datetime.date.today,
                                  allow_mass_delete=args.allow_mass_delete, parallel=TRANSFERS, on_op=reporter(ctx))
            while True:
                try:
                    summary = await engine.sync_once()
                except (apply.PassFailed, RemoteFailure) as exc:
                    if args.once:
                        cause = exc.__cause__  # the gateway's own answer: its exit code (3 unreachable, ...)
                        raise cause if isinstance(cause, ClientError) else SyncStopped(str(exc)) from None
                    ctx.info(f"{exc}; trying again")  # watching: what failed is planned again next pass
                except (apply.SyncStopped, ScanError) as exc:
                    raise SyncStopped(str(exc)) from None
                else:
                    for note in summary.notes:
                        ctx.info(note)
                    if ctx.json:
                        ctx.emit(summary_json(summary))
                    else:
                        ctx.info(summary.line())
                    if args.once:
                        return 0
                await wait_for_news(engine, index.get("cursor"), args.interval)
        finally:
            index.close()

"""The tree on the command line (contract v1.2): mkdir, mv, cp, rm, ls PATH, trash, restore, versions, search,
and whole folders (upload -r, download -r): the commands client/cli.py adds from here.

Files and folders are named by path (``/docs/a.txt``) or by id (client/remote.py).
A command given several targets goes on after one fails, says why on stderr
(and, with ``--json``, in a line of its own), and exits with the first
failure's code. Nothing here deletes for good: ``rm`` moves to the trash, and
``restore`` brings back from it, or brings back a file's earlier version.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from client.errors import ClientError, NotFound, Refused, ServerError, UsageError
from client.output import entry_cells, entry_lines, human_size, printable, report_error, show_time, table

if TYPE_CHECKING:
    from client.api import GatewayClient
    from client.cli import Context

SECTIONS = ("mine", "shared", "all")


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """The tree's subcommands, added with cli.build_parser's ``command(name, help)``."""
    p = command("mkdir", "make folders (and the folders above them); an existing folder is fine")
    p.add_argument("paths", nargs="+", metavar="PATH")

    for name, verb in (("mv", "move or rename"), ("cp", "copy (no bytes move: the content is shared)")):
        p = command(name, f"{verb} files and folders: into an existing folder DEST, or to the new path DEST")
        p.add_argument("sources", nargs="+", metavar="SOURCE")
        p.add_argument("dest", metavar="DEST")
        p.add_argument("--autorename", action="store_true",
                       help="when the name is taken, take the first free one: 'name (1).ext', ...")
        if name == "cp":
            p.add_argument("-r", "--recursive", action="store_true", help="copy folders with all they hold")

    command("trash", "list what is in the trash, newest first (`dbx restore` brings it back)")
    p = command("restore", "bring back from the trash (by id or by the path it had), or restore an earlier "
                           "version of a file (by the version's id, from `dbx versions`)")
    p.add_argument("targets", nargs="+", metavar="ID_OR_PATH")

    p = command("versions", "list a file's earlier versions (`dbx download VERSION_ID` fetches one, "
                            "`dbx restore VERSION_ID` makes it current again)")
    p.add_argument("file", metavar="FILE")

    p = command("search", "find your folders and files whose name holds TEXT (case does not matter)")
    p.add_argument("query", metavar="TEXT")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")


async def each_target(ctx: Context, targets: Iterable[str], action: Callable[[str], Awaitable[None]]) -> int:
    """``action(target)`` for every target, going on after one that fails; the first failure's exit code."""
    status = 0
    for target in targets:
        try:
            await action(target)
        except ClientError as exc:
            if not (exc.per_file or isinstance(exc, UsageError)):
                raise
            report_error(exc)
            if ctx.json:
                ctx.emit({"ok": False, "target": target, "error": exc.to_json()})
            status = status or exc.exit_code
    return status


def explain(exc: Refused, where: str) -> Refused:
    """The gateway's 409s in words that say what to do."""
    if exc.code == "name_taken":
        return Refused(printable(f"{where} is taken; pick another name, or pass --autorename to take a free one"),
                       code=exc.code, status=exc.status)
    if exc.code == "cycle":
        return Refused(printable(f"a folder cannot go into itself or a folder inside it ({where})"),
                       code=exc.code, status=exc.status)
    return exc


# -- mkdir, mv, cp, rm ---------------------------------------------------------------------


async def cmd_mkdir(ctx: Context) -> int:
    from client.remote import remote_path

    async with ctx.client() as client:
        async def make(text: str) -> None:
            path = remote_path(text)
            try:
                status, folder = await client.create_folder(path=path)
            except Refused as exc:
                if exc.code != "name_taken":
                    raise
                raise Refused(printable(f"cannot make {path}: a file has its name, or the name of a folder above it"),
                              code=exc.code, status=exc.status) from None
            made = status == 201
            ctx.answer({"ok": True, "created": made, **folder},
                       printable(f"Made {folder.get('path', path)}" if made else f"{folder.get('path', path)} is there "
                                 "already"))

        return await each_target(ctx, ctx.args.paths, make)


async def cmd_mv(ctx: Context) -> int:
    return await move_or_copy(ctx, copying=False)


async def cmd_cp(ctx: Context) -> int:
    return await move_or_copy(ctx, copying=True)


async def move_or_copy(ctx: Context, copying: bool) -> int:
    from client.api import entry_id, entry_kind
    from client.remote import child_path, describe, destination, resolve

    args = ctx.args
    async with ctx.client() as client:
        only = await resolve(client, args.sources[0]) if len(args.sources) == 1 else None
        folder, new_name = await destination(client, args.dest, len(args.sources), only)

        async def one(text: str) -> None:
            entry = only or await resolve(client, text)
            name = new_name or str(entry.get("name") or entry.get("file_name"))
            where = child_path(folder, name)
            try:
                if not copying:
                    done = await client.move(entry, parent_id=entry_id(folder), name=name, autorename=args.autorename)
                elif entry_kind(entry) == "file":
                    done = await client.copy(entry_id(entry), parent_id=entry_id(folder), name=name,
                                             autorename=args.autorename)
                elif args.recursive:
                    from client.folders import copy_folder

                    done = await copy_folder(client, entry, folder, name, args.autorename)
                else:
                    raise UsageError(printable(f"{describe(entry)} is a folder; `dbx cp -r` copies a folder with all "
                                               "it holds"))
            except Refused as exc:
                raise explain(exc, where) from None
            verb = "Copied" if copying else "Moved"
            ctx.answer({"ok": True, "source": entry, **done},
                       printable(f"{verb} {describe(entry)} to {done.get('path', where)}"))

        return await each_target(ctx, args.sources, one)


async def cmd_rm(ctx: Context) -> int:
    """``rm TARGET...``: to the trash; a folder only with ``-r`` (and all it holds with it)."""
    from client.api import entry_id, entry_kind
    from client.remote import describe, resolve

    async with ctx.client() as client:
        async def remove(text: str) -> None:
            entry = await resolve(client, text)
            node_id = entry_id(entry)
            try:
                if entry_kind(entry) == "file":
                    await client.delete_file(node_id)
                elif entry.get("parent_id") is None or node_id == "root":
                    raise UsageError("the root folder cannot be removed; remove what it holds instead")
                elif not ctx.args.recursive:
                    raise UsageError(printable(f"{describe(entry)} is a folder; `dbx rm -r` moves it to the trash "
                                               "with all it holds"))
                else:
                    await client.delete_folder(node_id)
            except NotFound as exc:
                raise NotFound(printable(f"{describe(entry)} was not found, or you do not own it; `dbx ls` lists "
                                         "yours"), status=exc.status) from None
            ctx.answer({"ok": True, "id": node_id, f"{entry_kind(entry)}_id": node_id, "path": entry.get("path"),
                        "deleted": True, "trashed": True},
                       printable(f"Moved {describe(entry)} to the trash (`dbx restore {node_id}` brings it back)."))

        return await each_target(ctx, ctx.args.targets, remove)


# -- ls, search ------------------------------------------------------------------------------


def lists_a_path(args: argparse.Namespace) -> bool:
    """``dbx ls PATH``, as against the v1 listing of all files (``dbx ls [mine|shared|all]``)."""
    target = getattr(args, "target", None)
    if target is None or target in SECTIONS:
        return False
    if getattr(args, "section_flag", None):
        raise UsageError("--shared and --all list files by section, not a folder; give one or the other")
    return True


async def cmd_ls_path(ctx: Context) -> int:
    from client.api import entry_id, entry_kind
    from client.remote import describe, resolve

    async with ctx.client() as client:
        entry = await resolve(client, ctx.args.target)
        if entry_kind(entry) != "folder":
            entries = [entry]
        else:
            entries = [e async for page in client.folder_entries(entry_id(entry)) for e in page]
    if ctx.json:
        ctx.emit({"folder": entry, "entries": entries} if entry_kind(entry) == "folder" else {"entries": entries})
        return 0
    for line in entry_lines(entries):
        ctx.out(line)
    if not entries:
        ctx.info(f"{describe(entry)} is empty")
    return 0


async def cmd_search(ctx: Context) -> int:
    async with ctx.client() as client:
        entries = await client.search(ctx.args.query, ctx.args.limit)
    if ctx.json:
        ctx.emit({"query": ctx.args.query, "entries": entries})
        return 0
    for line in entry_lines(entries, full_path=True):
        ctx.out(line)
    if not entries:
        ctx.info(f"nothing's name holds {ctx.args.query!r}")
    return 0


# -- trash, restore, versions ------------------------------------------------------------------


async def trashed(client: GatewayClient) -> list[dict]:
    return [e async for page in client.trash() for e in page]


async def cmd_trash(ctx: Context) -> int:
    from client.api import entry_id

    async with ctx.client() as client:
        entries = await trashed(client)
    if ctx.json:
        ctx.emit({"entries": entries})
        return 0
    rows = [("DELETED", "", "SIZE", "ID", "PATH")]
    for entry in entries:
        kind, size, _, path = entry_cells(entry, str(entry.get("path") or entry.get("name") or ""))
        rows.append((show_time(entry.get("deleted_at")), kind, size, entry_id(entry), path))
    if entries:
        for line in table(rows, right=(2,)):
            ctx.out(line)
    else:
        ctx.info("the trash is empty")
    return 0


async def from_trash_at(client: GatewayClient, path: str) -> dict:
    """The newest entry of the trash that had ``path``; NotFound when none had it."""
    from protocol.paths import name_key, split_path
    from client.remote import remote_path

    wanted = [name_key(name) for name in split_path(remote_path(path))]
    async for page in client.trash():
        for entry in page:
            had = str(entry.get("path") or "")
            if had.startswith("/") and [name_key(name) for name in had[1:].split("/")] == wanted:
                return entry
    raise NotFound(printable(f"nothing in the trash had the path {path}; `dbx trash` lists what is there"))


async def cmd_restore(ctx: Context) -> int:
    from client.api import entry_id
    from client.remote import is_path

    async with ctx.client() as client:
        async def restore(text: str) -> None:
            if is_path(text):
                restored = await client.restore_from_trash(entry_id(await from_trash_at(client, text)))
                what = "from the trash"
            else:
                try:
                    restored, what = await client.restore_from_trash(text), "from the trash"
                except NotFound:
                    try:
                        restored, what = await client.restore_version(text), "as the current version"
                    except NotFound:
                        raise NotFound(printable(f"{text} is neither in the trash nor an earlier version of a file "
                                                 "you own; `dbx trash` and `dbx versions FILE` list them")) from None
            ctx.answer({"ok": True, **restored}, printable(f"Restored {restored.get('path', text)} {what}."))

        return await each_target(ctx, ctx.args.targets, restore)


async def cmd_versions(ctx: Context) -> int:
    from client.api import entry_kind
    from client.remote import describe, resolve

    async with ctx.client() as client:
        current = await resolve(client, ctx.args.file)
        if entry_kind(current) != "file":
            raise UsageError(printable(f"{describe(current)} is a folder; folders have no versions"))
        versions = await client.versions(current["file_id"])
    if ctx.json:
        ctx.emit({"file": current, "versions": versions})
        return 0
    rows = [("VERSION_ID", "SIZE", "MODIFIED", "")]
    for number, entry in enumerate([current, *versions]):
        size = entry.get("file_size")
        rows.append((str(entry.get("file_id")), human_size(size) if isinstance(size, int) else "?",
                     show_time(entry.get("modified_at") or entry.get("created_at")),
                     "current" if number == 0 else ""))
    for line in table(rows, right=(1,)):
        ctx.out(line)
    if not versions:
        ctx.info(f"{describe(current)} has no earlier versions")
    return 0


# -- FILE in the v1 commands: a path or an id -----------------------------------------------


async def file_id_of(client: GatewayClient, text: str) -> str:
    """FILE as ``info``, ``share``, ``link``... take it: an id as it is, or the id of the file at a path."""
    from client.api import entry_id, entry_kind
    from client.remote import describe, is_path, resolve

    if not is_path(text):
        return text
    entry = await resolve(client, text)
    if entry_kind(entry) != "file":
        raise UsageError(printable(f"{describe(entry)} is a folder; this command takes a file"))
    return entry_id(entry)


async def info_object(client: GatewayClient, text: str) -> dict:
    """What ``dbx info`` shows: the file object with its chunks, or a folder's object."""
    from client.api import entry_kind
    from client.remote import is_path, not_found, resolve

    if is_path(text):
        entry = await resolve(client, text)
        if entry_kind(entry) == "folder":
            return entry
        text = entry["file_id"]
    try:
        return await client.get_file(text)
    except NotFound:
        raise not_found(text, client.server) from None
    except ServerError as exc:
        if exc.status != 404:  # 404 unknown_endpoint: not the shape of a file id
            raise
        raise not_found(text, client.server) from None


# -- whole folders: upload -r, download -r, and upload --to ------------------------------------


def upload_folder_path(to: str | None) -> str | None:
    """``--to``: a folder's path, checked before anything is read or sent."""
    from client.remote import remote_path

    if to is None:
        return None
    if not to.startswith("/"):
        raise UsageError(printable(f"--to takes a path in your tree, starting with '/' (not {to!r})"))
    return remote_path(to)


def upload_place(args: argparse.Namespace, to: str | None, path: str) -> dict:
    """Where one named file goes (the claim's ``path`` under ``--to``) and how a taken name is met (``mode``)."""
    from protocol.paths import join_path

    place: dict[str, Any] = {"mode": "overwrite"} if args.overwrite else {}
    if to is not None:
        place["path"] = join_path(to, args.name or os.path.basename(path))
    return place


async def upload_folder(ctx: Context, client: GatewayClient, config: dict, path: str, to: str | None) -> int:
    """``dbx upload -r DIR [--to FOLDER]``: DIR and all it holds into FOLDER/DIR (client/folders.py)."""
    from client.folders import TreeOptions, TreeUpload
    from protocol.paths import InvalidName, ROOT_PATH, check_name, join_path

    local = os.path.abspath(path)  # noqa: ASYNC240 - the working directory, read once before any request
    name = os.path.basename(local)
    try:
        base = join_path(to or ROOT_PATH, check_name(name)) if name else (to or ROOT_PATH)
    except InvalidName as exc:
        raise UsageError(printable(f"{path}: its name cannot be used on the server: {exc}")) from None
    args = ctx.args
    options = TreeOptions(jobs=args.jobs, parallel=args.parallel, retries=args.retries, overwrite=args.overwrite,
                          quiet=ctx.quiet)
    summary = await TreeUpload(client, config, options, ctx.emit if ctx.json else lambda line: None).run(local, base)
    more = f", {summary.unchanged} unchanged" if summary.unchanged else ""
    more += f", {summary.failed + summary.skipped} not uploaded" if summary.failed + summary.skipped else ""
    ctx.answer(summary.to_json(), printable(
        f"{base}: {summary.done} of {summary.files} files uploaded ({human_size(summary.bytes)}){more}, "
        f"{summary.folders_made} folders made, in {summary.seconds:.1f}s"))
    return summary.exit_code


async def download_target(ctx: Context, client: GatewayClient) -> tuple[str | None, dict | None]:
    """What ``dbx download FILE`` fetches: (a file's id, None), or (None, the folder) with ``-r``."""
    from client.api import entry_id, entry_kind
    from client.remote import describe, is_path, resolve

    target = ctx.args.file_id
    if not (is_path(target) or ctx.args.recursive):
        return target, None  # an id: download_file asks for it (one request fewer)
    entry = await resolve(client, target)
    if entry_kind(entry) == "file":
        return entry_id(entry), None
    if not ctx.args.recursive:
        raise UsageError(printable(f"{describe(entry)} is a folder; `dbx download -r` fetches it with all it holds"))
    return None, entry


async def download_folder(ctx: Context, client: GatewayClient, folder: dict, options: Any) -> int:
    """``dbx download -r FOLDER [-o DIR]``: its files into DIR (default: a directory of its name, here)."""
    from client.folders import download_tree, local_target
    from client.remote import describe

    target = local_target(folder, ctx.args.output)
    summary = await download_tree(client, folder, target, options, ctx.args.jobs,
                                  ctx.emit if ctx.json else report_line)
    failed = f", {summary.failed + summary.skipped} not downloaded" if summary.failed + summary.skipped else ""
    ctx.answer(summary.to_json(), printable(
        f"{describe(folder)}: {summary.done} of {summary.files} files saved in {target} "
        f"({human_size(summary.bytes)}, fingerprints verified){failed}, in {summary.seconds:.1f}s"))
    return summary.exit_code


def report_line(line: dict) -> None:
    """A failed file of a whole folder's transfer, on stderr for people."""
    if not line.get("ok"):
        error = line.get("error") or {}
        report_error(ClientError(f"{line.get('path')}: {error.get('message')}"))


COMMANDS: dict[str, Callable[[Context], Any]] = {
    "mkdir": cmd_mkdir,
    "mv": cmd_mv,
    "cp": cmd_cp,
    "trash": cmd_trash,
    "restore": cmd_restore,
    "versions": cmd_versions,
    "search": cmd_search,
}

"""``dbx``: the command-line client of the gateway.

    dbx signup [USERNAME] [--email EMAIL]     create an account and log in
    dbx login [USERNAME]                      log in; the token is kept in ~/.config/dbx
    dbx logout [--local]                      end the session on the server, forget the token
    dbx passwd                                change the password (ends every session), log in again
    dbx whoami                                who you are, and how much of your quota you use
    dbx upload PATH... [--to FOLDER] [--overwrite] [--parallel N]
                                              resumable, parallel, straight to the store
    dbx upload -r DIR... [--to FOLDER] [-j N] whole folders: DIR into FOLDER/DIR, unchanged files skipped
    dbx download FILE [-o PATH] [--force]     verified, resumable, from the CDN tier
    dbx download -r FOLDER [-o DIR]           a whole folder
    dbx ls [PATH]                             a folder, long format (sizes, dates); without PATH: all your files
    dbx ls [--shared | --all]                 your files; files shared with you
    dbx mkdir PATH...                         make folders (and those above them)
    dbx mv SOURCE... DEST [--autorename]      move or rename files and folders
    dbx cp [-r] SOURCE... DEST [--autorename] copy (no bytes move)
    dbx rm [-r] FILE...                       to the trash (folders with -r)
    dbx trash                                 what is in the trash
    dbx restore ID_OR_PATH...                 bring back from the trash, or make an earlier version current
    dbx versions FILE                         a file's earlier versions (`dbx download VERSION_ID` fetches one)
    dbx search TEXT                           folders and files whose name holds TEXT
    dbx info FILE
    dbx share FILE USER...
    dbx unshare FILE USER
    dbx link FILE [--expires 7d] [--password | --password-stdin]   a link anyone can download with
    dbx links FILE                            a file's links
    dbx unlink LINK_ID                        revoke a link
    dbx sync LOCAL_DIR [REMOTE_PATH] [--once]  keep a folder and your tree the same, both ways

FILE, FOLDER, SOURCE and DEST are paths in your tree (``/docs/report.pdf``;
``/`` is the root) or ids (client/remote.py).

Server: --server URL, else $DBX_SERVER, else the one last logged in to, else
http://127.0.0.1:8080. Password: the prompt, or $DBX_PASSWORD, or
--password-stdin. Exit codes: client/errors.py, or `dbx --help`.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import stat
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

# Only what starts fast up here: `dbx upload` begins hashing its first file before the
# HTTP client (aiohttp, a few hundred milliseconds to import) and asyncio are loaded.
from client import errors
from client import tree_commands as tree
from client.config import CredentialStore, Credentials, resolve_server
from client.errors import AuthRequired, ClientError, ServerError, Unreachable, UsageError
from client.output import (file_row, human_size, info_lines, link_summary, link_table, printable, report_error,
                           whoami_lines)

if TYPE_CHECKING:
    from client.api import GatewayClient
    from client.hashing import FingerprintPass

RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)?(?:/s)?\s*$", re.IGNORECASE)
DURATION_PART = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
DURATION = re.compile(r"^\s*(?:\d+\s*[smhdw]\s*)+$", re.IGNORECASE)
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_rate(text: str) -> float:
    """'500K', '10M', '1.5MiB', '2000000' -> bytes per second (K = 1024)."""
    match = RATE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate; write it like 500K, 10M or 2000000")
    value = float(match.group(1)) * 1024 ** " KMGT".index((match.group(2) or " ").upper())
    if value <= 0:
        raise argparse.ArgumentTypeError("the rate must be positive")
    return value


def parse_duration(text: str) -> int:
    """'7d', '12h', '90m', '1w', '1d12h', '3600' (seconds) -> seconds."""
    text = text.strip()
    if text.isdigit():
        seconds = int(text)
    elif DURATION.match(text):
        seconds = sum(int(n) * SECONDS[unit.lower()] for n, unit in DURATION_PART.findall(text))
    else:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write it like 7d, 12h, 30m, 1w or 1d12h")
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the duration must be longer than 0 seconds")
    return seconds


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: exit 2, no traceback
        self.print_usage(sys.stderr)
        self.exit(errors.EXIT_USAGE, f"dbx: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--server", help="gateway URL (default: $DBX_SERVER, the last login, or http://127.0.0.1:8080)")
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes on stderr")

    parser = Parser(prog="dbx", description="Client of the self-hosted Dropbox-like gateway.", parents=[common],
                    epilog="Exit codes: 0 ok, 1 unexpected, 2 usage, 3 unreachable, 4 wrong username/password, "
                           "5 not logged in or session ended, 6 not found, 7 refused by the gateway, "
                           "8 refused by the store, 9 integrity, 10 local file exists (download --force), "
                           "11 throttled (try again later), 12 sync stopped (nothing more deleted), 130 interrupted.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def command(name: str, help: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common], **kwargs)

    for name, help in (("signup", "create an account, then log in"), ("login", "log in and keep the token")):
        p = command(name, help)
        p.add_argument("username", nargs="?", help="default: $DBX_USERNAME, or asked")
        if name == "signup":
            p.add_argument("--email", help="default: asked")
        p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")

    p = command("logout", "end the session on the server and forget its token")
    p.add_argument("--local", action="store_true", help="only forget the token; do not ask the server to end it")
    p = command("passwd", "change your password (every session ends), then log in again with the new one")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the current password from stdin's first line and the new one from its second")
    command("whoami", "show who you are logged in as, and your storage quota")

    p = command("upload", "upload files, or whole folders with -r (resumes an interrupted upload of the same file)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--to", metavar="FOLDER", help="the folder of your tree to upload into, made if missing "
                                                  "(a path such as /photos/2026; default: /)")
    p.add_argument("-r", "--recursive", action="store_true", help="upload folders with all they hold, into FOLDER/NAME")
    p.add_argument("--overwrite", action="store_true", help="replace a file of the same name (it becomes a version) "
                                                            "instead of taking a free name such as 'name (1).ext'")
    p.add_argument("-j", "--jobs", type=positive_int, default=8, help="files in flight with -r (default 8)")
    p.add_argument("-p", "--parallel", type=positive_int, default=4, help="chunks sent at once (default 4)")
    p.add_argument("--retries", type=non_negative_int, default=6, help="retries per chunk (default 6)")
    p.add_argument("--limit-rate", type=parse_rate, metavar="RATE", help="cap the upload rate, e.g. 10M (bytes/s)")
    p.add_argument("--name", help="file name on the server (one PATH only; default: its base name)")
    p.add_argument("--wait-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="how long to wait for the gateway to finish after the last chunk (default 600)")

    p = command("download", "download a file, or a folder with -r, verified against its fingerprint "
                            "(resumes a partial one)")
    p.add_argument("file_id", metavar="FILE", help="a path in your tree (/docs/a.txt) or a file id")
    p.add_argument("-o", "--output", metavar="PATH", help="file or directory (default: its name, here)")
    p.add_argument("-r", "--recursive", action="store_true", help="download a folder with all it holds")
    p.add_argument("-j", "--jobs", type=positive_int, default=4, help="files in flight with -r (default 4)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite the local file if it exists")
    p.add_argument("-p", "--parallel", type=positive_int, default=4, help="chunks fetched at once (default 4)")
    p.add_argument("--retries", type=non_negative_int, default=6, help="retries (default 6)")

    p = command("ls", "list a folder (sizes, dates), or all your files (and, with --shared or --all, files "
                      "shared with you)")
    p.add_argument("target", nargs="?", metavar="PATH",
                   help="a folder or file of your tree (/ is the root), or an id; or mine, shared, all: files by "
                        "section (default: mine)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--shared", action="store_const", const="shared", dest="section_flag",
                       help="files shared with you")
    group.add_argument("--all", action="store_const", const="all", dest="section_flag", help="both")

    p = command("info", "show a file's metadata")
    p.add_argument("file_id", metavar="FILE", help="a path in your tree (/docs/a.txt) or a file id")

    p = command("share", "let other users read a file")
    p.add_argument("file_id", metavar="FILE", help="a path in your tree (/docs/a.txt) or a file id")
    p.add_argument("users", nargs="+", metavar="USER")

    p = command("unshare", "stop sharing a file with a user")
    p.add_argument("file_id", metavar="FILE", help="a path in your tree (/docs/a.txt) or a file id")
    p.add_argument("user", metavar="USER")

    p = command("link", "make a link anyone who has it can download a file you own with; prints its URL")
    p.add_argument("file_id", metavar="FILE", help="a path in your tree (/docs/a.txt) or a file id")
    p.add_argument("--expires", type=parse_duration, metavar="DURATION",
                   help="the link stops working after this long: 7d, 12h, 30m, 1w (default: never)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--password", action="store_true", help="ask for a password the link will need")
    group.add_argument("--password-stdin", action="store_true", help="read the link's password from stdin")

    p = command("links", "list the links of a file you own")
    p.add_argument("file_id", metavar="FILE", help="a path in your tree (/docs/a.txt) or a file id")

    p = command("unlink", "revoke a link: it stops working at once")
    p.add_argument("link_id", metavar="LINK_ID")

    p = command("rm", "move files (and, with -r, folders) you own to the trash")
    p.add_argument("targets", nargs="+", metavar="FILE", help="a path (/docs/a.txt) or an id")
    p.add_argument("-r", "--recursive", action="store_true", help="folders too, with all they hold")
    tree.add_commands(command)

    from client.sync.command import add_arguments
    add_arguments(command("sync", "keep a local folder and a folder of your tree the same, both ways"))
    return parser


class Context:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))
        self.store = CredentialStore()
        self.server = resolve_server(getattr(args, "server", None), store=self.store)
        self.early: FingerprintPass | None = None  # `dbx upload`: the first file's fingerprints, under way

    def out(self, text: str = "") -> None:
        print(text, flush=True)

    def emit(self, obj: Any) -> None:
        print(json.dumps(obj, default=str), flush=True)

    def answer(self, obj: Any, text: str) -> None:
        """The command's answer on stdout: ``obj`` as JSON with --json, else ``text`` for people."""
        if self.json:
            self.emit(obj)
        else:
            self.out(text)

    def info(self, text: str) -> None:
        if not self.quiet:
            print(f"dbx: {printable(text)}", file=sys.stderr, flush=True)

    def token(self) -> str:
        creds = self.store.get(self.server)
        if creds is None:
            raise AuthRequired(f"you are not logged in to {self.server}; run `dbx login`")
        if creds.expired:
            raise AuthRequired(f"your session on {self.server} has expired; run `dbx login`", code="token_expired")
        return creds.access_token

    def client(self, auth: bool = True) -> GatewayClient:
        from client.api import GatewayClient

        return GatewayClient(self.server, self.token() if auth else None)


# -- credentials ---------------------------------------------------------------------


def ask_username(ctx: Context) -> str:
    name = getattr(ctx.args, "username", None) or os.environ.get("DBX_USERNAME")
    if name:
        return name
    if sys.stdin.isatty():
        name = input("username: ").strip()
        if name:
            return name
    raise UsageError("no username: give it as an argument or in $DBX_USERNAME")


def read_stdin_line(what: str) -> str:
    """The next line of stdin, without its line ending: for --password-stdin."""
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UsageError(f"--password-stdin: stdin had no {what} on its line")
    return line


def ask_secret(what: str, confirm: bool = False) -> str:
    """A secret typed at the terminal, not echoed; typed twice when ``confirm``."""
    if not sys.stdin.isatty():
        raise UsageError(f"no {what}: type it at a terminal, or pass --password-stdin")
    value = getpass.getpass(f"{what}: ")
    if not value:
        raise UsageError(f"the {what} is empty")
    if confirm and getpass.getpass(f"{what} again: ") != value:
        raise UsageError(f"the two {what}s differ; run the command again")
    return value


def ask_password(ctx: Context, confirm: bool = False) -> str:
    if getattr(ctx.args, "password_stdin", False):
        return read_stdin_line("password")
    password = os.environ.get("DBX_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        raise UsageError("no password: type it at a terminal, or set $DBX_PASSWORD, or pass --password-stdin")
    return ask_secret("password", confirm)


async def log_in(ctx: Context, client: GatewayClient, username: str, password: str) -> dict:
    answer = await client.create_token(username, password)
    expires_in = answer.get("expires_in")
    expires_at = time.time() + float(expires_in) - 5 if isinstance(expires_in, (int, float)) else None
    ctx.store.save(Credentials(ctx.server, username, answer["access_token"], expires_at))
    return {"ok": True, "server": ctx.server, "username": username, "expires_at": expires_at,
            "credentials": str(ctx.store.path)}


async def cmd_signup(ctx: Context) -> int:
    username = ask_username(ctx)
    email = getattr(ctx.args, "email", None) or os.environ.get("DBX_EMAIL")
    if not email:
        if not sys.stdin.isatty() or getattr(ctx.args, "password_stdin", False):
            raise UsageError("no email: pass --email")
        email = input("email: ").strip()  # noqa: ASYNC250 - asked before any request: nothing else runs on the loop yet
    password = ask_password(ctx, confirm=True)
    async with ctx.client(auth=False) as client:
        user = await client.create_user(username, email, password)
        result = await log_in(ctx, client, username, password)
    result["user_id"] = user.get("user_id")
    ctx.answer(result, f"Created {username} on {ctx.server} and logged in.")
    return 0


async def cmd_login(ctx: Context) -> int:
    username = ask_username(ctx)
    password = ask_password(ctx)
    async with ctx.client(auth=False) as client:
        result = await log_in(ctx, client, username, password)
    ctx.answer(result, f"Logged in to {ctx.server} as {username}.")
    return 0


async def end_session(ctx: Context, creds: Credentials) -> str:
    """Ask the gateway to end the session: 'ended', 'already ended', or 'not supported' (an older gateway)."""
    from client.api import GatewayClient

    async with GatewayClient(ctx.server, creds.access_token) as client:
        try:
            await client.revoke_token()
        except AuthRequired:
            return "already ended"  # revoked or expired: the server takes it no more
        except ServerError as exc:
            if exc.code != "unsupported":
                raise
            return "not supported"
    return "ended"


LOGOUT_WORDS = {
    "ended": "the session is ended on the server",
    "already ended": "the session had already ended",
    "expired": "the session had expired",
    "not supported": "this gateway cannot end sessions, so the token stays valid until it expires",
    "kept": "the token was only forgotten here; it stays valid until it expires",
}


async def cmd_logout(ctx: Context) -> int:
    creds = ctx.store.get(ctx.server)
    if creds is None:
        ctx.answer({"ok": True, "server": ctx.server, "logged_out": False},
                   f"You were not logged in to {ctx.server}.")
        return 0
    if ctx.args.local:
        session = "kept"
    elif creds.expired:
        session = "expired"
    else:
        try:
            session = await end_session(ctx, creds)
        except (Unreachable, ServerError) as exc:
            # Forgetting a token the server still takes would leave no way to end its session.
            raise type(exc)(f"{exc.message}; the session is not ended, so the token is kept: run `dbx logout` again "
                            "when the gateway answers, or `dbx logout --local` to only forget it (it then stays "
                            "valid until it expires)", code=exc.code, status=exc.status) from None
    ctx.store.remove(ctx.server)
    ctx.answer({"ok": True, "server": ctx.server, "logged_out": True, "session": session},
               f"Logged out of {ctx.server}: {LOGOUT_WORDS[session]}.")
    return 0


def read_passwords(ctx: Context) -> tuple[str, str]:
    """(current, new): from stdin's first two lines with --password-stdin, else typed without echo."""
    if ctx.args.password_stdin:
        current, new = read_stdin_line("current password"), read_stdin_line("new password")
    else:
        current, new = ask_secret("current password"), ask_secret("new password", confirm=True)
    if new == current:
        raise UsageError("the new password is the current one; nothing was changed")
    return current, new


async def cmd_passwd(ctx: Context) -> int:
    token = ctx.token()
    current, new = read_passwords(ctx)
    from client.api import GatewayClient

    async with GatewayClient(ctx.server, token) as client:
        creds = ctx.store.get(ctx.server)  # None if logged out meanwhile: then the gateway says
        username = (creds.username if creds else "") or (await client.me())["username"]
        await client.change_password(current, new)
        # Every token issued before the change has stopped working, this one too: log in again.
        try:
            result = await log_in(ctx, client, username, new)
        except ClientError as exc:
            ctx.store.remove(ctx.server)
            result = {"ok": True, "server": ctx.server, "username": username, "logged_in": False,
                      "login_error": exc.to_json()}
            again = f"log in again: `dbx login {username}` ({exc.message})"
        else:
            result["logged_in"] = True
            again = f"logged in again as {username}"
    result["password_changed"] = True
    ctx.answer(result, f"Password changed on {ctx.server}; every earlier session has ended; {again}.")
    return 0


async def cmd_whoami(ctx: Context) -> int:
    async with ctx.client() as client:
        me = await client.me()
    if ctx.json:
        ctx.emit({"server": ctx.server, **me})
    else:
        for line in whoami_lines(me, ctx.server):
            ctx.out(line)
    return 0


# -- files ---------------------------------------------------------------------------


def start_fingerprint(ctx: Context) -> None:
    """``dbx upload``: start hashing the first file now, in chunks of the size this server had last time.

    The hashing threads work while the rest of the client loads; if the
    gateway's chunk size turns out to be another, the pass is dropped and made
    again (upload.fingerprint checks).
    """
    from protocol.fingerprints import DEFAULT_CHUNK_SIZE

    args = ctx.args
    if args.command != "upload" or ctx.store.get(ctx.server) is None:
        return
    try:
        info = os.stat(args.paths[0])
    except OSError:
        return  # the upload says what is wrong with it
    if stat.S_ISREG(info.st_mode) and info.st_size > 0:
        from client.hashing import FingerprintPass

        ctx.early = FingerprintPass(args.paths[0], ctx.store.chunk_size(ctx.server) or DEFAULT_CHUNK_SIZE)


async def cmd_upload(ctx: Context) -> int:
    from client.upload import UploadOptions, error_json, upload_file  # only what this command needs: starts faster

    args = ctx.args
    if args.name and (len(args.paths) > 1 or args.recursive):
        raise UsageError("--name needs exactly one PATH, a file")
    to = tree.upload_folder_path(args.to)
    status = 0
    async with ctx.client() as client:
        config = await client.config()
        ctx.store.remember_chunk_size(ctx.server, int(config["chunk_size"]))
        for number, path in enumerate(args.paths):
            if args.recursive and os.path.isdir(path):  # noqa: ASYNC240 - one stat, before this path's work
                status = await tree.upload_folder(ctx, client, config, path, to) or status
                continue
            options = UploadOptions(parallel=args.parallel, retries=args.retries, limit_rate=args.limit_rate,
                                    wait_timeout=args.wait_timeout, quiet=ctx.quiet, name=args.name,
                                    place=tree.upload_place(args, to, path))
            try:
                result = await upload_file(client, path, options, config, early=ctx.early if number == 0 else None)
            except ClientError as exc:
                if not exc.per_file:
                    raise
                report_error(exc)
                if ctx.json:
                    ctx.emit(error_json(path, exc))
                status = status or exc.exit_code
                continue
            if ctx.json:
                ctx.emit(result.to_json())
            elif not ctx.quiet:
                ctx.out(f"{printable(result.file_id)}\t{printable(result.remote_path or result.file_name)}\t"
                        f"{human_size(result.file_size)}\tsent {result.chunks_sent} of {result.chunks_total} chunks")
            else:
                ctx.out(printable(result.file_id))
    return status


async def cmd_download(ctx: Context) -> int:
    from client.download import DownloadOptions, download_file

    options = DownloadOptions(parallel=ctx.args.parallel, retries=ctx.args.retries, quiet=ctx.quiet,
                              force=ctx.args.force)
    async with ctx.client() as client:
        file_id, folder = await tree.download_target(ctx, client)
        if folder is not None:
            return await tree.download_folder(ctx, client, folder, options)
        result = await download_file(client, file_id, ctx.args.output, options)
    if ctx.json:
        ctx.emit(result.to_json())
    else:
        ctx.info(f"saved {result.path} ({human_size(result.file_size)}, fingerprint verified)")
        if ctx.quiet:
            ctx.out(printable(result.path))
    return 0


async def cmd_ls(ctx: Context) -> int:
    if tree.lists_a_path(ctx.args):
        return await tree.cmd_ls_path(ctx)
    section = getattr(ctx.args, "section_flag", None) or ctx.args.target or "mine"
    async with ctx.client() as client:
        mine = await client.list_files() if section in ("mine", "all") else None
        shared = await client.list_shared() if section in ("shared", "all") else None
    if ctx.json:
        body: dict = {}
        if mine is not None:
            body["files"] = mine
        if shared is not None:
            body["shared"] = shared
        ctx.emit(body)
        return 0
    if mine is not None:
        if section == "all":
            ctx.out("# my files")
        for obj in mine:
            ctx.out(file_row(obj))
        if not mine:
            ctx.info("you have no files yet; `dbx upload PATH` adds one")
    if shared is not None:
        if section == "all":
            ctx.out("# shared with me")
        for obj in shared:
            ctx.out(file_row(obj, owner=True))
        if not shared:
            ctx.info("no files are shared with you")
    return 0


async def cmd_info(ctx: Context) -> int:
    async with ctx.client() as client:
        obj = await tree.info_object(client, ctx.args.file_id)
    if ctx.json:
        ctx.emit(obj)
        return 0
    for line in info_lines(obj):
        ctx.out(line)
    return 0


async def cmd_share(ctx: Context) -> int:
    async with ctx.client() as client:
        answer = await client.share(await tree.file_id_of(client, ctx.args.file_id), ctx.args.users)
    if ctx.json:
        ctx.emit(answer)
    else:
        shared = ", ".join(answer.get("shared_with") or []) or "nobody"
        ctx.out(printable(f"File {answer.get('file_id', ctx.args.file_id)} is shared with: {shared}"))
    return 0


async def cmd_unshare(ctx: Context) -> int:
    async with ctx.client() as client:
        await client.unshare(await tree.file_id_of(client, ctx.args.file_id), ctx.args.user)
    if ctx.json:
        ctx.emit({"ok": True, "file_id": ctx.args.file_id, "unshared": ctx.args.user})
    else:
        ctx.out(f"File {ctx.args.file_id} is no longer shared with {ctx.args.user}.")
    return 0


async def cmd_link(ctx: Context) -> int:
    args = ctx.args
    password = None
    if args.password_stdin:
        password = read_stdin_line("link password")
    elif args.password:
        password = ask_secret("link password", confirm=True)
    async with ctx.client() as client:
        link = await client.create_link(await tree.file_id_of(client, args.file_id), args.expires, password)
    if ctx.json:
        ctx.emit(link)
    else:
        ctx.info(link_summary(link))
        ctx.out(printable(link.get("url", "")))
    return 0


async def cmd_links(ctx: Context) -> int:
    async with ctx.client() as client:
        links = await client.list_links(await tree.file_id_of(client, ctx.args.file_id))
    if ctx.json:
        ctx.emit({"file_id": ctx.args.file_id, "links": links})
    elif not links:
        ctx.info(f"file {ctx.args.file_id} has no links; `dbx link {ctx.args.file_id}` makes one")
    else:
        for line in link_table(links):
            ctx.out(line)
    return 0


async def cmd_unlink(ctx: Context) -> int:
    async with ctx.client() as client:
        await client.delete_link(ctx.args.link_id)
    if ctx.json:
        ctx.emit({"ok": True, "link_id": ctx.args.link_id, "revoked": True})
    else:
        ctx.out(f"Revoked link {ctx.args.link_id}: it no longer works.")
    return 0


async def cmd_sync(ctx: Context) -> int:
    from client.sync.command import cmd_sync

    return await cmd_sync(ctx)


COMMANDS: dict[str, Callable[[Context], Any]] = {
    "signup": cmd_signup,
    "login": cmd_login,
    "logout": cmd_logout,
    "passwd": cmd_passwd,
    "whoami": cmd_whoami,
    "upload": cmd_upload,
    "download": cmd_download,
    "ls": cmd_ls,
    "info": cmd_info,
    "share": cmd_share,
    "unshare": cmd_unshare,
    "link": cmd_link,
    "links": cmd_links,
    "unlink": cmd_unlink,
    "rm": tree.cmd_rm,
    **tree.COMMANDS,
    "sync": cmd_sync,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx: Context | None = None
    try:
        ctx = Context(args)
        start_fingerprint(ctx)
        import asyncio  # after the hashing threads have started

        from client.interrupt import run_interruptibly

        return asyncio.run(run_interruptibly(COMMANDS[args.command](ctx))) or 0
    except ClientError as exc:
        report_error(exc)
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": exc.to_json()}), flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ndbx: interrupted; run the same command again to resume", file=sys.stderr, flush=True)
        return errors.EXIT_INTERRUPTED
    except BrokenPipeError:
        # `dbx ls | head`: the reader left; not an error worth a message.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter shutdown quiet
        except OSError:
            pass
        return 0
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"dbx: error: {printable(where)}{exc.strerror or exc}", file=sys.stderr, flush=True)
        return errors.EXIT_UNEXPECTED
    except Exception as exc:  # noqa: BLE001 - the last resort: a bug, said plainly
        if os.environ.get("DBX_DEBUG"):
            traceback.print_exc()
        print(f"dbx: unexpected error: {exc.__class__.__name__}: {exc} (set DBX_DEBUG=1 for a traceback)",
              file=sys.stderr, flush=True)
        return errors.EXIT_UNEXPECTED
    finally:
        if ctx is not None and ctx.early is not None:
            ctx.early.cancel()  # interrupted or failed before it was used: stop its threads


if __name__ == "__main__":
    sys.exit(main())

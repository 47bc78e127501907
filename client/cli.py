"""``dbx``: the command-line client of the gateway.

    dbx signup [USERNAME] [--email EMAIL]     create an account and log in
    dbx login [USERNAME]                      log in; the token is kept in ~/.config/dbx
    dbx logout | whoami
    dbx upload PATH... [--parallel N]         resumable, parallel, straight to the store
    dbx download FILE_ID [-o PATH]            verified, resumable, from the CDN tier
    dbx ls [--shared | --all]                 your files; files shared with you
    dbx info FILE_ID
    dbx share FILE_ID USER...
    dbx unshare FILE_ID USER
    dbx rm FILE_ID...

Server: --server URL, else $DBX_SERVER, else the one last logged in to, else
http://127.0.0.1:8080. Password: the prompt, or $DBX_PASSWORD, or
--password-stdin. Exit codes: client/errors.py, or `dbx --help`.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
import time
import traceback
from typing import Any, Callable

from client import errors
from client.api import GatewayClient
from client.config import CredentialStore, Credentials, resolve_server
from client.download import DownloadOptions, download_file
from client.errors import AuthRequired, ClientError, NotFound, UsageError
from client.upload import UploadOptions, error_json, human_size, upload_file

RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)?(?:/s)?\s*$", re.IGNORECASE)


def parse_rate(text: str) -> float:
    """'500K', '10M', '1.5MiB', '2000000' -> bytes per second (K = 1024)."""
    match = RATE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate; write it like 500K, 10M or 2000000")
    value = float(match.group(1)) * 1024 ** " KMGT".index((match.group(2) or " ").upper())
    if value <= 0:
        raise argparse.ArgumentTypeError("the rate must be positive")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: exit 2, no traceback
        self.print_usage(sys.stderr)
        self.exit(errors.EXIT_USAGE, f"dbx: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--server", help="gateway URL (default: $DBX_SERVER, the last login, or http://127.0.0.1:8080)")
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes on stderr")

    parser = Parser(prog="dbx", description="Client of the self-hosted Dropbox-like gateway.", parents=[common],
                    epilog="Exit codes: 0 ok, 1 unexpected, 2 usage, 3 unreachable, 4 wrong username/password, "
                           "5 not logged in or session expired, 6 not found, 7 refused by the gateway, "
                           "8 refused by the store, 9 integrity, 130 interrupted.")
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

    command("logout", "forget the token for this server")
    command("whoami", "show who you are logged in as")

    p = command("upload", "upload files (resumes an interrupted upload of the same file)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("-p", "--parallel", type=positive_int, default=4, help="chunks sent at once (default 4)")
    p.add_argument("--retries", type=non_negative_int, default=6, help="retries per chunk (default 6)")
    p.add_argument("--limit-rate", type=parse_rate, metavar="RATE", help="cap the upload rate, e.g. 10M (bytes/s)")
    p.add_argument("--name", help="file name on the server (one PATH only; default: its base name)")
    p.add_argument("--wait-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="how long to wait for the gateway to finish after the last chunk (default 600)")

    p = command("download", "download a file, verified against its fingerprint (resumes a partial one)")
    p.add_argument("file_id", metavar="FILE_ID")
    p.add_argument("-o", "--output", metavar="PATH", help="file or directory (default: its name, here)")
    p.add_argument("-p", "--parallel", type=positive_int, default=4, help="chunks fetched at once (default 4)")
    p.add_argument("--retries", type=non_negative_int, default=6, help="retries (default 6)")

    p = command("ls", "list your files (and, with --shared or --all, files shared with you)")
    p.add_argument("section", nargs="?", choices=("mine", "shared", "all"), help="which files (default: mine)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--shared", action="store_const", const="shared", dest="section_flag",
                       help="files shared with you")
    group.add_argument("--all", action="store_const", const="all", dest="section_flag", help="both")

    p = command("info", "show a file's metadata")
    p.add_argument("file_id", metavar="FILE_ID")

    p = command("share", "let other users read a file")
    p.add_argument("file_id", metavar="FILE_ID")
    p.add_argument("users", nargs="+", metavar="USER")

    p = command("unshare", "stop sharing a file with a user")
    p.add_argument("file_id", metavar="FILE_ID")
    p.add_argument("user", metavar="USER")

    p = command("rm", "delete files you own")
    p.add_argument("file_ids", nargs="+", metavar="FILE_ID")
    return parser


class Context:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))
        self.store = CredentialStore()
        self.server = resolve_server(getattr(args, "server", None), store=self.store)

    def out(self, text: str = "") -> None:
        print(text, flush=True)

    def emit(self, obj: Any) -> None:
        print(json.dumps(obj, default=str), flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            print(f"dbx: {text}", file=sys.stderr, flush=True)

    def token(self) -> str:
        creds = self.store.get(self.server)
        if creds is None:
            raise AuthRequired(f"you are not logged in to {self.server}; run `dbx login`")
        if creds.expired:
            raise AuthRequired(f"your session on {self.server} has expired; run `dbx login`", code="token_expired")
        return creds.access_token

    def client(self, auth: bool = True) -> GatewayClient:
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


def ask_password(ctx: Context, confirm: bool = False) -> str:
    if getattr(ctx.args, "password_stdin", False):
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            raise UsageError("--password-stdin: stdin had no password on its first line")
        return password
    password = os.environ.get("DBX_PASSWORD")
    if password:
        return password
    if not sys.stdin.isatty():
        raise UsageError("no password: type it at a terminal, or set $DBX_PASSWORD, or pass --password-stdin")
    password = getpass.getpass("password: ")
    if confirm and getpass.getpass("password again: ") != password:
        raise UsageError("the two passwords differ; run the command again")
    if not password:
        raise UsageError("the password is empty")
    return password


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
        email = input("email: ").strip()
    password = ask_password(ctx, confirm=True)
    async with ctx.client(auth=False) as client:
        user = await client.create_user(username, email, password)
        result = await log_in(ctx, client, username, password)
    result["user_id"] = user.get("user_id")
    if ctx.json:
        ctx.emit(result)
    else:
        ctx.out(f"Created {username} on {ctx.server} and logged in.")
    return 0


async def cmd_login(ctx: Context) -> int:
    username = ask_username(ctx)
    password = ask_password(ctx)
    async with ctx.client(auth=False) as client:
        result = await log_in(ctx, client, username, password)
    if ctx.json:
        ctx.emit(result)
    else:
        ctx.out(f"Logged in to {ctx.server} as {username}.")
    return 0


async def cmd_logout(ctx: Context) -> int:
    removed = ctx.store.remove(ctx.server)
    if ctx.json:
        ctx.emit({"ok": True, "server": ctx.server, "logged_out": removed})
    else:
        ctx.out(f"Logged out of {ctx.server}." if removed else f"You were not logged in to {ctx.server}.")
    return 0


async def cmd_whoami(ctx: Context) -> int:
    async with ctx.client() as client:
        me = await client.me()
    if ctx.json:
        ctx.emit({"server": ctx.server, **me})
    else:
        ctx.out(f"{me.get('username')} <{me.get('email')}> on {ctx.server}")
        if isinstance(me.get("used_bytes"), int):
            quota = me.get("quota_bytes")
            ctx.out(f"using {human_size(me['used_bytes'])} of {human_size(quota) if isinstance(quota, int) else 'unlimited'}")
    return 0


# -- files ---------------------------------------------------------------------------


async def cmd_upload(ctx: Context) -> int:
    args = ctx.args
    if args.name and len(args.paths) > 1:
        raise UsageError("--name needs exactly one PATH")
    options = UploadOptions(parallel=args.parallel, retries=args.retries, limit_rate=args.limit_rate,
                            wait_timeout=args.wait_timeout, quiet=ctx.quiet, name=args.name)
    status = 0
    async with ctx.client() as client:
        config = await client.config()
        for path in args.paths:
            try:
                result = await upload_file(client, path, options, config)
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
                ctx.out(f"{result.file_id}\t{result.file_name}\t{human_size(result.file_size)}\t"
                        f"sent {result.chunks_sent} of {result.chunks_total} chunks")
            else:
                ctx.out(str(result.file_id))
    return status


async def cmd_download(ctx: Context) -> int:
    options = DownloadOptions(parallel=ctx.args.parallel, retries=ctx.args.retries, quiet=ctx.quiet)
    async with ctx.client() as client:
        result = await download_file(client, ctx.args.file_id, ctx.args.output, options)
    if ctx.json:
        ctx.emit(result.to_json())
    else:
        ctx.info(f"saved {result.path} ({human_size(result.file_size)}, fingerprint verified)")
        if ctx.quiet:
            ctx.out(result.path)
    return 0


def file_row(obj: dict, owner: bool = False) -> str:
    size = obj.get("file_size")
    parts = [
        str(obj.get("file_id", "")),
        human_size(size) if isinstance(size, int) else "?",
        str(obj.get("status", "")),
        str(obj.get("created_at", ""))[:19],
    ]
    if owner:
        parts.append(str(obj.get("uploaded_by", "")))
    parts.append(str(obj.get("file_name", "")))
    return "\t".join(parts)


async def cmd_ls(ctx: Context) -> int:
    section = getattr(ctx.args, "section_flag", None) or ctx.args.section or "mine"
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
        obj = await client.get_file(ctx.args.file_id)
    if ctx.json:
        ctx.emit(obj)
        return 0
    for key in ("file_id", "file_name", "file_size", "file_type", "fingerprint", "status", "uploaded_by",
                "created_at", "chunk_size", "total_chunks", "uploaded_chunks"):
        if key in obj:
            value = obj[key]
            if key == "file_size" and isinstance(value, int):
                value = f"{value} ({human_size(value)})"
            ctx.out(f"{key + ':':17}{value}")
    for key, value in obj.items():
        if key not in ("chunks", "download_url") and key not in (
            "file_id", "file_name", "file_size", "file_type", "fingerprint", "status", "uploaded_by",
            "created_at", "chunk_size", "total_chunks", "uploaded_chunks"):
            ctx.out(f"{key + ':':17}{value}")
    if obj.get("download_url"):
        ctx.out(f"{'download_url:':17}{obj['download_url']}")
    return 0


async def cmd_share(ctx: Context) -> int:
    async with ctx.client() as client:
        answer = await client.share(ctx.args.file_id, ctx.args.users)
    if ctx.json:
        ctx.emit(answer)
    else:
        shared = ", ".join(answer.get("shared_with") or []) or "nobody"
        ctx.out(f"File {answer.get('file_id', ctx.args.file_id)} is shared with: {shared}")
    return 0


async def cmd_unshare(ctx: Context) -> int:
    async with ctx.client() as client:
        await client.unshare(ctx.args.file_id, ctx.args.user)
    if ctx.json:
        ctx.emit({"ok": True, "file_id": ctx.args.file_id, "unshared": ctx.args.user})
    else:
        ctx.out(f"File {ctx.args.file_id} is no longer shared with {ctx.args.user}.")
    return 0


async def cmd_rm(ctx: Context) -> int:
    status = 0
    async with ctx.client() as client:
        for file_id in ctx.args.file_ids:
            try:
                await client.delete_file(file_id)
            except NotFound as exc:
                report_error(NotFound(f"file {file_id} was not found, or you do not own it; `dbx ls` lists yours",
                                      status=exc.status))
                if ctx.json:
                    ctx.emit({"ok": False, "file_id": file_id, "error": exc.to_json()})
                status = status or exc.exit_code
                continue
            if ctx.json:
                ctx.emit({"ok": True, "file_id": file_id, "deleted": True})
            else:
                ctx.out(f"Deleted {file_id}.")
    return status


COMMANDS: dict[str, Callable[[Context], Any]] = {
    "signup": cmd_signup,
    "login": cmd_login,
    "logout": cmd_logout,
    "whoami": cmd_whoami,
    "upload": cmd_upload,
    "download": cmd_download,
    "ls": cmd_ls,
    "info": cmd_info,
    "share": cmd_share,
    "unshare": cmd_unshare,
    "rm": cmd_rm,
}


def report_error(exc: ClientError) -> None:
    print(f"dbx: error: {exc.message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ctx = Context(args)
        return asyncio.run(COMMANDS[args.command](ctx)) or 0
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
        print(f"dbx: error: {where}{exc.strerror or exc}", file=sys.stderr, flush=True)
        return errors.EXIT_UNEXPECTED
    except Exception as exc:  # noqa: BLE001 - the last resort: a bug, said plainly
        if os.environ.get("DBX_DEBUG"):
            traceback.print_exc()
        print(f"dbx: unexpected error: {exc.__class__.__name__}: {exc} (set DBX_DEBUG=1 for a traceback)",
              file=sys.stderr, flush=True)
        return errors.EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())

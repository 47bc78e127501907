"""The operator's command: ``python -m gateway.admin COMMAND`` (settings from the gateway's GATEWAY_* variables).

    python -m gateway.admin create-user USERNAME EMAIL [--quota 50GiB]   # asks for the password
    python -m gateway.admin list
    python -m gateway.admin disable USERNAME          # ends their tokens; enable USERNAME undoes it
    python -m gateway.admin set-quota USERNAME 200GiB  # or "default" (GATEWAY_USER_QUOTA_BYTES), "unlimited"
    python -m gateway.admin invite [--count 10] [--expires-in 604800]   # codes for GATEWAY_SIGNUP=invite

It needs the database settings of the gateway (``GATEWAY_DATABASE_URL`` or
``GATEWAY_DATABASE_PATH``) and ``GATEWAY_CACHE_URL``, not its secrets. A
password is never an argument (every user of the machine sees arguments in
``ps``): it is asked for twice on a terminal, or read from the first line of
standard input (``printf '%s\\n' "$PASSWORD" | python -m gateway.admin create-user ...``).
Invitation codes are printed on standard output, one a line; logs go to standard error.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
from collections.abc import Sequence

from gateway.cache import make_cache
from gateway.config import Config, ConfigError
from gateway.core.accounts import Accounts
from gateway.core.admin import Admin
from gateway.core.cached import ReadThrough
from gateway.core.clock import system_clock
from gateway.core.errors import DomainError
from gateway.core.limits import Limits
from gateway.core.sessions import Sessions
from gateway.db import Database, database_url
from gateway.http.routes.users import EMAIL, MIN_PASSWORD, USERNAME
from gateway.logs import configure_logging

UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}
SIZE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
WEEK = 7 * 24 * 3600


class UsageError(Exception):
    pass


def quota(text: str) -> int | None:
    """Bytes from ``123``, ``50GiB``...; ``unlimited`` is 0 (the database's "no quota"), ``default`` None."""
    if text.lower() == "default":
        return None
    if text.lower() == "unlimited":
        return 0
    match = SIZE.match(text)
    if match is None or match.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: bytes, or a number with KiB, MiB, GiB or TiB")
    return int(match.group(1)) * UNITS[match.group(2).lower()]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m gateway.admin", description="Manage the gateway's accounts.")
    commands = top.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-user", help="create a user (the password is asked for, never an argument)")
    create.add_argument("username")
    create.add_argument("email")
    create.add_argument("--quota", type=quota, help="their own quota: bytes, 50GiB, unlimited (default: the gateway's)")
    commands.add_parser("list", help="list every user with quota, use and status")
    for name, what in (("disable", "stop a user logging in and end their tokens"), ("enable", "let a user log in again")):
        command = commands.add_parser(name, help=what)
        command.add_argument("username")
    set_quota = commands.add_parser("set-quota", help="set a user's quota")
    set_quota.add_argument("username")
    set_quota.add_argument("quota", type=quota, help="bytes, 50GiB, unlimited, or default (the gateway's setting)")
    invite = commands.add_parser("invite", help="make invitation codes for GATEWAY_SIGNUP=invite")
    invite.add_argument("--count", type=int, default=1)
    invite.add_argument("--expires-in", type=int, default=WEEK, help="seconds each code stays usable (a week)")
    return top


def read_password() -> str:
    """Twice on a terminal; else the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != first:
            raise UsageError("the passwords differ")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not MIN_PASSWORD <= len(password) <= 1024:
        raise UsageError(f"the password must be {MIN_PASSWORD} to 1024 characters")
    return password


def shown_quota(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


async def run(args: argparse.Namespace, config: Config) -> None:
    db = await Database.open(database_url(config.database_url, config.database_path),
                             pool_size=config.database_pool_size)
    cache = make_cache(config)
    try:
        sessions = Sessions(config, db, system_clock, ReadThrough(cache))
        admin = Admin(config, db, system_clock, Accounts(config, db, system_clock, sessions), sessions,
                      Limits(config, db))
        await command(admin, args)
    finally:
        if cache is not None:
            await cache.close()
        await db.close()


async def command(admin: Admin, args: argparse.Namespace) -> None:
    if args.command == "create-user":
        if not USERNAME.match(args.username):
            raise UsageError("a username is 3-32 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if not EMAIL.match(args.email):
            raise UsageError(f"{args.email!r} is not an email address")
        user = await admin.create_user(args.username, args.email, read_password(), args.quota)
        print(f"created user {user['username']} (id {user['user_id']})")
    elif args.command == "list":
        print("id\tusername\temail\tcreated_at\tstatus\tquota_bytes\tused_bytes")
        for user in await admin.users():
            status = "disabled" if user["disabled_at"] else "active"
            print(f"{user['id']}\t{user['username']}\t{user['email']}\t{user['created_at']}\t{status}\t"
                  f"{shown_quota(user['quota_bytes'])}\t{user['used_bytes']}")
    elif args.command == "disable":
        await admin.disable(args.username)
        print(f"disabled {args.username}: they cannot log in, and their access tokens no longer work")
    elif args.command == "enable":
        await admin.enable(args.username)
        print(f"enabled {args.username}")
    elif args.command == "set-quota":
        await admin.set_quota(args.username, args.quota)
        print(f"set the quota of {args.username}")
    elif args.command == "invite":
        if args.count < 1 or args.expires_in < 1:
            raise UsageError("--count and --expires-in must be at least 1")
        for _ in range(args.count):
            print((await admin.invite(args.expires_in)).code)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = Config.from_env(secrets=False)
    except ConfigError as exc:
        print(f"gateway.admin: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, sys.stderr)
    try:
        asyncio.run(run(args, config))
    except UsageError as exc:
        print(f"gateway.admin: {exc}", file=sys.stderr)
        return 2
    except DomainError as exc:
        print(f"gateway.admin: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Expected failures of the client: each names what went wrong and what to do.

Every kind has its own exit code so scripts can tell them apart:

====  =====================================================================
code  meaning
====  =====================================================================
0     success
1     unexpected error (a bug, or a server answer the client does not know)
2     usage error (bad arguments, missing password)
3     the gateway (or the store / CDN tier) cannot be reached
4     wrong username or password (``dbx login``/``dbx signup``)
5     not logged in, or the session expired: run ``dbx login``
6     not found: no such file on the server, or no such local path
7     the gateway refused the request (invalid input, name taken, conflict)
8     the store refused a chunk (after retries)
9     integrity: content does not match its fingerprint, or the upload failed
10    the local file exists: ``dbx download`` overwrites only with ``--force``
11    throttled: too many failed logins, or too many uploads in progress; try again later
12    ``dbx sync`` stopped without agreement, deleting nothing more: a mass deletion it
      was not allowed, a synced folder gone (unmounted?), or operations that kept failing
130   interrupted (Ctrl-C); run the same command again to resume
====  =====================================================================
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_BAD_LOGIN = 4
EXIT_AUTH = 5
EXIT_NOT_FOUND = 6
EXIT_REFUSED = 7
EXIT_STORE = 8
EXIT_INTEGRITY = 9
EXIT_EXISTS = 10
EXIT_THROTTLED = 11
EXIT_SYNC_STOPPED = 12
EXIT_INTERRUPTED = 130


class ClientError(Exception):
    """A failure the user can act on; ``str()`` is the whole message.

    Each kind states its exit code, its ``code`` in ``--json`` output and
    whether it concerns one file only (so a multi-file command may go on) as
    class keywords: ``class NotFound(ClientError, exit_code=6, code="not_found", per_file=True)``.
    """

    exit_code = EXIT_UNEXPECTED
    code = "error"
    per_file = False

    def __init_subclass__(cls, *, exit_code: int, code: str, per_file: bool = False, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.exit_code, cls.code, cls.per_file = exit_code, code, per_file

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, **details):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.status = status
        self.details = details

    def to_json(self) -> dict:
        body = {"code": self.code, "message": self.message, "exit_code": self.exit_code}
        if self.status is not None:
            body["status"] = self.status
        if self.details.get("retry_after") is not None:
            body["retry_after"] = self.details["retry_after"]
        return body


class UsageError(ClientError, exit_code=EXIT_USAGE, code="usage"):
    pass


class Unreachable(ClientError, exit_code=EXIT_UNREACHABLE, code="unreachable"):
    pass


class BadLogin(ClientError, exit_code=EXIT_BAD_LOGIN, code="invalid_credentials"):
    pass


class AuthRequired(ClientError, exit_code=EXIT_AUTH, code="not_logged_in"):
    pass


class NotFound(ClientError, exit_code=EXIT_NOT_FOUND, code="not_found", per_file=True):
    pass


class Refused(ClientError, exit_code=EXIT_REFUSED, code="refused", per_file=True):
    pass


class StoreRefused(ClientError, exit_code=EXIT_STORE, code="store_refused", per_file=True):
    pass


class IntegrityError(ClientError, exit_code=EXIT_INTEGRITY, code="integrity", per_file=True):
    pass


class LocalExists(ClientError, exit_code=EXIT_EXISTS, code="local_exists", per_file=True):
    pass


class Throttled(ClientError, exit_code=EXIT_THROTTLED, code="throttled"):
    """429: the gateway says when to try again (``details['retry_after']``, seconds, if it did)."""


class SyncStopped(ClientError, exit_code=EXIT_SYNC_STOPPED, code="sync_stopped"):
    """``dbx sync`` stopped before both sides agreed; the message says why and what to do."""


class ServerError(ClientError, exit_code=EXIT_UNEXPECTED, code="server_error"):
    """The gateway answered something the client cannot act on (5xx, malformed)."""

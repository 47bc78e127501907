"""What the domain refuses, and why. gateway/http/errors.py maps each to the contract's HTTP error.

The message is written for the person who reads the error body; the
attributes are what a caller (or the HTTP mapping) may want to act on.
"""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    # Seconds after which trying again may succeed (an HTTP Retry-After); None: it will not by waiting.
    retry_after: int | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Extra fields the error body carries beside code and message."""
        return {}


class FileNotFound(DomainError):
    """No such file that the caller may see (or own): the same answer whether or not it exists."""

    def __init__(self, file_id: str, *, own: bool = False):
        super().__init__(f"no file {file_id!r} of yours" if own else f"no file {file_id!r} that you can see")
        self.file_id = file_id


class NotUploading(DomainError):
    def __init__(self, status: str):
        super().__init__(f"the file is {status}; there is nothing to upload")
        self.status = status


class NotUploaded(DomainError):
    def __init__(self, status: str):
        super().__init__(f"the file is {status}, not uploaded; nothing to download yet")
        self.status = status


class ChunkIndexOutOfRange(DomainError):
    def __init__(self, indexes: list[int], total_chunks: int):
        super().__init__(f"chunk indexes {indexes[:10]} are outside 0..{total_chunks - 1}")
        self.indexes = indexes

    def details(self) -> dict[str, Any]:
        return {"field": "chunks"}


class ChunksMissing(DomainError):
    """Completion was asked for, but the store does not hold every chunk yet."""

    def __init__(self, missing: list[int]):
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        super().__init__(
            f"the store does not hold {len(missing)} chunk(s) yet: {shown}; upload them, then complete again"
        )
        self.missing = missing

    def details(self) -> dict[str, Any]:
        return {"missing": self.missing}


class UploadGone(DomainError):
    def __init__(self) -> None:
        super().__init__("the store no longer has this upload; start it again with POST /dropbox/v1/files")


class VerificationFailed(DomainError):
    """The store's bytes did not verify: the file is now ``failed``."""

    def __init__(self, reason: str):
        super().__init__(f"the upload failed: {reason}")
        self.reason = reason


class StoreDidNotAccept(DomainError):
    """The gateway sent the bytes itself (inline upload) and the store did not end up with the file."""

    def __init__(self, status: str):
        super().__init__(f"the store did not accept the upload (status {status})")
        self.status = status


class UsernameTaken(DomainError):
    def __init__(self, username: str):
        super().__init__(f"the username {username!r} is taken")
        self.username = username


class InvalidCredentials(DomainError):
    def __init__(self) -> None:
        super().__init__("wrong username or password")


class WrongPassword(DomainError):
    """The caller's current password, given to change it, is not right."""

    def __init__(self) -> None:
        super().__init__("`current_password` is not your password")

    def details(self) -> dict[str, Any]:
        return {"field": "current_password"}


class TokenRevoked(DomainError):
    """The access token was ended before its expiry: a log-out, or a password change since it was issued."""

    def __init__(self) -> None:
        super().__init__("this access token was revoked (logged out, or the password changed); log in again")


class UnknownUser(DomainError):
    """A valid token whose user no longer exists."""

    def __init__(self) -> None:
        super().__init__("the token's user no longer exists")


class TokenExpired(DomainError):
    def __init__(self) -> None:
        super().__init__("the access token has expired; ask POST /dropbox/v1/tokens for a new one")


class SessionTooOld(DomainError):
    """A token in use asked to be renewed after its session's ``session_max_age``: log in again."""

    def __init__(self) -> None:
        super().__init__("this session began too long ago to be renewed; log in again")


class InvalidToken(DomainError):
    def __init__(self, reason: str):
        super().__init__(f"the access token is invalid ({reason})")


class UnknownUsers(DomainError):
    """Usernames that name nobody; nothing was shared with anyone."""

    def __init__(self, names: list[str]):
        shown = ", ".join(repr(name) for name in names[:20]) + (" ..." if len(names) > 20 else "")
        super().__init__(f"no user named {shown}; the file was not shared with anyone")
        self.names = names

    def details(self) -> dict[str, Any]:
        return {"users": self.names}


class CannotShareWithYourself(DomainError):
    def __init__(self) -> None:
        super().__init__("you cannot share a file with yourself: you own it")

    def details(self) -> dict[str, Any]:
        return {"field": "users"}


class LinkNotFound(DomainError):
    """No such link, or its file is gone: a visitor learns nothing more. Never names a token."""

    def __init__(self, link_id: str | None = None):
        what = f"no link {link_id!r} of a file of yours" if link_id else "no such link"
        super().__init__(f"{what}: check the address; the file may have been deleted")


class LinkRevoked(DomainError):
    def __init__(self) -> None:
        super().__init__("this link was revoked by the person who shared it; ask them for a new one")


class LinkExpired(DomainError):
    def __init__(self, expired_at: str):
        super().__init__(f"this link expired at {expired_at}; ask the person who shared it for a new one")
        self.expired_at = expired_at

    def details(self) -> dict[str, Any]:
        return {"expired_at": self.expired_at}


class PasswordRequired(DomainError):
    def __init__(self) -> None:
        super().__init__("this link needs its password: send it as `password`")


class WrongLinkPassword(DomainError):
    def __init__(self) -> None:
        super().__init__("wrong password for this link")


class TooManyAttempts(DomainError):
    """Too many recent wrong passwords (for a username, for a link): refused, right or wrong, for ``retry_after`` seconds."""

    retry_after: int

    def __init__(self, retry_after: int, what: str = "this username"):
        super().__init__(f"too many failed attempts for {what}; try again in {retry_after} seconds")
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after}


class QuotaExceeded(DomainError):
    """The file would take the user past their storage quota."""

    def __init__(self, quota_bytes: int, used_bytes: int, file_size: int):
        super().__init__(
            f"a file of {file_size} bytes does not fit: you use {used_bytes} of your {quota_bytes} bytes "
            "(uploaded files and uploads in progress); delete files or unfinished uploads first"
        )
        self.quota_bytes = quota_bytes
        self.used_bytes = used_bytes

    def details(self) -> dict[str, Any]:
        return {"quota_bytes": self.quota_bytes, "used_bytes": self.used_bytes}


class TooManyFiles(DomainError):
    """The user already has the most files the gateway allows (any size: empty files count too)."""

    def __init__(self, limit: int, files: int):
        super().__init__(
            f"you have {files} files, and the most allowed is {limit} (empty files and failed uploads count too); "
            "delete files first"
        )
        self.limit = limit
        self.files = files

    def details(self) -> dict[str, Any]:
        return {"max_files_per_user": self.limit, "files": self.files}


class TooManyUploads(DomainError):
    """The user already has the most uploads in progress the gateway allows."""

    def __init__(self, limit: int, retry_after: int):
        super().__init__(
            f"you already have {limit} uploads in progress, the most allowed; "
            "finish (or delete) one, then start this one"
        )
        self.limit = limit
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {"max_uploads_in_progress": self.limit}


class TooManyRequests(DomainError):
    """The caller made more calls of a kind than its limit allows in the current window."""

    def __init__(self, what: str, retry_after: int):
        super().__init__(f"too many {what} calls; try again in {retry_after} seconds")
        self.retry_after = retry_after


class InvalidName(DomainError):
    """A name or path the contract refuses (protocol/paths.py says why)."""

    def __init__(self, why: str):
        super().__init__(f"invalid name: {why}")


class NodeNotFound(DomainError):
    """No such folder or file in the caller's tree (or it is someone else's): the same answer either way."""

    def __init__(self, node_id: str, kind: str | None):
        what = {"folder": "folder", "file": "file"}.get(kind or "", "file or folder")
        super().__init__(f"no {what} {node_id!r} in your files")
        self.node_id = node_id


class PathNotFound(DomainError):
    def __init__(self, path: str):
        super().__init__(f"nothing at {path!r} in your files")


class NameTaken(DomainError):
    """The folder already holds this name (compared without regard to case); ``autorename`` picks a free one."""

    def __init__(self, name: str, holder: str | None):
        held = f" by a {holder}" if holder else ""
        super().__init__(f"the name {name!r} is taken{held} in that folder; choose another or set autorename")
        self.name = name

    def details(self) -> dict[str, Any]:
        return {"name": self.name}


class Cycle(DomainError):
    def __init__(self, folder_id: str, target_id: str):
        super().__init__("a folder cannot be moved into itself or into a folder below it")
        self.folder_id = folder_id
        self.target_id = target_id


class CannotChangeRoot(DomainError):
    def __init__(self) -> None:
        super().__init__("the root folder cannot be renamed, moved or deleted")


class ReplacesMismatch(DomainError):
    """``replaces`` names no file of the caller that is (or was, as a version) at the upload's path."""

    def __init__(self, file_id: str):
        super().__init__(f"`replaces` {file_id!r} is not a file of yours at that path")

    def details(self) -> dict[str, Any]:
        return {"field": "replaces"}


class NotAVersion(DomainError):
    def __init__(self, file_id: str):
        super().__init__(f"file {file_id!r} is not an earlier version of a file: there is nothing to restore")


class InvalidCursor(DomainError):
    """A changes cursor this gateway did not sign for this user (another user's, a forged or mangled one)."""

    def __init__(self) -> None:
        super().__init__("`cursor` is not a cursor of your changes; pass the `cursor` of an earlier answer unchanged")

    def details(self) -> dict[str, Any]:
        return {"field": "cursor"}


class CursorReset(DomainError):
    """The journal no longer reaches back to the cursor (pruned after GATEWAY_CHANGE_RETENTION)."""

    def __init__(self) -> None:
        super().__init__("the change journal no longer reaches back to this cursor: list again without a cursor")


class SignUpClosed(DomainError):
    """Sign-up is closed (GATEWAY_SIGNUP=closed): only an operator creates accounts."""

    def __init__(self) -> None:
        super().__init__("sign-up is closed on this service: ask its operator for an account")


class InvitationRequired(DomainError):
    """Sign-up takes invitations only (GATEWAY_SIGNUP=invite) and none was given."""

    def __init__(self) -> None:
        super().__init__("sign-up needs an invitation on this service: send its code as `invitation`")


class InvalidInvitation(DomainError):
    """No unused, unexpired invitation has that code."""

    def __init__(self) -> None:
        super().__init__("that invitation is unknown, used or expired: ask for a new one")


class AccountDisabled(DomainError):
    """An operator disabled the account: its right password gets no token."""

    def __init__(self) -> None:
        super().__init__("this account is disabled: ask the service's operator")


class NoSuchUser(DomainError):
    """An operator named a user who does not exist (the admin command)."""

    def __init__(self, username: str):
        super().__init__(f"no user named {username!r}")
        self.username = username


class ZipTooLarge(DomainError):
    """A zip would be larger than the gateway's limit (GATEWAY_ZIP_MAX_SIZE)."""

    def __init__(self, size: int, limit: int):
        super().__init__(
            f"this zip would be {size} bytes, more than the {limit} this server makes in one zip; "
            "download fewer files at a time, or a folder with the command-line client (dbx download -r)"
        )
        self.size = size
        self.limit = limit

    def details(self) -> dict[str, Any]:
        return {"zip_size": self.size, "max_zip_size": self.limit}


class ZipUrlInvalid(DomainError):
    def __init__(self) -> None:
        super().__init__("this zip URL is not one the gateway made (altered or cut short); make a new one")


class ZipUrlExpired(DomainError):
    def __init__(self, expires_at: int):
        super().__init__("this zip URL has expired; make a new one")
        self.expires_at = expires_at

    def details(self) -> dict[str, Any]:
        return {"expired_at": self.expires_at}

"""API errors: every failure answers ``{"error": {"code", "message", ...}}``.

:func:`api_error` is the one mapping from what the domain (gateway/core/errors.py),
the store (storage) and the metadata database (gateway/db) refuse to the contract's
status codes and error codes. A part that is not there (the store, the database) or
a full disk is a 503 the client may try again after, never a 500.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.core import errors as domain
from gateway.db import DatabaseUnavailable, DiskFull
from gateway.disk import out_of_space
from storage import StoreError, StoreUnavailable


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **details: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


# Domain error -> (HTTP status, the contract's error code).
DOMAIN_ERRORS: dict[type[domain.DomainError], tuple[int, str]] = {
    domain.FileNotFound: (404, "not_found"),
    domain.UnknownUsers: (404, "unknown_users"),
    domain.NotUploading: (409, "not_uploading"),
    domain.NotUploaded: (409, "not_uploaded"),
    domain.ChunksMissing: (409, "chunks_missing"),
    domain.UploadGone: (409, "upload_gone"),
    domain.UsernameTaken: (409, "username_taken"),
    domain.ChunkIndexOutOfRange: (400, "invalid_chunk_index"),
    domain.CannotShareWithYourself: (400, "cannot_share_with_yourself"),
    domain.VerificationFailed: (422, "verification_failed"),
    domain.QuotaExceeded: (403, "quota_exceeded"),
    # A quota on the number of files: the contract's answer for a limit that waiting does not lift.
    domain.TooManyFiles: (403, "quota_exceeded"),
    domain.TooManyUploads: (429, "too_many_uploads"),
    domain.TooManyRequests: (429, "too_many_requests"),
    domain.StoreDidNotAccept: (502, "store_error"),
    domain.InvalidCredentials: (401, "invalid_credentials"),
    domain.TooManyAttempts: (429, "too_many_attempts"),
    domain.WrongPassword: (403, "wrong_password"),
    domain.TokenRevoked: (401, "token_revoked"),
    domain.UnknownUser: (401, "unknown_user"),
    domain.TokenExpired: (401, "token_expired"),
    domain.SessionTooOld: (401, "session_expired"),
    domain.InvalidToken: (401, "invalid_token"),
    domain.LinkNotFound: (404, "link_not_found"),
    domain.LinkRevoked: (404, "link_revoked"),
    domain.LinkExpired: (410, "link_expired"),
    domain.PasswordRequired: (401, "password_required"),
    domain.WrongLinkPassword: (403, "wrong_password"),
    domain.InvalidName: (400, "invalid_name"),
    domain.NodeNotFound: (404, "not_found"),
    domain.PathNotFound: (404, "not_found"),
    domain.NameTaken: (409, "name_taken"),
    domain.Cycle: (409, "cycle"),
    domain.CannotChangeRoot: (400, "root_folder"),
    domain.ReplacesMismatch: (400, "invalid_replaces"),
    domain.NotAVersion: (409, "not_a_version"),
    domain.SignUpClosed: (403, "signup_closed"),
    domain.InvitationRequired: (403, "invitation_required"),
    domain.InvalidInvitation: (403, "invalid_invitation"),
    domain.AccountDisabled: (401, "account_disabled"),
    domain.NoSuchUser: (404, "not_found"),
    domain.InvalidCursor: (400, "invalid_cursor"),
    domain.CursorReset: (410, "cursor_reset"),
    domain.ZipTooLarge: (413, "zip_too_large"),
    # As the CDN tier answers an altered or expired download URL.
    domain.ZipUrlInvalid: (403, "invalid_zip_url"),
    domain.ZipUrlExpired: (403, "zip_url_expired"),
}
# 401s that are not about the access token: they do not ask for one (WWW-Authenticate: Bearer).
NOT_BEARER_CHALLENGES = {"password_required"}
# Seconds after which a client may try again while the database restarts (a restart takes a few).
DATABASE_RETRY_AFTER = 2


def api_error(exc: Exception) -> ApiError | None:
    """The contract's error for a domain or store error; None for anything else (a bug: 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, domain.DomainError):
        status, code = DOMAIN_ERRORS[type(exc)]
        # A refusal that ends on its own says when (429 too_many_attempts, ...).
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return ApiError(status, code, exc.message, headers=headers, **exc.details())
    if isinstance(exc, StoreUnavailable):
        return ApiError(503, "store_unavailable", f"the object store is not answering: {exc}")
    if isinstance(exc, StoreError):
        return ApiError(502, "store_error", f"the object store refused the request: {exc}")
    if isinstance(exc, DatabaseUnavailable):
        return ApiError(503, "database_unavailable", "the metadata database is not answering; try again shortly",
                        headers={"Retry-After": str(DATABASE_RETRY_AFTER)})
    if isinstance(exc, DiskFull) or out_of_space(exc):
        return ApiError(503, "disk_full", "the disk is full: nothing can be saved until there is room again; "
                                          "reading still works")
    return None


def bad_request(message: str, code: str = "invalid_request", **details: Any) -> ApiError:
    return ApiError(400, code, message, **details)


def unauthorized(message: str, code: str = "unauthorized") -> ApiError:
    return ApiError(401, code, message)


def error_response(error: ApiError, request_id: str | None = None) -> web.Response:
    headers = {"X-Request-Id": request_id} if request_id else {}
    headers.update(error.headers)
    if error.status == 401 and error.code not in NOT_BEARER_CHALLENGES:
        headers["WWW-Authenticate"] = 'Bearer realm="dropbox"'
    return web.json_response(error.body(), status=error.status, headers=headers or None)

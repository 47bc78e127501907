"""Gateway settings, read once from environment variables.

Every variable, its default and its meaning is listed in README.md; the
defaults are those of the local stack.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from urllib.parse import urlsplit

MIB = 1024 * 1024
GIB = 1024 * MIB
S3_MIN_PART_SIZE = 5 * MIB  # S3 refuses smaller parts except the last one
MAX_CHUNKS = 10_000  # S3's limit on parts per multipart upload
SIGNUP_MODES = ("open", "invite", "closed")
DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg", "sqlite", "sqlite+aiosqlite")


IPNetwork = IPv4Network | IPv6Network


class ConfigError(ValueError):
    pass


# Settings where 0 means "off" or "at once", and nothing below 0 means anything.
NON_NEGATIVE = ("signup_rate", "user_quota_bytes", "zip_max_size", "max_files_per_user",
                "max_uploads_in_progress", "part_events_delay", "reconcile_recheck", "share_window")


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    # Slow clients (slowloris): seconds a connection may take to send a request's head, and may stay
    # idle between requests (aiohttp's keep-alive timer, which also runs while a head is incomplete);
    # seconds a request body may go without a byte arriving while the gateway waits for it (408).
    header_timeout: float = 20.0
    body_timeout: float = 30.0
    database_path: str = "var/gateway.sqlite3"
    # postgresql://user:password@host:port/db for several gateways on one database; empty: SQLite at database_path.
    database_url: str = ""
    # PostgreSQL: connections one gateway process keeps open, and as many more it opens while they are all in
    # use (closed when they come back). Each is a PostgreSQL server process: gateways x 2 x this must stay
    # under the server's max_connections. SQLite's pool is fixed (gateway/db/engine.py).
    database_pool_size: int = 10
    # Public base URL of the gateway, used in links such as the /content redirect.
    public_url: str = "http://127.0.0.1:8080"

    s3_endpoint: str = "http://127.0.0.1:9000"
    # Address clients use for presigned uploads; differs from s3_endpoint behind docker-compose.
    s3_public_endpoint: str = ""
    s3_access_key: str = "gateway"
    s3_secret_key: str = ""
    s3_bucket: str = "dropbox-content"
    s3_region: str = "us-east-1"

    jwt_secret: str = ""
    token_ttl: int = 3600
    # How long a session may be kept going by renewing its tokens in use, seconds since the log-in.
    session_max_age: int = 30 * 24 * 3600
    events_token: str = ""

    # Login throttling (gateway/core/accounts.py): wrong passwords one username may have within
    # login_window seconds; the next attempt, right or wrong, is refused (429) until the window passes.
    login_failures: int = 5
    login_window: int = 300
    # Failures (on any usernames) one client address may have within login_window before its password
    # checks are paced (gateway/core/pacing.py): at most login_address_checks in flight at once per
    # gateway process, a wrong one holding its slot login_address_delay seconds; slowed down, never
    # refused (NAT): at most checks/delay guesses a second per process.
    login_address_failures: int = 30
    login_address_delay: float = 2.0
    login_address_checks: int = 4
    # Who may sign up (POST /dropbox/v1/users): "open" (anyone), "invite" (with an invitation code
    # from python -m gateway.admin invite) or "closed" (only the admin command creates accounts).
    signup: str = "open"
    # Sign-ups one client address may make per hour (a taken username counts too); past it 429; 0: off.
    # Generous by default: a school's or an office's first morning behind one NAT address.
    signup_rate: int = 300
    # Comma-separated addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For names
    # the client; empty: the client is the connection's peer.
    trusted_proxies: str = ""

    cdn_url: str = "http://127.0.0.1:8081"
    cdn_secret: str = ""

    chunk_size: int = 8 * MIB
    # 40 GiB: within 10,000 chunks even at the smallest chunk size (5 MiB).
    max_file_size: int = 40 * 1024 * MIB
    inline_upload_limit: int = 32 * MIB
    upload_url_ttl: int = 3600
    download_url_ttl: int = 300
    # The largest zip the gateway makes (a folder or a selection downloaded as one, gateway/core/zips.py),
    # in bytes; 0: no limit. Zips are the one download the gateway carries itself: a larger tree is
    # dbx download -r's (resumable, every file verified, through the CDN tier).
    zip_max_size: int = 10 * GIB

    # An upload with no progress for this long is abandoned and its multipart aborted.
    abandon_after: int = 24 * 3600
    reconcile_interval: float = 60.0
    # Seconds of quiet before the reconciler looks at an upload the store's events should have settled.
    reconcile_grace: float = 30.0
    # Uploads the reconciler looks at per round at most (oldest first); it looks at an upload
    # again after new activity, or after reconcile_recheck seconds.
    reconcile_batch: int = 200
    reconcile_recheck: float = 600.0
    # Thumbnails of images and PDFs (gateway/core/thumbnails.py), made in the background by every gateway:
    # off, no content is queued; the worker looks every thumbnail_interval seconds (and at once after an
    # upload through its own gateway); each decoding runs in a child process limited to
    # thumbnail_timeout seconds and thumbnail_memory_bytes of address space; larger sources get none.
    thumbnails: bool = True
    thumbnail_interval: float = 10.0
    thumbnail_timeout: float = 20.0
    thumbnail_memory_bytes: int = 768 * MIB
    thumbnail_max_source_bytes: int = 64 * MIB
    # Seconds the trash keeps what was deleted, and earlier versions are kept, before both are deleted
    # for good by the background rounds (contract v1.2; both in GET /dropbox/v1/config).
    trash_retention: int = 30 * 24 * 3600
    version_retention: int = 30 * 24 * 3600
    # Seconds the change journal keeps each change (GET /dropbox/v1/changes); a cursor older than what is
    # kept is answered 410 cursor_reset, and its client lists the tree again.
    change_retention: int = 30 * 24 * 3600
    # Whether the store is the embedded one (SeaweedFS), which posts an event per uploaded part
    # to /dropbox/v1/events/seaweedfs (that path exists only then). MinIO posts none: upload
    # progress is then read from the store's part list when a file is read.
    store_part_events: bool = True
    # A part event asks for the upload's part list; it is read this many seconds after the first
    # event of a burst, once for the whole burst.
    part_events_delay: float = 1.0

    # Limits per user (contract v1.1 "Limits and quotas"); 0 turns a limit off.
    # Bytes of uploaded and uploading files a user may hold (users.quota_bytes overrides it per user).
    user_quota_bytes: int = 100 * GIB
    # Files a user may have, of any size or status (empty files cost no quota, yet each is a row).
    max_files_per_user: int = 100_000
    max_uploads_in_progress: int = 20
    # Share and unshare calls a user may make per share_window seconds; each unknown username
    # named counts one more (it tells the caller that nobody has that name).
    share_limit: int = 100
    share_window: float = 600.0

    # Shared links: wrong passwords allowed per link within a window of this many seconds, then 429.
    link_password_attempts: int = 5
    link_password_window: int = 900

    # aiocache backend: "memory://" or "redis://host:port/db".
    cache_url: str = "memory://"
    cache_ttl: int = 60

    log_level: str = "info"

    # Prometheus metrics (GET /metrics) on their own listener, never on the API's port, which is
    # public: 0 turns them off. Bind them where only the monitoring network reaches.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, secrets: bool = True, **overrides) -> Config:
        """Read ``GATEWAY_<FIELD>`` variables (``GATEWAY_S3_ENDPOINT`` for ``s3_endpoint``).

        ``secrets=False``: for a command that signs nothing and reaches neither
        the store nor the CDN tier (python -m gateway.admin), which needs none.
        """
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f"GATEWAY_{f.name.upper()}")
            if raw is None:
                continue
            try:
                values[f.name] = _cast(f.default, raw)
            except ValueError as exc:
                raise ConfigError(f"GATEWAY_{f.name.upper()}={raw!r} is not a valid {type(f.default).__name__}") from exc
        values.update(overrides)
        config = cls(**values)
        config.validate(secrets=secrets)
        return config

    def validate(self, *, secrets: bool = True) -> None:
        if secrets:
            self._validate_secrets()
        if self.signup not in SIGNUP_MODES:
            raise ConfigError(f"GATEWAY_SIGNUP must be one of {', '.join(SIGNUP_MODES)}, not {self.signup!r}")
        if self.database_url and self.database_url.split("://", 1)[0].lower() not in DATABASE_SCHEMES:
            raise ConfigError("GATEWAY_DATABASE_URL must be postgresql://user:password@host:port/db (or sqlite:///path)")
        if self.chunk_size < S3_MIN_PART_SIZE:
            raise ConfigError(f"GATEWAY_CHUNK_SIZE must be at least {S3_MIN_PART_SIZE} (S3's smallest part)")
        if self.link_password_attempts < 1 or self.link_password_window < 1:
            raise ConfigError("GATEWAY_LINK_PASSWORD_ATTEMPTS and GATEWAY_LINK_PASSWORD_WINDOW must be at least 1")
        negative = [name for name in NON_NEGATIVE if getattr(self, name) < 0]
        if negative:
            raise ConfigError(f"{', '.join(f'GATEWAY_{name.upper()}' for name in negative)} must not be negative")
        if self.token_ttl < 1 or self.session_max_age < 1:
            raise ConfigError("GATEWAY_TOKEN_TTL and GATEWAY_SESSION_MAX_AGE must be at least 1")
        if self.database_pool_size < 1:
            raise ConfigError("GATEWAY_DATABASE_POOL_SIZE must be at least 1")
        if self.reconcile_batch < 1 or self.share_limit < 1:
            raise ConfigError("GATEWAY_RECONCILE_BATCH and GATEWAY_SHARE_LIMIT must be at least 1")
        if self.max_file_size > self.chunk_size * MAX_CHUNKS:
            raise ConfigError(
                f"GATEWAY_MAX_FILE_SIZE {self.max_file_size} needs more than {MAX_CHUNKS} chunks of {self.chunk_size}"
            )
        if self.header_timeout <= 0 or self.body_timeout <= 0:
            raise ConfigError("GATEWAY_HEADER_TIMEOUT and GATEWAY_BODY_TIMEOUT must be more than 0 seconds")
        if min(self.login_failures, self.login_address_failures, self.login_window, self.login_address_checks) < 1:
            raise ConfigError("GATEWAY_LOGIN_FAILURES, GATEWAY_LOGIN_ADDRESS_FAILURES, GATEWAY_LOGIN_WINDOW and "
                              "GATEWAY_LOGIN_ADDRESS_CHECKS must be at least 1")
        if self.thumbnail_interval <= 0 or self.thumbnail_timeout <= 0 or self.thumbnail_memory_bytes < 64 * MIB:
            raise ConfigError("GATEWAY_THUMBNAIL_INTERVAL and GATEWAY_THUMBNAIL_TIMEOUT must be more than 0 seconds, "
                              "GATEWAY_THUMBNAIL_MEMORY_BYTES at least 64 MiB")
        if not 0 <= self.login_address_delay <= 60:
            raise ConfigError("GATEWAY_LOGIN_ADDRESS_DELAY must be from 0 to 60 seconds")
        self.trusted_proxy_networks  # noqa: B018 - a bad address fails at start, not on a request

    def _validate_secrets(self) -> None:
        missing = [name for name in ("s3_secret_key", "jwt_secret", "events_token", "cdn_secret") if not getattr(self, name)]
        if missing:
            names = ", ".join(f"GATEWAY_{name.upper()}" for name in missing)
            raise ConfigError(f"missing secret settings: {names}")
        if len(self.jwt_secret) < 32:
            raise ConfigError("GATEWAY_JWT_SECRET must be at least 32 characters")

    @property
    def presign_endpoint(self) -> str:
        return self.s3_public_endpoint or self.s3_endpoint

    def loopback_for_others(self) -> list[str]:
        """The settings that hand clients a loopback address while the app is served on another address:
        a browser or dbx on another machine cannot reach them (README, "From other machines")."""
        if is_loopback(self.public_url):
            return []
        given = (("GATEWAY_S3_PUBLIC_ENDPOINT", self.presign_endpoint), ("GATEWAY_CDN_URL", self.cdn_url))
        return [name for name, url in given if is_loopback(url)]

    @property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        try:
            return tuple(ip_network(part.strip(), strict=False) for part in self.trusted_proxies.split(",") if part.strip())
        except ValueError as exc:
            raise ConfigError(f"GATEWAY_TRUSTED_PROXIES: {exc}") from exc


def is_loopback(url: str) -> bool:
    """Whether a URL names this machine's loopback (127.0.0.0/8, ::1, localhost)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL setting: how a browser names its site (CSP sources, CORS)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _cast(default, raw: str):
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw

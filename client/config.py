"""Where the client keeps its login: ``$XDG_CONFIG_HOME/dbx/credentials.json``.

The file maps each server URL to the token issued there, and remembers the
server last logged in to. It holds bearer tokens, so the directory is 0700 and
the file 0600, written atomically (a temporary file renamed into place).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SERVER = "http://127.0.0.1:8080"
CREDENTIALS_FILE = "credentials.json"


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "dbx"


def normalize_server(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


@dataclass
class Credentials:
    server: str
    username: str
    access_token: str
    expires_at: float | None = None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and time.time() >= self.expires_at


class CredentialStore:
    def __init__(self, directory: Path | None = None):
        self.directory = directory or config_dir()
        self.path = self.directory / CREDENTIALS_FILE

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable or corrupt: as if not logged in; login rewrites it
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=self.directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def default_server(self) -> str | None:
        return self._read().get("default_server")

    def get(self, server: str) -> Credentials | None:
        server = normalize_server(server)
        entry = self._read().get("servers", {}).get(server)
        if not isinstance(entry, dict) or not entry.get("access_token"):
            return None
        return Credentials(server, entry.get("username", ""), entry["access_token"], entry.get("expires_at"))

    def save(self, credentials: Credentials) -> None:
        data = self._read()
        server = normalize_server(credentials.server)
        data.setdefault("servers", {})[server] = {
            "username": credentials.username,
            "access_token": credentials.access_token,
            "expires_at": credentials.expires_at,
        }
        data["default_server"] = server
        self._write(data)

    def chunk_size(self, server: str) -> int | None:
        """The chunk size this server said last time (GET /config), to start hashing before asking again."""
        value = self._read().get("chunk_sizes", {}).get(normalize_server(server))
        return value if isinstance(value, int) and value > 0 else None

    def remember_chunk_size(self, server: str, chunk_size: int) -> None:
        data = self._read()
        known = data.setdefault("chunk_sizes", {})
        if known.get(normalize_server(server)) != chunk_size:
            known[normalize_server(server)] = chunk_size
            self._write(data)

    def remove(self, server: str) -> bool:
        data = self._read()
        server = normalize_server(server)
        if server not in data.get("servers", {}):
            return False
        del data["servers"][server]
        if data.get("default_server") == server:
            data.pop("default_server", None)
        self._write(data)
        return True


def resolve_server(flag: str | None, environ: Mapping[str, str] | None = None, store: CredentialStore | None = None) -> str:
    """--server, else $DBX_SERVER, else the server last logged in to, else the local default."""
    environ = os.environ if environ is None else environ
    for candidate in (flag, environ.get("DBX_SERVER")):
        if candidate:
            return normalize_server(candidate)
    remembered = (store or CredentialStore()).default_server()
    return normalize_server(remembered or DEFAULT_SERVER)

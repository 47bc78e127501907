"""Verified, resumable downloads from the CDN tier.

The bytes stream into ``TARGET.part`` beside the target while the contract's
fingerprint is recomputed; only when it matches the file object's is the part
renamed into place. ``TARGET.part.json`` records which content the part holds,
so an interrupted download resumes with a ``Range`` request, and a part of a
different file is never appended to.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp
from tqdm import tqdm

from client.api import TRANSPORT_ERRORS, GatewayClient, connection_reason
from client.errors import ClientError, IntegrityError, NotFound, Refused, ServerError, StoreRefused, Unreachable, UsageError
from client.hashing import ChunkHasher, run_stoppable
from client.upload import backoff_delay

PIECE = 1024 * 1024
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass
class DownloadOptions:
    retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    quiet: bool = False


@dataclass
class DownloadResult:
    file_id: Any
    file_name: str
    path: str
    file_size: int
    fingerprint: str
    resumed_from: int = 0  # bytes already on disk from an earlier run
    bytes_received: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"ok": True, **asdict(self)}


def safe_name(name: str, fallback: str) -> str:
    """A server-given file name usable as a local base name (no directories, no dot names)."""
    base = os.path.basename(str(name).replace("\\", "/")).strip()
    if base in ("", ".", ".."):
        return fallback
    return base


def resolve_target(output: str | None, file_name: str, file_id: Any) -> str:
    name = safe_name(file_name, f"file-{file_id}")
    if not output:
        return os.path.abspath(name)
    if os.path.isdir(output) or output.endswith(os.sep):
        return os.path.abspath(os.path.join(output, name))
    return os.path.abspath(output)


def sidecar_path(target: str) -> str:
    return target + ".part.json"


def part_path(target: str) -> str:
    return target + ".part"


def read_sidecar(target: str) -> dict | None:
    try:
        with open(sidecar_path(target), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_sidecar(target: str, meta: dict) -> None:
    tmp = sidecar_path(target) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, sidecar_path(target))


def remove_partial(target: str) -> None:
    for path in (part_path(target), sidecar_path(target), sidecar_path(target) + ".tmp"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def prepare_partial(target: str, meta: dict, on_read=None) -> tuple[ChunkHasher, int]:
    """Reuse a part of this very content (rehashed from disk), or start a new one."""
    hasher = ChunkHasher(int(meta["chunk_size"]))
    part = part_path(target)
    previous = read_sidecar(target)
    same = previous is not None and all(previous.get(k) == meta[k] for k in ("fingerprint", "file_size", "chunk_size"))
    if same and os.path.isfile(part) and os.path.getsize(part) <= meta["file_size"]:
        with open(part, "rb") as f:
            while True:
                data = f.read(PIECE)
                if not data:
                    break
                hasher.update(data)
                if on_read:
                    on_read(len(data))
        return hasher, hasher.size
    remove_partial(target)
    write_sidecar(target, meta)
    with open(part, "wb"):
        pass
    return hasher, 0


async def download_file(client: GatewayClient, file_id: Any, output: str | None, options: DownloadOptions) -> DownloadResult:
    started = time.monotonic()
    obj = await client.get_file(file_id)
    status = obj.get("status")
    if status != "uploaded":
        if status == "failed":
            raise IntegrityError(f"file {file_id} failed verification in the store and cannot be downloaded",
                                 code="upload_failed")
        raise Refused(f"file {file_id} is still {status or 'not ready'}; finish it with `dbx upload` or wait",
                      code="not_ready")
    size = int(obj["file_size"])
    fingerprint = obj["fingerprint"]
    chunk_size = int(obj.get("chunk_size") or 0) or 8 * 1024 * 1024
    target = resolve_target(output, obj.get("file_name") or "", file_id)
    if os.path.isdir(target):
        raise UsageError(f"{target} is a directory; pass -o with a file path")
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise NotFound(f"the directory {directory} does not exist; create it or pick another -o", code="local_not_found")
    meta = {"file_id": obj.get("file_id", file_id), "fingerprint": fingerprint, "file_size": size, "chunk_size": chunk_size}
    hasher, offset = await run_stoppable(prepare_partial, target, meta)
    result = DownloadResult(obj.get("file_id", file_id), obj.get("file_name", ""), target, size, fingerprint,
                            resumed_from=offset)
    bar = tqdm(total=size, initial=offset, desc=os.path.basename(target)[:24], unit="B", unit_scale=True,
               unit_divisor=1024, file=sys.stderr, disable=options.quiet, dynamic_ncols=True,
               mininterval=0.2 if sys.stderr.isatty() else 1.0)
    try:
        if size > 0:
            offset = await _fetch(client, file_id, obj, target, hasher, offset, size, bar, options, result)
    finally:
        bar.close()
    if offset != size:
        raise ServerError(f"the CDN sent {offset} bytes of file {file_id}, which has {size}; run `dbx download` again")
    got = hasher.hexdigest()
    if got != fingerprint:
        remove_partial(target)
        raise IntegrityError(
            f"the bytes received for file {file_id} do not match its fingerprint ({got[:12]}… instead of "
            f"{fingerprint[:12]}…); nothing was written to {target}; run `dbx download` again, and tell the "
            "gateway's operator if it repeats",
            code="fingerprint_mismatch",
        )
    os.replace(part_path(target), target)
    remove_partial(target)
    result.seconds = round(time.monotonic() - started, 3)
    return result


async def _fetch(client: GatewayClient, file_id: Any, obj: dict, target: str, hasher: ChunkHasher, offset: int,
                 size: int, bar: tqdm, options: DownloadOptions, result: DownloadResult) -> int:
    last_problem = ""
    unreachable = False
    refreshed = False
    attempt = -1
    while attempt < options.retries:
        attempt += 1
        if attempt:
            await asyncio.sleep(backoff_delay(attempt - 1, options.backoff_base, options.backoff_max))
        progress_at = offset
        url = obj.get("download_url")
        if not url:
            raise ServerError(f"the gateway gave no download_url for file {file_id}; is its CDN tier configured?",
                              code="no_download_url")
        url = urljoin(client.server + "/", url)  # absolute already, unless the gateway gives a path
        # Byte offsets are of the stored bytes: no content coding may change them.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            async with client.session.get(url, headers=headers, allow_redirects=True) as resp:
                if resp.status == 416 and offset:
                    # The part is not a prefix of what the CDN has: start over.
                    offset = _restart(target, hasher, bar, offset)
                    last_problem = "HTTP 416"
                    continue
                if resp.status == 403:
                    # Expired or refused signature: a fresh file object has a fresh URL.
                    last_problem = "HTTP 403 (the signed URL was refused or expired)"
                    if refreshed and attempt >= 2:
                        raise StoreRefused(f"the CDN refuses the download URL of file {file_id} even when fresh "
                                           "(HTTP 403); tell the gateway's operator", status=403)
                    obj.update(await client.get_file(file_id))
                    refreshed = True
                    continue
                if resp.status == 404:
                    raise NotFound(f"the CDN has no content for file {file_id} (HTTP 404); it may have been deleted",
                                   status=404)
                if resp.status not in (200, 206):
                    last_problem = f"HTTP {resp.status}"
                    unreachable = False
                    continue
                if resp.status == 206:
                    match = CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                    if not match or int(match.group(1)) != offset:
                        offset = _restart(target, hasher, bar, offset)
                        last_problem = "a Range answer for the wrong bytes"
                        continue
                elif offset:
                    # The CDN ignored the Range: take the whole body from the start.
                    offset = _restart(target, hasher, bar, offset)
                with open(part_path(target), "r+b") as f:
                    f.seek(offset)
                    f.truncate()
                    try:
                        async for piece in resp.content.iter_chunked(PIECE):
                            if offset + len(piece) > size:
                                raise IntegrityError(f"the CDN sent more than the {size} bytes of file {file_id}",
                                                     code="too_long")
                            f.write(piece)
                            hasher.update(piece)
                            offset += len(piece)
                            result.bytes_received += len(piece)
                            bar.update(len(piece))
                    finally:
                        f.flush()
                        os.fsync(f.fileno())
                if offset == size:
                    return offset
                last_problem = f"the connection ended after {offset} of {size} bytes"
        except TRANSPORT_ERRORS as exc:
            if isinstance(exc, aiohttp.ClientPayloadError) or offset > progress_at:
                unreachable = False
                last_problem = f"the connection to the CDN tier broke after {offset} of {size} bytes"
            else:
                unreachable = True
                last_problem = f"cannot reach the CDN tier ({connection_reason(exc)})"
        if offset > progress_at:
            attempt = 0  # progress was made: a flaky link gets its retries afresh, resuming where it broke
    message = (f"downloading file {file_id} failed after {options.retries + 1} tries ({last_problem}); "
               f"{offset} bytes are kept in {part_path(target)}: run `dbx download` again to resume")
    if unreachable:
        raise Unreachable(message)
    raise ServerError(message, code="download_failed")


def _restart(target: str, hasher: ChunkHasher, bar: tqdm, offset: int) -> int:
    with open(part_path(target), "r+b") as f:
        f.truncate(0)
    fresh = ChunkHasher(hasher.chunk_size)
    hasher.__dict__.update(fresh.__dict__)
    bar.update(-offset)
    return 0


def error_json(file_id: Any, error: ClientError) -> dict:
    return {"ok": False, "file_id": file_id, "error": error.to_json()}

"""What ``dbx`` prints for people: rows, tables and sizes (``--json`` prints the gateway's objects instead).

File names, usernames and link URLs come from other people: they are printed
with control characters replaced, so a name cannot move the cursor, clear the
screen or rewrite the terminal's title; Unicode's bidirectional controls too,
so that a name is shown in its real order (``photo<U+202E>gnp.exe``, which a
terminal shows as ``photoexe.png``, prints as ``photo?gnp.exe``).
"""
from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import datetime, UTC
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.errors import ClientError


# C0 and C1 controls, and the characters Unicode calls Bidi_Control: ALM, LRM and RLM, the embeddings and
# overrides LRE, RLE, PDF, LRO, RLO (U+202A-U+202E) and the isolates LRI, RLI, FSI, PDI (U+2066-U+2069).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
INFO_FIELDS = ("file_id", "file_name", "file_size", "file_type", "fingerprint", "status", "uploaded_by",
               "created_at", "chunk_size", "total_chunks", "uploaded_chunks")


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def printable(value: Any) -> str:
    """``value`` as text safe to write to a terminal."""
    return CONTROL.sub("?", str(value))


def parse_time(value: Any) -> float | None:
    """A time the gateway wrote, as unix seconds: a number or an ISO 8601 string; None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return None


def show_time(value: Any) -> str:
    """A gateway time for people: ``2026-12-02 15:04 UTC``; what cannot be read, as it came."""
    seconds = parse_time(value)
    if seconds is None:
        return printable(value)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


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
    return "\t".join(printable(part) for part in parts)


def info_lines(obj: dict) -> list[str]:
    """``key: value`` lines of a file object: the contract's fields first, then any others, the URL last."""
    lines = []
    for key in INFO_FIELDS:
        if key in obj:
            value = obj[key]
            if key == "file_size" and isinstance(value, int):
                value = f"{value} ({human_size(value)})"
            lines.append(f"{key + ':':17}{value}")
    for key, value in obj.items():
        if key not in INFO_FIELDS and key not in ("chunks", "download_url"):
            lines.append(f"{key + ':':17}{value}")
    if obj.get("download_url"):
        lines.append(f"{'download_url:':17}{obj['download_url']}")
    return [printable(line) for line in lines]


def whoami_lines(me: dict, server: str) -> list[str]:
    lines = [printable(f"{me.get('username')} <{me.get('email')}> on {server}")]
    usage = quota_line(me)
    if usage:
        lines.append(usage)
    return lines


def quota_line(me: dict) -> str | None:
    """``used 1.2 GiB of 10.0 GiB (12%)``, ``used 1.2 GiB (no quota)``; None when the gateway does not say."""
    used = me.get("used_bytes")
    if not isinstance(used, int) or isinstance(used, bool):
        return None
    if "quota_bytes" in me and me["quota_bytes"] is None:
        return f"used {human_size(used)} (no quota)"
    quota = me.get("quota_bytes")
    if not isinstance(quota, int) or isinstance(quota, bool):
        return f"used {human_size(used)}"
    percent = f" ({100 * used / quota:.0f}%)" if quota > 0 else ""
    return f"used {human_size(used)} of {human_size(quota)}{percent}, {human_size(max(0, quota - used))} free"


def link_expiry(link: dict) -> str:
    return "never" if link.get("expires_at") is None else show_time(link["expires_at"])


def link_summary(link: dict) -> str:
    """One line about a new link, for stderr (stdout gets its URL alone)."""
    password = "with a password" if link.get("has_password") else "no password"
    expiry = link.get("expires_at")
    expires = "never expires" if expiry is None else f"expires {show_time(expiry)}"
    return printable(f"link {link.get('link_id')} to file {link.get('file_id')}: {expires}, {password}")


def link_table(links: list[dict]) -> list[str]:
    """The links of a file, one a row, columns aligned, the URL last (it is the longest)."""
    header = ("LINK_ID", "CREATED", "EXPIRES", "PASSWORD", "DOWNLOADS", "URL")
    rows = [
        (str(link.get("link_id", "")), show_time(link.get("created_at")), link_expiry(link),
         "yes" if link.get("has_password") else "no", str(link.get("download_count", 0)), str(link.get("url", "")))
        for link in links
    ]
    return table([header, *rows])


def entry_cells(entry: dict, name: str) -> tuple[str, ...]:
    """A tree entry as ``ls -l`` shows it: kind (``d`` for a folder), size, last change, name (a folder's ends in /)."""
    folder = entry.get("type") == "folder"
    size = entry.get("file_size")
    when = entry.get("modified_at") or entry.get("created_at")
    return ("d" if folder else "-", "-" if folder or not isinstance(size, int) else human_size(size),
            show_time(when) if when else "-", name + ("/" if folder and not name.endswith("/") else ""))


def table(rows: Sequence[tuple[str, ...]], right: tuple[int, ...] = ()) -> list[str]:
    """Rows of cells, columns aligned (those in ``right`` to the right), the last column as it is."""
    if not rows:
        return []
    shown = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in shown) for i in range(len(shown[0]) - 1)]
    return ["  ".join([*(cell.rjust(width) if i in right else cell.ljust(width)
                         for i, (cell, width) in enumerate(zip(row, widths, strict=False))), row[-1]]).rstrip()
            for row in shown]


def entry_lines(entries: list[dict], full_path: bool = False) -> list[str]:
    """``ls -l``-style lines of folders and files: the name, or with ``full_path`` the path."""
    rows = [entry_cells(e, str((e.get("path") if full_path else None) or e.get("name") or e.get("file_name") or ""))
            for e in entries]
    return table(rows, right=(1,))


def report_error(exc: ClientError) -> None:
    """The error's message on stderr, for people (``--json`` output says it on stdout as well)."""
    print(f"dbx: error: {printable(exc.message)}", file=sys.stderr, flush=True)

"""Names and paths in a user's tree: the contract's rules, written once.

The gateway checks names with these rules, `dbx` checks them before it asks, and the
web app's tests expect the names they make. Keeping them in one module is what keeps
"is `Report.pdf` the same name as `report.PDF`?" and "what is the next free name?"
one answer everywhere.

- A *name* is kept as given. It is refused when it is empty, `.` or `..`, longer than
  255 bytes in UTF-8, or holds `/`, `\\` or a control character (contract v1.2, The tree).
- Two names are the same name when their :func:`name_key` is equal: Unicode NFC, then
  case-folded (and NFC again, since case folding can leave a string that is not NFC).
  Every desktop a sync client runs on compares names this way or stricter.
- A *path* is `/` followed by names joined by `/`; the root's path is `/`. Empty
  segments (`/a//b`, a trailing `/`) are refused rather than guessed at.
- Free names: `name (1).ext`, `name (2).ext`, ...; conflicted copies:
  `name (conflicted copy YYYY-MM-DD).ext`, then `... (1).ext` after it. The extension
  is what follows the last dot, unless that dot starts the name (`.bashrc` has none);
  folders have no extension. A suffix never makes a name longer than 255 bytes: the
  stem is shortened (on a character boundary) to make room.

Imports nothing else of this project.
"""
from __future__ import annotations

import datetime
import unicodedata
from collections.abc import Iterator

MAX_NAME_BYTES = 255
ROOT_PATH = "/"


class InvalidName(ValueError):
    """A name or path the contract refuses; ``str()`` says why, in words a user can act on."""


def _why_invalid(name: str) -> str | None:
    if name == "":
        return "a name cannot be empty"
    if name in (".", ".."):
        return f"{name!r} cannot be a name"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"a name can be at most {MAX_NAME_BYTES} bytes in UTF-8"
    if "/" in name or "\\" in name:
        return "a name cannot hold '/' or '\\'"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "a name cannot hold a control character"
    if any(unicodedata.category(c) == "Cs" for c in name):
        return "a name must be valid Unicode"
    return None


def is_valid_name(name: str) -> bool:
    return _why_invalid(name) is None


def check_name(name: str) -> str:
    """``name`` unchanged if the contract allows it; :class:`InvalidName` otherwise."""
    why = _why_invalid(name)
    if why is not None:
        raise InvalidName(why)
    return name


def name_key(name: str) -> str:
    """What two names are compared by: equal keys are the same name in one folder."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def split_path(path: str) -> list[str]:
    """The names along ``path`` from the root: ``"/"`` -> ``[]``, ``"/a/b.txt"`` -> ``["a", "b.txt"]``."""
    if not path.startswith("/"):
        raise InvalidName("a path starts with '/'")
    if path == ROOT_PATH:
        return []
    names = path[1:].split("/")
    for name in names:
        if name == "":
            raise InvalidName("a path cannot have empty segments ('//' or a trailing '/')")
        check_name(name)
    return names


def join_path(parent_path: str, name: str) -> str:
    """The path of ``name`` inside the folder at ``parent_path``."""
    return ("" if parent_path == ROOT_PATH else parent_path) + "/" + name


def parent_path(path: str) -> str:
    """The path of the folder holding ``path`` (the root's parent is the root)."""
    head = path.rsplit("/", 1)[0]
    return head or ROOT_PATH


def split_extension(name: str, *, folder: bool = False) -> tuple[str, str]:
    """``("report", ".pdf")`` for ``report.pdf``; no extension for folders or ``.bashrc``."""
    dot = name.rfind(".")
    if folder or dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def _with_suffix(name: str, suffix: str, *, folder: bool) -> str:
    stem, ext = split_extension(name, folder=folder)
    room = MAX_NAME_BYTES - len((suffix + ext).encode("utf-8"))
    if room < 1:  # an extension so long that nothing fits: treat it as part of the stem
        stem, ext = name, ""
        room = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    while len(stem.encode("utf-8")) > room:
        stem = stem[:-1]
    return stem + suffix + ext


def numbered_name(name: str, n: int, *, folder: bool = False) -> str:
    """``name (n).ext``; ``n == 0`` is the name itself."""
    return name if n == 0 else _with_suffix(name, f" ({n})", folder=folder)


def free_names(name: str, *, folder: bool = False) -> Iterator[str]:
    """``name``, ``name (1).ext``, ``name (2).ext``, ...: the order in which a taken name is replaced."""
    n = 0
    while True:
        yield numbered_name(name, n, folder=folder)
        n += 1


def conflicted_copy_names(name: str, day: datetime.date) -> Iterator[str]:
    """``name (conflicted copy YYYY-MM-DD).ext``, then with `` (1)``, `` (2)``, ... after it."""
    first = _with_suffix(name, f" (conflicted copy {day.isoformat()})", folder=False)
    return free_names(first)

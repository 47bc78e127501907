"""The states the contract names: a file's ``status`` and its chunks' ``chunks[].status``.

Each state is a :class:`enum.StrEnum` member, which *is* its string:
``FileStatus.UPLOADED == "uploaded"``, ``json.dumps`` writes ``"uploaded"``, and
the database column holds ``uploaded``. So the JSON on the wire and the values
in the database stay exactly the contract's strings, while code that names a
state by its member cannot misspell it (a typo is an AttributeError, and mypy's).

Shared by the gateway and its clients; imports nothing else of this project.
"""
from __future__ import annotations

import enum


class FileStatus(enum.StrEnum):
    """A file's ``status``: ``uploading`` -> ``uploaded``, or ``failed`` when the store's bytes did not match."""

    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    FAILED = "failed"


class ChunkStatus(enum.StrEnum):
    """A chunk's ``status``: ``uploaded`` once the store holds it."""

    PENDING = "pending"
    UPLOADED = "uploaded"


# The statuses a file never leaves (until it is deleted): nothing about it changes any more.
# A tuple, not a set: `in` compares, so a client may test any JSON value (a list too) without a TypeError.
FINAL_FILE_STATUSES = (FileStatus.UPLOADED, FileStatus.FAILED)

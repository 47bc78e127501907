"""What the core's steps report back, for counts, log lines and metrics.

Not states of a file (those are the contract's, protocol/states.py): nothing
stores these. StrEnum, like the states: a member is its string, so the counts,
the log lines and the metric labels read as before.
"""
from __future__ import annotations

import enum


class Settlement(enum.StrEnum):
    """What the reconciler's step did to one upload (Uploads.settle_if_free)."""

    COMPLETED = "completed"
    ABANDONED = "abandoned"
    UNCHANGED = "unchanged"  # still uploading, or settled since it was listed
    BUSY = "busy"  # another gateway holds its lease: not looked at

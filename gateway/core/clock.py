"""Time, passed in: the core asks its clock, so tests can move time instead of waiting for it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

Clock = Callable[[], datetime]  # returns an aware UTC datetime


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


def timestamp(moment: datetime) -> str:
    """Timestamps are stored as ISO-8601 UTC text, which sorts as time does."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(stamp: str) -> datetime:
    """The moment a stored timestamp stands for (the inverse of :func:`timestamp`)."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def stamp_now(clock: Clock) -> str:
    return timestamp(clock())


def stamp_ago(clock: Clock, seconds: float) -> str:
    return timestamp(clock() - timedelta(seconds=seconds))


def stamp_in(clock: Clock, seconds: float) -> str:
    return timestamp(clock() + timedelta(seconds=seconds))

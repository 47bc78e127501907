"""Time, passed in: the core asks its clock, so tests can move time instead of waiting for it."""
from __future__ import annotations

from datetime import datetime, timedelta, UTC
from collections.abc import Callable

Clock = Callable[[], datetime]  # returns an aware UTC datetime


def system_clock() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    """Timestamps are stored as ISO-8601 UTC text, which sorts as time does."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stamp_now(clock: Clock) -> str:
    return timestamp(clock())


def stamp_ago(clock: Clock, seconds: float) -> str:
    return timestamp(clock() - timedelta(seconds=seconds))


def stamp_in(clock: Clock, seconds: float) -> str:
    return timestamp(clock() + timedelta(seconds=seconds))


def parse_stamp(stamp: str) -> datetime:
    """The moment a :func:`timestamp` stands for."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def seconds_until(clock: Clock, stamp: str) -> float:
    return (parse_stamp(stamp) - clock()).total_seconds()

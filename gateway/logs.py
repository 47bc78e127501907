"""structlog set-up: one JSON object per line, the request id on every line.

Logging never fails a request: a line that cannot be written (a full disk, a
closed stream) or rendered is dropped and counted in :data:`LOG_WRITES`, never
raised into the code that logged it. ``GET /readyz`` names the disk while the
last line written found it full; ``/metrics`` counts the dropped lines.
"""
from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

import structlog

from gateway.disk import out_of_space


class LogWrites:
    """What became of the lines written: how many were dropped, and whether the last one found the disk full."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # structlog's async methods log from worker threads
        self.dropped = 0
        self.out_of_space: str | None = None  # the last line's error when it found the disk full; None once one fits

    def wrote(self) -> None:
        self.out_of_space = None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.dropped += 1
        self.out_of_space = str(exc) if out_of_space(exc) else None


LOG_WRITES = LogWrites()


def never_raising(wrapper_class: type[Any]) -> type[Any]:
    """``wrapper_class`` whose log calls drop (and count) a line they cannot render or write, never raise."""

    class NeverRaising(wrapper_class):
        def _proxy_to_logger(self, method_name: str, event: str | None = None, **event_kw: Any) -> Any:
            try:
                result = super()._proxy_to_logger(method_name, event, **event_kw)
            except Exception as exc:  # noqa: BLE001 - a log line is never worth a failed request
                LOG_WRITES.failed(exc)
                return None
            LOG_WRITES.wrote()
            return result

    return NeverRaising


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines to ``stream`` (standard output by default) at ``level`` and above."""
    stream = stream or sys.stdout
    logging.basicConfig(format="%(message)s", stream=stream, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,  # carries request_id
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=never_raising(structlog.make_filtering_bound_logger(logging.getLevelName(level.upper()))),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str):
    return structlog.get_logger(name)

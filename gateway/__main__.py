"""Run the gateway: ``python -m gateway`` (settings from GATEWAY_* variables)."""
from __future__ import annotations

import gc
import sys

from aiohttp import web
import structlog

from gateway.http.app import create_app, server_options
from gateway.config import Config, ConfigError
from gateway.logs import configure_logging

GEN0_THRESHOLD = 10_000  # CPython's default is 700
GIL_SWITCH_INTERVAL = 0.001  # seconds; CPython's default is 0.005


def main() -> int:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    if unreachable := config.loopback_for_others():
        # A warning, not a refusal: clients on this machine itself (dbx given the LAN name) still work.
        structlog.get_logger("gateway").warning(
            "loopback_addresses_for_other_machines", public_url=config.public_url, settings=unreachable,
            hint="other machines cannot reach these; with ./dev up, start it with --address (README)")
    app = create_app(config)
    app.on_startup.append(tune_for_the_event_loop)  # after the core is built (the store's SDK models loaded)
    web.run_app(app, host=config.host, port=config.port, access_log=None, print=None, **server_options(config))
    return 0


async def tune_for_the_event_loop(_app: web.Application) -> None:
    """Keep the event loop's waits for the GIL short, behind the collector and the worker threads.

    Presigning (storage/s3.py) and JSON encoding run on threads; while one is
    busy, the loop thread waits up to the interpreter's switch interval for the
    GIL at every turn (5 ms by default). At 1 ms, /healthz's median during
    12 concurrent upload-urls calls of 5,120 URLs went from 6-9 ms to 2-3 ms
    with the same presigning throughput (bench/limits.py, alternated runs).

    The collector's pauses hold the GIL too, so they stop the event loop.

    A full collection walks every tracked object. After start-up some 150,000 of
    them (SQLAlchemy, botocore's service models) live for good: frozen, they are
    never walked again. Busy calls (an upload-urls call of 5,120 URLs) make tens
    of thousands of short-lived objects; a larger first generation lets most of
    them die young instead of being promoted and walked by full collections
    (measured by bench/limits.py: /healthz's worst case during 40 such calls).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)


if __name__ == "__main__":
    sys.exit(main())

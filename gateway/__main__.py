"""Run the gateway: ``python -m gateway`` (settings from GATEWAY_* variables)."""
from __future__ import annotations

import sys

from aiohttp import web

from gateway.http.app import create_app
from gateway.config import Config, ConfigError
from gateway.logs import configure_logging


def main() -> int:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    web.run_app(create_app(config), host=config.host, port=config.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""aiohttp: the app factory and wiring, middlewares, handlers (parse, call the core, answer),
the one mapping from domain errors to the contract's JSON errors, OpenAPI."""

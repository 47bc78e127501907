"""The gateway: http -> core -> (db, storage), data flowing one way.

Where a new feature's parts go (shared links, login throttling, token revocation, quotas, ...):

- a rule or an action: a method of a class in ``gateway/core/`` (a new module for a
  new concept, e.g. ``core/links.py``), taking its dependencies in ``__init__`` and
  wired in ``core.build_core``; it raises a ``core/errors.py`` DomainError subclass;
- the error's HTTP answer: one line in ``http/errors.DOMAIN_ERRORS`` (a test checks
  every domain error has one);
- a table or column: an Alembic revision in ``db/migrations/versions/`` (next number,
  ``down_revision`` the previous one; it runs on SQLite and PostgreSQL at start-up),
  the table in ``db/tables.py``, its queries in a ``db/<concept>.py`` module;
- an endpoint: a handler in ``http/routes/<group>.py`` (parse, call the core, answer),
  the module added to ``http/app.create_app``'s list, the path in ``openapi.json``;
- a setting: a field of ``config.Config`` and a row in README's configuration table.
"""

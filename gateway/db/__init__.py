"""Metadata: engine setup (SQLite or PostgreSQL), tables, migrations, and the queries the core needs.

The query modules (files, uploads, nodes, users, shares, links, ...) are the only code that writes SQL;
gateway/core calls them with a :class:`Database` or one of its connections.
"""
from gateway.db.engine import (Database, DatabaseUnavailable, DiskFull, Row, database_url, in_background,
                               storable_text)

__all__ = ["Database", "DatabaseUnavailable", "DiskFull", "Row", "database_url", "in_background", "storable_text"]

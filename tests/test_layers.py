"""The gateway's layers depend one way, http -> core -> (db, storage): checked on the source's imports."""
from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for path in sorted((GATEWAY / package).rglob("*.py")):
        hits = sorted(m for m in imports_of(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if hits:
            bad[str(path.relative_to(GATEWAY))] = hits
    return bad


def test_the_core_knows_nothing_of_http():
    assert offenders("core", ("aiohttp", "gateway.http")) == {}


def test_the_database_layer_knows_neither_the_core_nor_http():
    assert offenders("db", ("aiohttp", "gateway.http", "gateway.core")) == {}


def test_route_modules_do_not_import_each_other():
    assert offenders("http/routes", ("gateway.http.routes",)) == {}

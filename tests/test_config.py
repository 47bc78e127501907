"""gateway/config.py: the README's configuration table names exactly the gateway's settings."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from gateway.config import Config

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_gateway_settings() -> set[str]:
    """The GATEWAY_* variables in the first column of the table under README's "## Configuration"."""
    section = README.read_text(encoding="utf-8").split("\n## Configuration\n", 1)[1]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| variable |"))
    names = set()
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        first_column = line.split("|")[1]
        names |= set(re.findall(r"`GATEWAY_([A-Z0-9_]+)`", first_column))
    return {name.lower() for name in names}


def test_the_readme_table_and_config_name_the_same_settings():
    documented = readme_gateway_settings()
    settings = {field.name for field in dataclasses.fields(Config)}
    assert not settings - documented, f"settings missing from README.md's table: {sorted(settings - documented)}"
    assert not documented - settings, f"README.md's table names what Config lacks: {sorted(documented - settings)}"

"""The gateway's settings: README's configuration table names exactly the settings Config reads, and bad values are refused."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"
SECRETS = dict(s3_secret_key="s", jwt_secret="j" * 32, events_token="e", cdn_secret="c")


def readme_gateway_settings() -> set[str]:
    """The GATEWAY_* names in the first column of the table under README's "## Configuration"."""
    section = README.read_text().split("\n## Configuration\n", 1)[1]
    table = re.search(r"(?:^\|.*\|\n)+", section, re.MULTILINE).group(0)
    first_column = [line.split("|")[1] for line in table.splitlines()[2:]]
    return {name for cell in first_column for name in re.findall(r"GATEWAY_[A-Z0-9_]+", cell)}


def test_the_readme_table_names_every_setting_and_only_those():
    settings = {f"GATEWAY_{field.name.upper()}" for field in dataclasses.fields(Config)}
    documented = readme_gateway_settings()
    assert not settings - documented, f"settings missing from README.md's table: {sorted(settings - documented)}"
    assert not documented - settings, f"README.md names settings Config does not read: {sorted(documented - settings)}"


def test_limits_are_read_from_the_environment_and_negative_ones_refused():
    config = Config.from_env({"GATEWAY_USER_QUOTA_BYTES": "0", "GATEWAY_MAX_UPLOADS_IN_PROGRESS": "5",
                              "GATEWAY_RECONCILE_BATCH": "10", "GATEWAY_SHARE_LIMIT": "7"}, **SECRETS)
    assert (config.user_quota_bytes, config.max_uploads_in_progress, config.reconcile_batch, config.share_limit) == (0, 5, 10, 7)
    defaults = Config(**SECRETS)
    assert defaults.user_quota_bytes == 100 * 1024**3 and defaults.max_uploads_in_progress == 20
    for name, value in (("GATEWAY_USER_QUOTA_BYTES", "-1"), ("GATEWAY_PART_EVENTS_DELAY", "-0.5"),
                        ("GATEWAY_RECONCILE_BATCH", "0"), ("GATEWAY_SHARE_LIMIT", "0")):
        with pytest.raises(ConfigError, match=name):
            Config.from_env({name: value}, **SECRETS)

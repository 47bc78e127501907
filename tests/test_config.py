"""The gateway's settings: values are read from the environment and bad ones refused.

(That README's configuration table names exactly Config's settings is tests/test_docs.py's.)
"""
from __future__ import annotations

import pytest

from gateway.config import Config, ConfigError

SECRETS = dict(s3_secret_key="s", jwt_secret="j" * 32, events_token="e", cdn_secret="c")


def test_limits_are_read_from_the_environment_and_negative_ones_refused():
    config = Config.from_env({"GATEWAY_USER_QUOTA_BYTES": "0", "GATEWAY_MAX_UPLOADS_IN_PROGRESS": "5",
                              "GATEWAY_RECONCILE_BATCH": "10", "GATEWAY_SHARE_LIMIT": "7",
                              "GATEWAY_MAX_FILES_PER_USER": "0"}, **SECRETS)
    assert (config.user_quota_bytes, config.max_uploads_in_progress, config.reconcile_batch, config.share_limit,
            config.max_files_per_user) == (0, 5, 10, 7, 0)
    defaults = Config(**SECRETS)
    assert defaults.user_quota_bytes == 100 * 1024**3 and defaults.max_uploads_in_progress == 20
    assert defaults.max_files_per_user == 100_000
    for name, value in (("GATEWAY_USER_QUOTA_BYTES", "-1"), ("GATEWAY_MAX_FILES_PER_USER", "-1"),
                        ("GATEWAY_PART_EVENTS_DELAY", "-0.5"),
                        ("GATEWAY_RECONCILE_BATCH", "0"), ("GATEWAY_SHARE_LIMIT", "0")):
        with pytest.raises(ConfigError, match=name):
            Config.from_env({name: value}, **SECRETS)


def test_the_postgresql_pool_size_is_read_defaults_to_10_and_is_at_least_1():
    assert Config(**SECRETS).database_pool_size == 10
    assert Config.from_env({"GATEWAY_DATABASE_POOL_SIZE": "24"}, **SECRETS).database_pool_size == 24
    with pytest.raises(ConfigError, match="GATEWAY_DATABASE_POOL_SIZE"):
        Config.from_env({"GATEWAY_DATABASE_POOL_SIZE": "0"}, **SECRETS)


def test_the_zip_size_limit_is_read_defaults_to_10_gib_and_is_never_negative():
    assert Config(**SECRETS).zip_max_size == 10 * 1024**3
    assert Config.from_env({"GATEWAY_ZIP_MAX_SIZE": "0"}, **SECRETS).zip_max_size == 0  # no limit
    assert Config.from_env({"GATEWAY_ZIP_MAX_SIZE": "1048576"}, **SECRETS).zip_max_size == 1024 * 1024
    with pytest.raises(ConfigError, match="GATEWAY_ZIP_MAX_SIZE"):
        Config.from_env({"GATEWAY_ZIP_MAX_SIZE": "-1"}, **SECRETS)

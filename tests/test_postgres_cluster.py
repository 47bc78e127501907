"""deploy/postgres.py: a private PostgreSQL on 127.0.0.1 that asks for its password."""
from __future__ import annotations

from urllib.parse import urlsplit

from deploy.postgres import PostgresCluster


def psql(cluster: PostgresCluster, url: str, sql: str, password: str):
    cluster_password, cluster.password = cluster.password, password
    try:
        return cluster._run("psql", "--no-psqlrc", "--tuples-only", "--no-align", f"--dbname={url}", "-c", sql, check=False)
    finally:
        cluster.password = cluster_password


def test_the_cluster_answers_on_loopback_with_its_password_only(postgres_cluster):
    parts = urlsplit(postgres_cluster.url)
    assert parts.hostname == "127.0.0.1" and parts.port == postgres_cluster.port
    bare = f"postgresql://{postgres_cluster.user}@127.0.0.1:{postgres_cluster.port}/{postgres_cluster.database}"
    ok = psql(postgres_cluster, bare, "SHOW listen_addresses", postgres_cluster.password)
    assert ok.returncode == 0 and ok.stdout.strip() == "127.0.0.1", ok.stderr
    refused = psql(postgres_cluster, bare, "SELECT 1", "not-the-password")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    assert (postgres_cluster.root / "password").stat().st_mode & 0o077 == 0


def test_databases_are_created_from_a_template_and_dropped(postgres_cluster):
    template_url = postgres_cluster.create_database("launcher_template")
    assert psql(postgres_cluster, template_url, "CREATE TABLE marker (x int)", postgres_cluster.password).returncode == 0
    copy_url = postgres_cluster.create_database("launcher_copy", template="launcher_template")
    found = psql(postgres_cluster, copy_url, "SELECT count(*) FROM marker", postgres_cluster.password)
    assert found.returncode == 0 and found.stdout.strip() == "0", found.stderr
    postgres_cluster.drop_database("launcher_copy")
    gone = psql(postgres_cluster, copy_url, "SELECT 1", postgres_cluster.password)
    assert gone.returncode != 0 and "does not exist" in gone.stderr
    postgres_cluster.drop_database("launcher_template")

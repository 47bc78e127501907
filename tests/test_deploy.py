"""The docker-compose deployment, checked where it can be without a Docker engine.

docker-compose.yml, .env.example, deploy/Dockerfile, deploy/minio-init.sh and
cdn/nginx.conf.template name the same things in different places (ports,
paths, the bucket, the events token, the gateway's settings). These tests read
them all and check that the names agree, so a change in one place cannot
silently break another. The last tests use the real store: a presigned upload
URL signed for the address clients use is accepted there, which is what MinIO
behind compose relies on.
"""
from __future__ import annotations

import ast
import base64
import dataclasses
import hashlib
import json
import re
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from yarl import URL

from gateway.http.app import create_app, make_store
from gateway.config import Config
from storage import CompletedPart
from storage.embedded import free_port
from tests.harness import BUCKET, gateway_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
INIT_SCRIPT = ROOT / "deploy" / "minio-init.sh"
CDN_TEMPLATE = ROOT / "cdn" / "nginx.conf.template"
CDN_MAIN_CONF = ROOT / "cdn" / "nginx.main.conf"
CDN_NJS = ROOT / "cdn" / "signing.js"
DEPLOYMENT_DOC = ROOT / "README.md"  # its deployment section

# The contract's store events endpoint (api-contract.md, "Store events").
EVENTS_PATH = "/dropbox/v1/events"
# The contract's default addresses of the parts (api-contract.md, "Default addresses").
DEFAULT_PORTS = {"gateway": 8080, "cdn": 8081, "minio": 9000}
SERVICES = {"minio", "minio-init", "gateway", "cdn"}
LONG_RUNNING = {"minio", "gateway", "cdn"}
# What .env must hold and nothing in the repository may: Config.validate's secrets and MinIO's root password.
SECRETS = {"MINIO_ROOT_PASSWORD", "GATEWAY_S3_SECRET_KEY", "GATEWAY_JWT_SECRET", "GATEWAY_EVENTS_TOKEN",
           "GATEWAY_CDN_SECRET", "CDN_S3_SECRET_KEY"}
REQUIRED = SECRETS | {"MINIO_ROOT_USER"}
# docker-compose.scale.yml reads the same .env, and needs these too (tests/test_deploy_scale.py).
SCALE_COMPOSE_FILE = ROOT / "docker-compose.scale.yml"
SCALE_SECRETS = {"POSTGRES_PASSWORD", "REDIS_PASSWORD"}
MINIO_DOCKERFILE = ROOT / "deploy" / "minio.Dockerfile"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+x}
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


# --- reading the files ---------------------------------------------------------------------------------

def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def read_env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example: {line!r} is not NAME=value"
        values[name.strip()] = value.strip()
    return values


def filled_env() -> dict[str, str]:
    """.env as a new user makes it from .env.example: every empty value filled with `openssl rand -hex 20`."""
    return {name: value or secrets.token_hex(20) for name, value in read_env_example().items()}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution, for the forms the file uses."""

    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        present = name in env
        nonempty = bool(env.get(name))
        if op is None:
            return env.get(name, "")
        if op == ":-":
            return env[name] if nonempty else arg
        if op == "-":
            return env[name] if present else arg
        if op in (":?", "?"):
            if not (nonempty if op == ":?" else present):
                raise KeyError(f"{name}: {arg}")
            return env[name]
        if op == ":+":
            return arg if nonempty else ""
        return arg if present else ""

    return VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def environment(service: dict) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] for item in raw)
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def resolved(compose: dict, env: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Every service's environment as the containers get it, with .env filled in."""
    env = filled_env() if env is None else env
    return {name: {k: interpolate(v, env) for k, v in environment(svc).items()} for name, svc in compose["services"].items()}


def variables_in(text: str) -> list[re.Match]:
    return list(VARIABLE.finditer(text))


def port_mappings(service: dict) -> list[tuple[str, int]]:
    """(host side with defaults applied, container port) of each published port."""
    mappings = []
    for spec in service.get("ports", []):
        text = interpolate(str(spec), {})
        host, _, container = text.rpartition(":")
        mappings.append((host, int(container.split("/")[0])))
    return mappings


def host_port(host_side: str) -> int:
    return int(host_side.rpartition(":")[2])


def named_volume_mounts(service: dict) -> dict[str, str]:
    """container path -> named volume."""
    mounts = {}
    for spec in service.get("volumes", []):
        if isinstance(spec, dict):
            if spec.get("type", "volume") == "volume":
                mounts[spec["target"]] = spec["source"]
            continue
        source, target = spec.split(":")[:2]
        if not source.startswith((".", "/", "~")):
            mounts[target] = source
    return mounts


def bind_mounts(service: dict) -> dict[str, str]:
    """container path -> host path (relative to the repository)."""
    mounts = {}
    for spec in service.get("volumes", []):
        if isinstance(spec, str):
            source, target = spec.split(":")[:2]
            if source.startswith((".", "/")):
                mounts[target] = source
    return mounts


def on_named_volume(service: dict, path: str) -> bool:
    return any(path == mount or path.startswith(mount.rstrip("/") + "/") for mount in named_volume_mounts(service))


def config_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(Config)}


def setting_name(variable: str) -> str:
    assert variable.startswith("GATEWAY_")
    return variable.removeprefix("GATEWAY_").lower()


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    return instructions


def local_packages() -> set[str]:
    return {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}


def imported_modules(packages: set[str]) -> set[str]:
    """Top-level names of every absolute import in these packages of the repository."""
    names: set[str] = set()
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def copied_packages() -> set[str]:
    """What the Dockerfile's COPY instructions take from the repository, by top-level name."""
    copied = set()
    for keyword, args in dockerfile_instructions():
        if keyword in ("COPY", "ADD"):
            words = json.loads(args) if args.startswith("[") else shlex.split(args)
            copied |= {w.rstrip("/").split("/")[0] for w in words[:-1] if not w.startswith("--")}
    return copied


def init_script_code() -> str:
    """The init script without its comments."""
    return "\n".join(line for line in INIT_SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#"))


def duration_seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)([smhd])", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


def template_code() -> str:
    return "\n".join(line for line in CDN_TEMPLATE.read_text().splitlines() if not line.lstrip().startswith("#"))


def minio_authorization(auth_token: str) -> str | None:
    """The Authorization header MinIO's webhook target sends for MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_<ID>
    (minio internal/event/target/webhook.go): a one-word token as `Bearer <token>`, a two-word one
    (`<scheme> <token>`) as it is, anything else not at all."""
    fields = auth_token.split()
    if len(fields) == 2:
        return auth_token
    if len(fields) == 1:
        return "Bearer " + auth_token
    return None


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def env(compose) -> dict[str, dict[str, str]]:
    return resolved(compose)


def webhook_ids(minio_env: dict[str, str]) -> list[str]:
    prefix = "MINIO_NOTIFY_WEBHOOK_ENABLE_"
    return [key.removeprefix(prefix) for key, value in minio_env.items() if key.startswith(prefix) and value == "on"]


# --- services, ports, volumes, health ---------------------------------------------------------------

def test_the_services_are_there(services):
    assert SERVICES <= set(services), f"missing services: {SERVICES - set(services)}"
    for name in LONG_RUNNING:
        assert services[name].get("restart") in ("unless-stopped", "always"), f"{name} is not restarted"
    assert services["minio-init"].get("restart", "no") == "no", "the init service is one-shot"


def test_published_ports_are_the_contracts_defaults(services, env):
    published = {name: port_mappings(services[name]) for name in LONG_RUNNING}
    assert (f"{DEFAULT_PORTS['gateway']}", int(env["gateway"]["GATEWAY_PORT"])) in published["gateway"]
    assert (str(DEFAULT_PORTS["cdn"]), int(env["cdn"]["CDN_LISTEN"])) in published["cdn"]
    assert (str(DEFAULT_PORTS["minio"]), 9000) in published["minio"]
    # The MinIO console is published on the loopback only unless the operator says otherwise.
    assert ("127.0.0.1:9001", 9001) in published["minio"]
    assert "minio-init" not in services or not services["minio-init"].get("ports")


def test_named_volumes_are_declared_and_used(compose, services, env):
    declared = set(compose.get("volumes") or {})
    used = {volume for svc in services.values() for volume in named_volume_mounts(svc).values()}
    assert used <= declared, f"volumes used but not declared: {used - declared}"
    assert declared <= used, f"volumes declared but not used: {declared - used}"
    # Everything that must survive `docker compose down` / an upgrade is on a named volume.
    assert on_named_volume(services["minio"], "/data")
    database = env["gateway"]["GATEWAY_DATABASE_PATH"]
    assert database.startswith("/"), "GATEWAY_DATABASE_PATH must be absolute inside the container"
    assert on_named_volume(services["gateway"], str(Path(database).parent)), f"{database} is not on a volume"
    assert on_named_volume(services["cdn"], env["cdn"]["CDN_CACHE_DIR"]), "the nginx cache is not on a volume"
    # Each stateful path has a volume of its own (backups and upgrades handle them separately).
    assert len(used) == sum(len(named_volume_mounts(svc)) for svc in services.values())


def test_healthchecks_and_start_order(services, env):
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    gateway_check = " ".join(services["gateway"]["healthcheck"]["test"])
    # python:3.11-slim has no curl; the gateway's readiness covers the database and the store.
    assert "python" in gateway_check and "curl" not in gateway_check
    assert f"127.0.0.1:{env['gateway']['GATEWAY_PORT']}/readyz" in gateway_check
    cdn_check = " ".join(services["cdn"]["healthcheck"]["test"])
    assert f"127.0.0.1:{env['cdn']['CDN_LISTEN']}/healthz" in cdn_check
    assert services["minio"]["healthcheck"]["test"]

    depends = {name: svc.get("depends_on") or {} for name, svc in services.items()}
    assert depends["minio-init"]["minio"]["condition"] == "service_healthy"
    assert depends["gateway"]["minio"]["condition"] == "service_healthy"
    assert depends["gateway"]["minio-init"]["condition"] == "service_completed_successfully"
    assert depends["cdn"]["minio"]["condition"] == "service_healthy"


def test_images_have_explicit_tags(services):
    for name, svc in services.items():
        image = svc.get("image")
        if image is None:
            assert "build" in svc, f"{name} has neither an image nor a build"
            continue
        reference = image.split("@")[0]
        repository, _, tag = reference.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} uses latest"
    # MinIO is built from source at the release its image is named after (deploy/minio.Dockerfile).
    build = services["minio"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == MINIO_DOCKERFILE
    release = re.search(r"^ARG MINIO_RELEASE=(\S+)$", MINIO_DOCKERFILE.read_text(), re.M).group(1)
    assert services["minio"]["image"].endswith(":" + release)
    assert services["minio-init"]["image"].split(":")[0].endswith("minio/mc")
    assert services["cdn"]["image"].split(":")[0].endswith("nginx")


# --- the gateway's settings ---------------------------------------------------------------------------

def test_every_gateway_variable_is_a_config_field(compose, services):
    fields = config_fields()
    for name, svc in services.items():
        for key in environment(svc):
            if key.startswith("GATEWAY_"):
                assert setting_name(key) in fields, f"{name}: {key} is not a gateway setting (gateway/config.py)"
    for match in variables_in(COMPOSE_FILE.read_text()):
        if match["name"].startswith("GATEWAY_"):
            assert setting_name(match["name"]) in fields, f"${{{match['name']}}} is not a gateway setting"


def test_the_gateway_reads_compose_settings(env):
    gateway = env["gateway"]
    config = Config.from_env(gateway)  # types and validation, as `python -m gateway` does in the container
    assert config.host == "0.0.0.0", "inside the container the gateway must listen on every interface"
    assert config.port == 8080
    internal = urlsplit(config.s3_endpoint)
    assert internal.hostname == "minio" and internal.port == 9000, "the gateway reaches MinIO by its service name"
    # Clients upload to the published port, by a name they can resolve.
    public = urlsplit(config.s3_public_endpoint)
    assert public.hostname != "minio" and public.port == DEFAULT_PORTS["minio"]
    assert public.path in ("", "/") and not public.query, "presigned URLs are built as <endpoint>/<bucket>/<key>"
    assert config.presign_endpoint == config.s3_public_endpoint
    assert urlsplit(config.public_url).port == DEFAULT_PORTS["gateway"]
    assert urlsplit(config.cdn_url).port == DEFAULT_PORTS["cdn"]
    assert config.store_part_events is False, "MinIO posts no event per uploaded part"


def test_the_bucket_is_the_same_everywhere(env):
    bucket = env["gateway"]["GATEWAY_S3_BUCKET"]
    assert env["minio-init"]["BUCKET"] == bucket
    assert env["cdn"]["GATEWAY_S3_BUCKET"] == bucket
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket), f"{bucket!r} is not a valid bucket name"
    # Without .env's value the defaults agree too.
    defaults = resolved(load_compose(), {**filled_env(), "GATEWAY_S3_BUCKET": ""})
    assert {defaults["gateway"]["GATEWAY_S3_BUCKET"], defaults["minio-init"]["BUCKET"],
            defaults["cdn"]["GATEWAY_S3_BUCKET"]} == {read_env_example()["GATEWAY_S3_BUCKET"]}
    # The init script creates and binds the bucket it is given, and no other.
    code = init_script_code()
    assert 'mc mb --ignore-existing "$ALIAS/$BUCKET"' in code
    assert not re.search(r"dropbox-content|test-content", code)


# --- MinIO's events reach the gateway -------------------------------------------------------------------

def test_the_webhook_posts_to_the_gateways_events_endpoint(services, env):
    minio = env["minio"]
    ids = webhook_ids(minio)
    assert len(ids) == 1, f"expected one enabled webhook target, got {ids}"
    endpoint = urlsplit(minio[f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{ids[0]}"])
    assert endpoint.hostname == "gateway" and "gateway" in services
    assert endpoint.port == int(env["gateway"]["GATEWAY_PORT"])
    assert endpoint.path == EVENTS_PATH


def test_the_gateway_serves_the_events_endpoint():
    app = create_app(Config(jwt_secret="x" * 32, events_token="t", cdn_secret="c", s3_secret_key="s"))
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    assert ("POST", EVENTS_PATH) in routes


def test_the_webhook_uses_the_token_the_gateway_checks(env):
    raw = COMPOSE_FILE.read_text()
    ids = webhook_ids(env["minio"])
    minio_env = environment(load_compose()["services"]["minio"])
    gateway_env = environment(load_compose()["services"]["gateway"])
    minio_token = [m["name"] for m in variables_in(minio_env[f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{ids[0]}"])]
    gateway_token = [m["name"] for m in variables_in(gateway_env["GATEWAY_EVENTS_TOKEN"])]
    assert minio_token == gateway_token == ["GATEWAY_EVENTS_TOKEN"], "both must read the same .env variable"
    assert "Bearer" not in minio_env[f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{ids[0]}"], "MinIO adds `Bearer ` itself"
    assert raw.count("${GATEWAY_EVENTS_TOKEN:?") == 2
    # As .env makes it, MinIO sends exactly what the gateway expects.
    token = env["minio"][f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{ids[0]}"]
    assert token == env["gateway"]["GATEWAY_EVENTS_TOKEN"]
    assert minio_authorization(token) == f"Bearer {env['gateway']['GATEWAY_EVENTS_TOKEN']}"


def test_events_survive_a_gateway_outage(services, env):
    minio = env["minio"]
    webhook = webhook_ids(minio)[0]
    queue = minio[f"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_{webhook}"]
    assert queue.startswith("/"), "MinIO wants an absolute queue directory"
    assert on_named_volume(services["minio"], queue), "the event queue must be on a volume"
    assert not queue.startswith("/data/"), "a directory in MinIO's drive would show up as a bucket"
    assert int(minio.get(f"MINIO_NOTIFY_WEBHOOK_QUEUE_LIMIT_{webhook}", "100000")) >= 10_000


def test_the_init_script_binds_the_events_to_that_webhook(services, env):
    webhook = webhook_ids(env["minio"])[0]
    init_env = env["minio-init"]
    assert init_env["WEBHOOK_ID"] == webhook
    code = init_script_code()
    assert 'ARN="arn:minio:sqs::${WEBHOOK_ID}:webhook"' in code
    assert re.search(r'mc event add --ignore-existing "\$ALIAS/\$BUCKET" "\$ARN" --event put,delete', code)
    # The ARN has an empty region only while MinIO has none configured.
    assert not {"MINIO_REGION", "MINIO_SITE_REGION", "MINIO_REGION_NAME"} & set(env["minio"])


async def test_the_gateway_accepts_the_header_minio_sends(make_gateway, http):
    """The events token as MinIO's webhook target turns it into a header, against the real gateway.
    MinIO retries an event that is not answered 2xx every 3 s and sends nothing after it meanwhile,
    so an event the gateway does not care about must still get a 2xx."""
    gateway = await make_gateway()
    token = gateway.config.events_token
    assert len(token.split()) == 1
    url = gateway.url + EVENTS_PATH
    unknown_content = "content/" + hashlib.sha256(secrets.token_bytes(8)).hexdigest()
    for event_name, key in [("s3:ObjectCreated:Put", "not-the-gateways/object"),
                            ("s3:ObjectCreated:CompleteMultipartUpload", unknown_content),
                            ("s3:ObjectRemoved:Delete", unknown_content)]:
        # As MinIO posts it: one record, the key URL-encoded in the record and plain in `Key`.
        record = {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventName": event_name,
            "s3": {"bucket": {"name": BUCKET}, "object": {"key": key.replace("/", "%2F"), "size": 3}},
        }
        body = {"EventName": event_name, "Key": f"{BUCKET}/{key}", "Records": [record]}
        async with http.post(url, json=body, headers={"Authorization": minio_authorization(token)}) as resp:
            assert 200 <= resp.status < 300, (event_name, key, await resp.text())
    async with http.post(url, json=body, headers={"Authorization": minio_authorization("not-" + token)}) as resp:
        assert resp.status == 401
    async with http.post(url, json=body) as resp:
        assert resp.status == 401


# --- stale multipart uploads ------------------------------------------------------------------------------

def test_minio_aborts_stale_uploads_after_the_gateway_would(env):
    minio = env["minio"]
    expiry = duration_seconds(minio["MINIO_API_STALE_UPLOADS_EXPIRY"])
    assert duration_seconds(minio["MINIO_API_STALE_UPLOADS_CLEANUP_INTERVAL"]) < expiry
    abandon_after = Config.from_env(env["gateway"]).abandon_after
    # MinIO counts from the upload's start, the gateway from its last progress: leave a margin.
    assert expiry >= 2 * abandon_after, "MinIO would abort uploads the gateway still considers alive"
    # No lifecycle rule pretends to do it (MinIO drops AbortIncompleteMultipartUpload).
    assert "mc ilm" not in init_script_code()


# --- secrets and .env.example --------------------------------------------------------------------------------

def test_secrets_come_from_env_and_fail_clearly_when_missing():
    text = COMPOSE_FILE.read_text()
    for match in variables_in(text):
        if match["name"] in REQUIRED:
            assert match["op"] == ":?" and match["arg"].strip(), f"${{{match['name']}}} must be ${{NAME:?message}}"
    referenced = {m["name"] for m in variables_in(text)}
    assert REQUIRED <= referenced
    compose = load_compose()
    # No secret is written into the file: every secret setting is a ${...} reference.
    for name, svc in compose["services"].items():
        for key, value in environment(svc).items():
            if re.search(r"SECRET|PASSWORD|TOKEN", key):
                assert variables_in(value), f"{name}: {key} holds a literal value"
    # A .env missing a secret stops `up` with the variable's name.
    env = filled_env()
    for name in sorted(REQUIRED):
        with pytest.raises(KeyError, match=name):
            resolved(compose, {**env, name: ""})


def test_env_example_lists_every_variable_and_no_secret():
    example = read_env_example()
    referenced = {m["name"] for path in (COMPOSE_FILE, SCALE_COMPOSE_FILE) for m in variables_in(path.read_text())}
    assert referenced <= set(example), f".env.example lacks {sorted(referenced - set(example))}"
    assert set(example) <= referenced, f".env.example sets unused {sorted(set(example) - referenced)}"
    for name in SECRETS | SCALE_SECRETS:
        assert example[name] == "", f".env.example must not hold a value for {name}"
    # The documented command fills in every secret, and nothing else.
    for text in (ENV_EXAMPLE.read_text(), DEPLOYMENT_DOC.read_text()):
        loop = re.search(r"for name in ([A-Z0-9_ ]+); do", text)
        assert loop and set(loop.group(1).split()) == SECRETS | SCALE_SECRETS
        assert "openssl rand -hex 20" in text
    # (40 hex characters fit MinIO's secret keys, 8 to 40, and the JWT secret, 32 or more: filled_env()
    # makes them so, and test_the_gateway_reads_compose_settings validates the result.) MinIO's access keys
    # are 3 to 20 characters.
    assert 3 <= len(example["GATEWAY_S3_ACCESS_KEY"]) <= 20 and 3 <= len(example["MINIO_ROOT_USER"]) <= 20
    ignored = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    assert ".env" in ignored


# --- the gateway image --------------------------------------------------------------------------------------

def test_compose_builds_the_gateway_from_the_dockerfile(services):
    build = services["gateway"]["build"]
    assert (ROOT / build["context"]).resolve() == ROOT
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_the_dockerfile_builds_from_what_the_repository_holds():
    instructions = dockerfile_instructions()
    base = [args for keyword, args in instructions if keyword == "FROM"]
    assert base == ["python:3.11-slim"]
    copied: set[str] = set()
    for keyword, args in instructions:
        if keyword not in ("COPY", "ADD"):
            continue
        assert keyword == "COPY", "ADD fetches and unpacks: use COPY"
        words = json.loads(args) if args.startswith("[") else shlex.split(args)
        words = [w for w in words if not w.startswith("--")]
        sources = words[:-1]
        assert sources, f"COPY {args}: no source"
        matched = []
        for source in sources:
            hits = list(ROOT.glob(source))
            if not any(ch in source for ch in "*?["):
                assert hits, f"COPY source {source} does not exist in the repository"
            assert all(ROOT in hit.resolve().parents for hit in hits), f"COPY {source} reaches outside the context"
            matched += hits
            copied.add(source.rstrip("/").split("/")[0])
        assert matched, f"COPY {args} copies nothing"
    assert {"pyproject.toml", "setup.cfg", "README.md", "constraints.txt"} <= copied
    assert not copied & {".", ".env", "var", ".venv", ".git"}, "the image must not get .env, var/ or .venv"

    # Every package of this repository that the copied code imports is copied too.
    local = local_packages()
    needed = imported_modules(copied & local)
    assert needed & local <= copied, f"the image lacks {sorted((needed & local) - copied)}"
    assert {"gateway", "storage"} <= copied

    run = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "pip install -c constraints.txt ." in run, "the image installs the pinned versions ./dev tests"
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the gateway must not run as root"
    last_user = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in instructions[last_user:]), "RUN after USER: installs as the user"
    env_lines = " ".join(args for keyword, args in instructions if keyword == "ENV")
    assert "GATEWAY_HOST=0.0.0.0" in env_lines
    assert "GATEWAY_DATABASE_PATH=/data/" in env_lines and "chown" in run and "/data" in run
    cmd = [json.loads(args) for keyword, args in instructions if keyword == "CMD"]
    assert cmd[-1] == ["python", "-m", "gateway"]
    health = " ".join(args for keyword, args in instructions if keyword == "HEALTHCHECK")
    assert "/readyz" in health and "urllib" in health


def test_the_image_installs_what_the_copied_code_imports():
    """`pip install .` in the image installs setup.cfg's install_requires (and what they require),
    not the test extras of a developer's venv: every third-party import of the copied code must
    come from there."""
    import configparser
    import sys
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    todo = [Requirement(line) for line in setup["options"]["install_requires"].splitlines() if line.strip()]
    installed: set[str] = set()
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in installed:
            continue
        installed.add(name)
        try:
            todo += [Requirement(spec) for spec in metadata.requires(requirement.name) or []]
        except metadata.PackageNotFoundError:
            pass
    providers = metadata.packages_distributions()
    copied = copied_packages() & local_packages()
    third_party = imported_modules(copied) - set(sys.stdlib_module_names) - local_packages() - {"__future__"}
    missing = {
        module for module in third_party
        if not {canonicalize_name(dist) for dist in providers.get(module, [])} & installed
    }
    assert not missing, f"imported by {sorted(copied)} but not installed by setup.cfg: {sorted(missing)}"


# --- the init script -------------------------------------------------------------------------------------------

def test_the_init_script_gets_what_it_needs(services, env):
    svc = services["minio-init"]
    entrypoint = svc["entrypoint"]
    mounts = bind_mounts(svc)
    script_path = entrypoint[-1]
    assert script_path in mounts, f"{script_path} is not mounted into minio-init"
    assert (ROOT / mounts[script_path]).resolve() == INIT_SCRIPT
    assert entrypoint[0] in ("/bin/sh", "sh"), "mounted files may lack the exec bit: run it with sh"
    subprocess.run(["sh", "-n", str(INIT_SCRIPT)], check=True)
    code = init_script_code()
    assert "set -eu" in code
    needed = set(re.findall(r': "\$\{([A-Z][A-Z0-9_]*):\?', code))
    assert needed, "the script checks its variables with : \"${NAME:?message}\""
    assert needed <= set(env["minio-init"]), f"minio-init lacks {sorted(needed - set(env['minio-init']))}"
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", code)) - {"ALIAS", "POLICY", "CDN_POLICY", "ARN", "MC_CONFIG_DIR"}
    assert used <= needed, f"the script reads unchecked variables {sorted(used - needed)}"
    # The mc image (ubi-micro) has a shell and coreutils, not these.
    for tool in ("grep", "sed", "awk", "curl", "jq", "wget"):
        assert not re.search(rf"(^|[|;&(`$]\s*|\s){tool}\s", code), f"the mc image has no {tool}"
    # Its MinIO address is MinIO's service and API port; its user is the gateway's.
    assert urlsplit(env["minio-init"]["MINIO_URL"]).netloc == urlsplit(env["gateway"]["GATEWAY_S3_ENDPOINT"]).netloc
    for name in ("GATEWAY_S3_ACCESS_KEY", "GATEWAY_S3_SECRET_KEY"):
        assert env["minio-init"][name] == env["gateway"][name]
    for name in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert env["minio-init"][name] == env["minio"][name]
        assert name not in env["gateway"], "the gateway has its own MinIO user, not the root one"
        assert name not in env["cdn"], "the CDN tier has its own MinIO user, not the root one"
    # The CDN tier's user is the one the script creates, and the gateway never holds its key (nor it the gateway's).
    for name in ("CDN_S3_ACCESS_KEY", "CDN_S3_SECRET_KEY"):
        assert env["minio-init"][name] == env["cdn"][name]
        assert name not in env["gateway"]
    assert env["cdn"]["CDN_S3_ACCESS_KEY"] != env["gateway"]["GATEWAY_S3_ACCESS_KEY"]
    assert "GATEWAY_S3_SECRET_KEY" not in env["cdn"]


# Every mc command line of the script: the word mc at the start of a command (after a keyword, a
# pipe, a `$(`, ...) up to the end of that command.
MC_COMMAND = re.compile(r"(?:^|[;&|(`]|\$\(|\b(?:until|while|if|then|do|else)\s)\s*(mc\s[^;&|)`\n]*)", re.M)
SECRET_VARIABLES = re.compile(r"\$\{?(?:MINIO_ROOT_PASSWORD|[A-Z0-9_]*SECRET[A-Z0-9_]*)\b")


def test_no_secret_is_ever_an_mc_argument():
    """Arguments show in `ps` on the host: mc gets the root credentials from MC_HOST_<alias> and a
    new user's secret key on its standard input."""
    code = init_script_code()
    commands = MC_COMMAND.findall(code)
    assert len(commands) >= 8, commands
    for command in commands:
        assert not SECRET_VARIABLES.search(command), f"a secret in mc's arguments: {command}"
    assert "mc alias set" not in code, "the alias comes from MC_HOST_<alias>, not from arguments"
    assert 'export "MC_HOST_${ALIAS}=' in code
    # Users are added with their access key only: mc reads the secret key from stdin.
    assert re.findall(r"mc admin user add [^\n]*", code) == ['mc admin user add "$ALIAS" "$1"']


def test_the_init_script_hands_mc_no_secret_when_it_runs(tmp_path):
    """Run the script against an mc that only records how it was called (there is no MinIO here;
    what MinIO does with the calls is MinIO's business, what `ps` shows of them is ours)."""
    record = tmp_path / "calls"
    record.mkdir()
    (tmp_path / "bin").mkdir()
    fake_mc = tmp_path / "bin" / "mc"
    fake_mc.write_text(
        "#!/bin/sh\n"
        f'n=$(ls "{record}" | wc -l)\n'
        f'printf "%s\\n" "$@" > "{record}/$n.argv"\n'
        f'printf "%s" "$MC_HOST_store" > "{record}/$n.host"\n'
        f'if [ "$1 $2 $3" = "admin user add" ]; then cat > "{record}/$n.stdin"; fi\n'
    )
    fake_mc.chmod(0o755)
    secrets_ = {
        "MINIO_ROOT_PASSWORD": "root-" + secrets.token_hex(8),
        "GATEWAY_S3_SECRET_KEY": "gw-" + secrets.token_hex(8),
        "CDN_S3_SECRET_KEY": "cdn-" + secrets.token_hex(8),
    }
    run_env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MINIO_URL": "http://minio:9000",
        "MINIO_ROOT_USER": "admin",
        "BUCKET": "dropbox-content",
        "WEBHOOK_ID": "GATEWAY",
        "GATEWAY_S3_ACCESS_KEY": "gateway",
        "CDN_S3_ACCESS_KEY": "cdn",
        **secrets_,
    }
    result = subprocess.run(["sh", str(INIT_SCRIPT)], env=run_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = sorted(record.glob("*.argv"), key=lambda path: int(path.stem))
    argvs = [path.read_text().splitlines() for path in calls]
    assert ["admin", "user", "add", "store", "gateway"] in argvs and ["admin", "user", "add", "store", "cdn"] in argvs
    for argv in argvs:
        for value in secrets_.values():
            assert not [word for word in argv if value in word], f"mc {' '.join(argv)}"
    # Every call found MinIO and the root credentials in its environment.
    hosts = {path.read_text() for path in record.glob("*.host")}
    assert hosts == {f"http://admin:{secrets_['MINIO_ROOT_PASSWORD']}@minio:9000"}
    # The new users' secret keys went in on standard input.
    given = {path.read_text().strip() for path in record.glob("*.stdin")}
    assert given == {secrets_["GATEWAY_S3_SECRET_KEY"], secrets_["CDN_S3_SECRET_KEY"]}
    # The script's own output names no secret either (docker compose logs minio-init).
    for value in secrets_.values():
        assert value not in result.stdout + result.stderr

    # The CDN tier's policy reads content objects and thumbnails and does nothing else.
    policies = [argv for argv in argvs if argv[:3] == ["admin", "policy", "create"]]
    assert [argv[4] for argv in policies] == ["dropbox-gateway-bucket", "dropbox-cdn-read"]


def test_the_cdn_policy_reads_content_and_thumbnails_only():
    code = init_script_code()
    cdn_policy = re.search(r'create_policy "\$CDN_POLICY" <<EOF_POLICY\n(.*?)\nEOF_POLICY', code, re.S)[1]
    document = json.loads(cdn_policy.replace("${BUCKET}", "dropbox-content"))
    assert document["Statement"] == [
        {"Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": ["arn:aws:s3:::dropbox-content/content/*", "arn:aws:s3:::dropbox-content/thumbnails/*"]}
    ]


def test_the_gateway_policy_is_its_bucket_and_the_actions_it_uses():
    code = init_script_code()
    policy = re.search(r'create_policy "\$POLICY" <<EOF_POLICY\n(.*?)\nEOF_POLICY', code, re.S)[1]
    document = json.loads(policy.replace("${BUCKET}", "dropbox-content"))
    assert document["Statement"] == [
        {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
         "Resource": ["arn:aws:s3:::dropbox-content"]},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                                       "s3:ListMultipartUploadParts"],
         "Resource": ["arn:aws:s3:::dropbox-content/*"]},
    ]


def test_the_init_script_refuses_keys_mc_would_misread(tmp_path):
    base = {"PATH": "/usr/bin:/bin", "MINIO_URL": "http://minio:9000", "MINIO_ROOT_USER": "admin",
            "MINIO_ROOT_PASSWORD": "pw", "BUCKET": "b", "WEBHOOK_ID": "G", "GATEWAY_S3_ACCESS_KEY": "gateway",
            "GATEWAY_S3_SECRET_KEY": "s", "CDN_S3_ACCESS_KEY": "cdn", "CDN_S3_SECRET_KEY": "c"}
    for change in ({"MINIO_ROOT_PASSWORD": "a:b"}, {"MINIO_ROOT_USER": "a@b"}, {"CDN_S3_ACCESS_KEY": "gateway"},
                   {"MINIO_URL": "minio:9000"}):
        result = subprocess.run(["sh", str(INIT_SCRIPT)], env={**base, **change}, capture_output=True, text=True)
        assert result.returncode == 1 and "minio-init:" in result.stdout, change


# --- the CDN tier ----------------------------------------------------------------------------------------------

def test_the_cdn_template_gets_its_settings(services, env):
    if not CDN_TEMPLATE.exists():
        pytest.skip("cdn/nginx.conf.template is not in the repository yet")
    svc, cdn = services["cdn"], env["cdn"]
    mounts = bind_mounts(svc)
    target = next(t for t, source in mounts.items() if (ROOT / source).resolve() == CDN_TEMPLATE)
    code = template_code()
    if re.search(r"^\s*(http|events)\s*\{", code, re.M):
        # A whole nginx.conf: rendered over the image's main configuration.
        assert cdn.get("NGINX_ENVSUBST_OUTPUT_DIR") == "/etc/nginx" and target == "/etc/nginx/templates/nginx.conf.template"
    else:
        # An http-level file: rendered into conf.d, where the image's nginx.conf includes *.conf.
        assert target.startswith("/etc/nginx/templates/") and target.endswith(".conf.template")
        assert cdn.get("NGINX_ENVSUBST_OUTPUT_DIR", "/etc/nginx/conf.d") == "/etc/nginx/conf.d"
    # envsubst fills in only variables the container has: a missing one stays "${NAME}" in nginx's config.
    needed = {m["name"] for m in variables_in(code)}
    assert needed <= set(cdn), f"the cdn service lacks {sorted(needed - set(cdn))}"
    # nginx reaches the store the gateway uses, and checks URLs with the gateway's key.
    assert cdn["CDN_STORE_HOST"] == urlsplit(env["gateway"]["GATEWAY_S3_ENDPOINT"]).netloc
    assert cdn["GATEWAY_CDN_SECRET"] == env["gateway"]["GATEWAY_CDN_SECRET"]
    # The main configuration the image gets loads njs and passes signing.js its secrets.
    assert (ROOT / mounts["/etc/nginx/nginx.conf"]).resolve() == CDN_MAIN_CONF
    main = CDN_MAIN_CONF.read_text()
    assert re.search(r"^load_module modules/ngx_http_js_module\.so;", main, re.M)
    assert re.search(r"^\s*include /etc/nginx/conf\.d/\*\.conf;", main, re.M)
    read_by_njs = set(re.findall(r"process\.env\.([A-Z0-9_]+)", CDN_NJS.read_text()))
    assert set(re.findall(r"^env ([A-Z0-9_]+);", main, re.M)) == read_by_njs
    assert read_by_njs <= set(cdn), f"the cdn service lacks {sorted(read_by_njs - set(cdn))}"
    assert not read_by_njs & needed, "secrets go to nginx's environment, not into its configuration"
    assert (ROOT / mounts[f"{cdn['CDN_NJS_DIR']}/signing.js"]).resolve() == CDN_NJS
    # The store fetcher's socket is on a tmpfs (fresh at every start), the access log goes to docker's log.
    socket_dir = str(Path(cdn["CDN_STORE_FETCHER"].removeprefix("unix:")).parent)
    assert cdn["CDN_STORE_FETCHER"].startswith("unix:") and socket_dir in svc.get("tmpfs", [])
    assert cdn["CDN_ACCESS_LOG"] == "/dev/stdout"
    assert (svc.get("depends_on") or {})["minio-init"]["condition"] == "service_completed_successfully"
    assert on_named_volume(svc, cdn["CDN_CACHE_DIR"])
    assert int(cdn["CDN_LISTEN"]) in {container for _, container in port_mappings(svc)}
    assert re.search(r"location\s*=\s*/healthz", code), "the healthcheck asks /healthz"
    # nginx variables stay lower case, so envsubst leaves them alone.
    assert not [name for name in needed if name != name.upper()]


# --- what docker compose itself says ------------------------------------------------------------------------------

def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        version = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True)
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2"):
            return [standalone]
    return None


def test_docker_compose_accepts_the_file(tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose v2 here")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in filled_env().items()))
    base = [*command, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "--env-file"]
    ok = subprocess.run([*base, str(env_file), "config", "--quiet"], capture_output=True, text=True)
    assert ok.returncode == 0 and "error" not in ok.stderr.lower(), ok.stderr
    partial = tmp_path / "partial.env"
    partial.write_text("".join(f"{k}={v}\n" for k, v in read_env_example().items()))  # secrets left empty
    failed = subprocess.run([*base, str(partial), "config", "--quiet"], capture_output=True, text=True)
    # (Some wrappers of the compose binary lose its exit status; the message is what the user sees.)
    assert "missing a value" in failed.stderr and ".env.example" in failed.stderr, failed.stderr
    assert any(name in failed.stderr for name in REQUIRED)


# --- the documentation ---------------------------------------------------------------------------------------------

def test_the_deployment_guide_covers_the_steps():
    text = DEPLOYMENT_DOC.read_text()
    for needle in ("cp .env.example .env", "docker compose up -d", EVENTS_PATH, "mc alias set",
                   "aws --endpoint-url", "rclone", "sqlite3", ".backup", "mc mirror", "docker compose pull",
                   "/dropbox/v1/users", "/dropbox/v1/tokens", "/dropbox/v1/files"):
        assert needle in text, f"README.md's deployment section does not mention {needle!r}"
    for port in DEFAULT_PORTS.values():
        assert f":{port}" in text


# --- presigned uploads behind compose, against the real store ------------------------------------------------------

async def test_presigned_upload_for_the_public_host_is_accepted_there(store, tmp_path):
    """The gateway reaches the store as one host (http://minio:9000 in compose) while clients use
    another (http://localhost:9000): the upload URL must be signed for the clients' host, and the
    store must accept it when it arrives there. Here: 127.0.0.1 inside, localhost outside."""
    public = f"http://localhost:{store.s3_port}"
    config = gateway_config(store, tmp_path / "gateway.sqlite3", free_port(), s3_public_endpoint=public)
    assert config.presign_endpoint == public
    s3 = make_store(config)
    key = f"deploy-test/{secrets.token_hex(8)}"
    data = secrets.token_bytes(64 * 1024)
    sha256_b64 = base64.b64encode(hashlib.sha256(data).digest()).decode()
    upload_id = await s3.start_multipart(key)
    try:
        [request] = await s3.presign_upload_parts(key, upload_id, [(1, sha256_b64)], expires=300)
        assert urlsplit(request.url).netloc == f"localhost:{store.s3_port}"
        internal_url = request.url.replace(f"//localhost:{store.s3_port}/", f"//127.0.0.1:{store.s3_port}/", 1)
        async with aiohttp.ClientSession() as http:
            # The same request at the gateway's own address fails: the host is part of the signature.
            async with http.request(request.method, URL(internal_url, encoded=True), data=data,
                                    headers=request.headers) as resp:
                assert resp.status == 403, await resp.text()
            async with http.request(request.method, URL(request.url, encoded=True), data=data,
                                    headers=request.headers) as resp:
                assert resp.status == 200, await resp.text()
            # Other bytes under the same URL are refused: the signed checksum holds at the public host too.
            async with http.request(request.method, URL(request.url, encoded=True), data=data[::-1],
                                    headers=request.headers) as resp:
                assert resp.status == 400, await resp.text()

            parts = await s3.list_parts(key, upload_id)
            assert [(p.part_number, p.size) for p in parts] == [(1, len(data))]
            await s3.complete_multipart(key, upload_id, [CompletedPart(1, parts[0].etag, sha256_b64)])
            upload_id = None

            # The CDN tier's origin request is signed for the internal address, and works there.
            origin = s3.presign_get(key, 60)
            assert urlsplit(origin).netloc == urlsplit(store.endpoint).netloc
            async with http.get(URL(origin, encoded=True)) as resp:
                assert resp.status == 200
                assert await resp.read() == data
    finally:
        if upload_id is not None:
            await s3.abort_multipart(key, upload_id)
        await s3.delete(key)

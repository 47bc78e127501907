"""docker-compose.scale.yml, checked where it can be without a Docker engine.

The file wires distributed MinIO, its balancer, PostgreSQL, Redis, gateway replicas,
their load balancer and the CDN tier together by name (services, ports, the events
endpoint, passwords in URLs). These tests read it with the helpers of
tests/test_deploy.py and check that every name points at something that exists and
agrees; the nginx configurations it mounts go through a real `nginx -t`, and the Redis
command runs against a real redis-server.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from ipaddress import ip_address, ip_network
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import redis
import yaml
from aiohttp.test_utils import make_mocked_request

from cdn.nginx import nginx_binary, render
from deploy.balancer import COMPOSE_UPSTREAM_PATH, TEMPLATE_PATH, main_config, upstream_block
from gateway.config import Config
from gateway.http.client_address import client_address
from storage.embedded import free_port
from tests.test_deploy import (
    COMPOSE_FILE, EVENTS_PATH, INIT_SCRIPT, MINIO_DOCKERFILE, REQUIRED, ROOT, SCALE_COMPOSE_FILE, SCALE_SECRETS, VARIABLE,
    bind_mounts, compose_command, environment, filled_env, init_script_code, named_volume_mounts, port_mappings,
    read_env_example, resolved, variables_in, webhook_ids,
)

MINIO_NODES = ["minio1", "minio2", "minio3", "minio4"]
LONG_RUNNING = {*MINIO_NODES, "s3", "postgres", "redis", "gateway", "lb", "cdn"}
MINIO_RELEASE = "RELEASE.2025-10-15T17-29-55Z"
S3_LB_CONF = ROOT / "deploy" / "s3-lb.conf"
# Published on the host: the three public addresses, and one console on the loopback.
PUBLISHED = {"lb": [("8080", 8080)], "s3": [("9000", 9000)], "cdn": [("8081", 8081)], "minio1": [("127.0.0.1:9001", 9001)]}


def without_messages(value: str) -> str:
    """A value with its ${NAME:?message} messages left out: the two files point readers to different sections."""
    return VARIABLE.sub(lambda m: "${" + m["name"] + (m["op"] or "") + ("" if m["op"] in (":?", "?") else m["arg"] or "") + "}",
                        value)


def load() -> dict:
    return yaml.safe_load(SCALE_COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dotenv() -> dict[str, str]:
    return filled_env()


@pytest.fixture(scope="module")
def env(compose, dotenv) -> dict[str, dict[str, str]]:
    return resolved(compose, dotenv)


def depends(service: dict) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {name: "service_started" for name in raw}
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def expand_ellipsis(text: str) -> list[str]:
    """MinIO's {1...4} notation."""
    match = re.search(r"\{(\d+)\.\.\.(\d+)\}", text)
    if not match:
        return [text]
    return [
        expanded
        for n in range(int(match[1]), int(match[2]) + 1)
        for expanded in expand_ellipsis(text[: match.start()] + str(n) + text[match.end():])
    ]


def nginx_check(directory: Path, http_files: dict[str, str]) -> subprocess.CompletedProcess:
    """`nginx -t` on http-level files, wrapped the way deploy/balancer.py wraps its own."""
    for name, text in http_files.items():
        (directory / name).write_text(text)
    main = main_config(directory, "1").replace(
        f"    include {directory / 'upstream.conf'};\n    include {directory / 'lb.conf'};\n",
        "".join(f"    include {directory / name};\n" for name in http_files),
    )
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / "temp" / name).mkdir(parents=True, exist_ok=True)
    (directory / "nginx.conf").write_text(main)
    return subprocess.run([nginx_binary(), "-t", "-p", str(directory), "-c", str(directory / "nginx.conf"),
                           "-e", "stderr"], capture_output=True, text=True)


def nginx_version() -> tuple[int, ...]:
    out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True).stderr
    return tuple(int(part) for part in re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out).groups())


def for_old_nginx(text: str, names: list[str]) -> str:
    """The same configuration without `resolve` (nginx 1.27.3+) and with the compose names on the loopback,
    so the local nginx can check the rest of it."""
    text = text.replace(" resolve ", " ")
    for name in names:
        text = re.sub(rf"\bserver {re.escape(name)}:", "server 127.0.0.1:", text)
    return text


# --- services, start order, health ---------------------------------------------------------------------

def test_the_services_are_there(services):
    assert LONG_RUNNING | {"minio-init"} == set(services)
    for name in LONG_RUNNING:
        assert services[name].get("restart") in ("unless-stopped", "always"), f"{name} is not restarted"
    assert services["minio-init"].get("restart", "no") == "no"


def test_every_service_has_a_healthcheck_and_starts_after_what_it_needs(services):
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert "curl" not in json.dumps(check["test"]), f"{name}: the alpine and slim images have no curl"
    expected = {
        "s3": {node: "service_healthy" for node in MINIO_NODES},
        "minio-init": {"s3": "service_healthy"},
        "gateway": {"postgres": "service_healthy", "redis": "service_healthy", "s3": "service_healthy",
                    "minio-init": "service_completed_successfully"},
        "lb": {"gateway": "service_healthy"},
        "cdn": {"s3": "service_healthy", "minio-init": "service_completed_successfully"},
    }
    for name, wanted in expected.items():
        assert depends(services[name]) == wanted, name
    # Every dependency exists, and there is a start order (no cycle).
    order, todo = [], {name: set(depends(svc)) for name, svc in services.items()}
    assert set().union(*todo.values()) <= set(services)
    while todo:
        ready = sorted(name for name, needs in todo.items() if needs <= set(order))
        assert ready, f"a dependency cycle among {sorted(todo)}"
        order += ready
        for name in ready:
            del todo[name]


def test_images_are_pinned_and_minio_is_built_from_the_fixed_release(services):
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name} names no image"
        repository, _, tag = image.split("@")[0].rpartition(":")
        assert repository and tag and "/" not in tag and tag != "latest", f"{name}: {image} is not pinned"
    for node in MINIO_NODES:
        build = services[node]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == MINIO_DOCKERFILE
        assert services[node]["image"] == f"dropbox-minio:{MINIO_RELEASE}"
    # docker-compose.yml runs the same MinIO.
    single = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["minio"]
    assert single["image"] == services["minio1"]["image"] and single["build"] == services["minio1"]["build"]
    # nginx's `resolve` (deploy/lb-upstream.conf, deploy/s3-lb.conf) is in open-source nginx since 1.27.3.
    for name in ("s3", "lb", "cdn"):
        major, minor = (int(x) for x in re.match(r"nginx:(\d+)\.(\d+)", services[name]["image"]).groups())
        assert (major, minor) >= (1, 28), services[name]["image"]


def test_the_minio_dockerfile_builds_the_pinned_release_from_source():
    text = MINIO_DOCKERFILE.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", code, re.M))
    assert args["MINIO_RELEASE"] == MINIO_RELEASE
    assert re.fullmatch(r"[0-9a-f]{40}", args["MINIO_COMMIT"]), "the release's commit is pinned too"
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", code, re.M)
    assert len(stages) == 2, stages
    (builder, builder_name), (final, _) = stages
    assert re.fullmatch(r"golang:\d+\.\d+\.\d+-\w+", builder), f"the Go toolchain is pinned to a patch release: {builder}"
    assert re.fullmatch(r"alpine:\d+\.\d+(\.\d+)?", final), final
    assert 'git clone --depth 1 --branch "${MINIO_RELEASE}" https://github.com/minio/minio.git' in code
    assert 'test "$(git -C /src rev-parse HEAD)" = "${MINIO_COMMIT}"' in code, "the tag's commit is checked"
    assert "GOTOOLCHAIN=local" in code and "CGO_ENABLED=0" in code
    assert "gen-ldflags.go" in code and "-tags kqueue" in code
    assert f"COPY --from={builder_name} /out/minio /usr/bin/minio" in code
    assert not re.search(r"^ADD ", code, re.M)
    user = re.findall(r"^USER (\S+)$", code, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "/minio/health/live" in code
    # The gen-ldflags version argument is the release time with colons, as MinIO's own build passes it.
    version = subprocess.run(
        ["sh", "-c", 'echo "${1#RELEASE.}" | sed -E \'s/T([0-9]{2})-([0-9]{2})-([0-9]{2})Z$/T\\1:\\2:\\3Z/\'', "-",
         MINIO_RELEASE], capture_output=True, text=True, check=True).stdout.strip()
    assert version == "2025-10-15T17:29:55Z"
    assert "sed -E 's/T([0-9]{2})-([0-9]{2})-([0-9]{2})Z$/T\\1:\\2:\\3Z/'" in code


# --- MinIO: distributed, erasure-coded, events to the load balancer ---------------------------------------

def test_minio_runs_distributed_over_four_nodes_with_a_drive_each(services, env):
    drives = []
    for node in MINIO_NODES:
        command = services[node]["command"]
        assert command[0] == "server"
        endpoints = [e for word in command[1:] if word.startswith("http") for e in expand_ellipsis(word)]
        assert [urlsplit(e).hostname for e in endpoints] == MINIO_NODES, "every node lists every node"
        assert {urlsplit(e).port for e in endpoints} == {9000}
        data = {urlsplit(e).path for e in endpoints}
        assert len(data) == 1 and named_volume_mounts(services[node]).get(data.pop()), f"{node}: its drive is not a volume"
        drives.append(named_volume_mounts(services[node])["/data"])
        # Every node is configured alike (MinIO wants that), and the first node's view is everyone's.
        assert env[node] == env["minio1"], f"{node} is configured differently"
    assert len(set(drives)) == 4, "each node has a drive of its own: 4 drives, an erasure set"


def test_every_node_posts_its_events_to_the_load_balancer(services, env):
    lb_port = int(env["lb"]["LB_LISTEN"])
    for node in MINIO_NODES:
        ids = webhook_ids(env[node])
        assert ids == ["GATEWAY"]
        endpoint = urlsplit(env[node]["MINIO_NOTIFY_WEBHOOK_ENDPOINT_GATEWAY"])
        assert (endpoint.hostname, endpoint.port, endpoint.path) == ("lb", lb_port, EVENTS_PATH)
        assert env[node]["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_GATEWAY"] == env["gateway"]["GATEWAY_EVENTS_TOKEN"]
        queue = env[node]["MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_GATEWAY"]
        assert queue in named_volume_mounts(services[node]), f"{node}: the event queue is not on a volume"
    # The balancer passes the events on to the gateways, and may repeat them (they are safe to repeat).
    template = TEMPLATE_PATH.read_text()
    events = re.search(r"location \^~ /dropbox/v1/events \{(.*?)\}", template, re.S)
    assert events and "proxy_pass http://gateways;" in events[1] and "non_idempotent" in events[1]
    # The init script binds the bucket's events to that webhook id.
    assert env["minio-init"]["WEBHOOK_ID"] == "GATEWAY"


def test_the_browser_app_may_upload_to_minio(env):
    origin = env["gateway"]["GATEWAY_PUBLIC_URL"]
    parts = urlsplit(origin)
    assert parts.scheme in ("http", "https") and parts.netloc and parts.path in ("", "/")
    for node in MINIO_NODES:
        assert env[node]["MINIO_API_CORS_ALLOW_ORIGIN"] == origin


# --- addresses, ports, volumes ------------------------------------------------------------------------------

def test_only_the_public_addresses_are_published(services):
    published = {name: port_mappings(svc) for name, svc in services.items() if svc.get("ports")}
    assert published == PUBLISHED
    assert "expose" not in services["gateway"] and not services["gateway"].get("ports")
    assert services["gateway"]["deploy"]["replicas"] >= 2


def test_named_volumes_are_declared_and_used(compose, services):
    declared = set(compose.get("volumes") or {})
    used = [volume for svc in services.values() for volume in named_volume_mounts(svc).values()]
    assert set(used) == declared
    assert len(used) == len(set(used)), "two services share a volume"
    assert named_volume_mounts(services["postgres"]).get("/var/lib/postgresql/data")


def test_the_gateways_reach_everything_by_service_name(services, env, dotenv):
    gateway = env["gateway"]
    config = Config.from_env(gateway)
    assert (config.host, config.port) == ("0.0.0.0", 8080)
    assert urlsplit(config.s3_endpoint).netloc == "s3:9000" and 9000 in {c for _, c in port_mappings(services["s3"])}
    assert urlsplit(config.presign_endpoint).port == 9000 and urlsplit(config.presign_endpoint).hostname != "s3"
    assert config.store_part_events is False
    cache = urlsplit(config.cache_url)
    assert (cache.scheme, cache.hostname, cache.port) == ("redis", "redis", 6379)
    assert unquote(cache.password) == dotenv["REDIS_PASSWORD"] == env["redis"]["REDISCLI_AUTH"]
    database = urlsplit(gateway["GATEWAY_DATABASE_URL"])
    postgres = env["postgres"]
    assert (database.scheme, database.hostname, database.port) == ("postgresql", "postgres", 5432)
    assert database.username == postgres["POSTGRES_USER"] and database.path == "/" + postgres["POSTGRES_DB"]
    assert unquote(database.password) == postgres["POSTGRES_PASSWORD"] == dotenv["POSTGRES_PASSWORD"]
    # The CDN tier and the init script reach the store where the gateway does.
    assert env["cdn"]["CDN_STORE_HOST"] == urlsplit(config.s3_endpoint).netloc
    assert urlsplit(env["minio-init"]["MINIO_URL"]).netloc == urlsplit(config.s3_endpoint).netloc
    assert env["cdn"]["GATEWAY_CDN_SECRET"] == gateway["GATEWAY_CDN_SECRET"]
    for name in ("GATEWAY_S3_ACCESS_KEY", "GATEWAY_S3_SECRET_KEY"):
        assert env["minio-init"][name] == gateway[name]
    for name in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert env["minio-init"][name] == env["minio1"][name] and name not in gateway


def test_the_gateways_see_each_client_through_the_balancer_and_no_client_can_choose_its_address(compose, services, env):
    """Behind `lb` a gateway's peer is the balancer: without GATEWAY_TRUSTED_PROXIES every client had its
    address for the login slow-down. The gateways trust the addresses of the containers, all on the one
    network whose addresses the file fixes, and not the bridge's own (published ports' proxy and NAT)."""
    assert all("networks" not in svc for svc in services.values()), "every service is on the default network"
    (ipam,) = compose["networks"]["default"]["ipam"]["config"]
    subnet, containers, bridge = ip_network(ipam["subnet"]), ip_network(ipam["ip_range"]), ip_address(ipam["gateway"])
    assert containers.subnet_of(subnet) and bridge in subnet and bridge not in containers
    trusted = Config.from_env(env["gateway"]).trusted_proxy_networks
    assert trusted == (containers,)

    lb = str(containers[10])  # whichever address the balancer got

    def client(forwarded: str) -> str:
        request = make_mocked_request("POST", "/dropbox/v1/tokens", headers={"X-Forwarded-For": forwarded})
        request._transport_peername = (lb, 40000)  # noqa: SLF001 - what aiohttp reads request.remote from
        return client_address(request, trusted)

    # lb appends the address it sees ($proxy_add_x_forwarded_for) to what the client sent.
    assert "$proxy_add_x_forwarded_for" in TEMPLATE_PATH.read_text()
    assert client("203.0.113.7") == "203.0.113.7"
    assert client("198.51.100.1, 203.0.113.7") == "203.0.113.7", "what the client wrote is not believed"
    assert client(f"198.51.100.1, {bridge}") == str(bridge), "nor when it came through Docker's proxy"
    assert client(f"203.0.113.7, {containers[20]}") == "203.0.113.7", "a MinIO node's event: the node passes"


@pytest.mark.xfail("database_url" not in Config.__dataclass_fields__, strict=True,
                   reason="GATEWAY_DATABASE_URL is a gateway setting once branch core is merged")
def test_every_gateway_variable_is_a_gateway_setting(services):
    fields = set(Config.__dataclass_fields__)
    for name, svc in services.items():
        for key in environment(svc):
            if key.startswith("GATEWAY_"):
                assert key.removeprefix("GATEWAY_").lower() in fields, f"{name}: {key} is not in gateway/config.py"


def test_no_secret_is_written_into_the_file(compose):
    text = SCALE_COMPOSE_FILE.read_text()
    assert not re.search(r"[0-9a-fA-F]{20,}", text), "a key-like literal in the file"
    for match in variables_in(text):
        if match["name"] in REQUIRED | SCALE_SECRETS:
            assert match["op"] == ":?" and match["arg"].strip(), f"${{{match['name']}}} must be ${{NAME:?message}}"
    for name, svc in compose["services"].items():
        for key, value in environment(svc).items():
            if re.search(r"SECRET|PASSWORD|TOKEN|AUTH|DATABASE_URL|CACHE_URL", key):
                assert variables_in(value), f"{name}: {key} holds a literal value"
    env = filled_env()
    for name in sorted(REQUIRED | SCALE_SECRETS):
        with pytest.raises(KeyError, match=name):
            resolved(compose, {**env, name: ""})


# --- the balancers' nginx configurations -------------------------------------------------------------------

def test_the_load_balancer_renders_the_shared_template_and_nginx_accepts_it(services, env, tmp_path):
    lb = services["lb"]
    mounts = {target: (ROOT / source).resolve() for target, source in bind_mounts(lb).items()}
    template_target = next(t for t, source in mounts.items() if source == TEMPLATE_PATH)
    assert template_target.startswith("/etc/nginx/templates/") and template_target.endswith(".conf.template")
    upstream_target = next(t for t, source in mounts.items() if source == COMPOSE_UPSTREAM_PATH)
    assert upstream_target.startswith("/etc/nginx/conf.d/") and upstream_target.endswith(".conf")
    # envsubst fills in what the container has; everything the template asks for is there.
    values = env["lb"]
    rendered = render(values, TEMPLATE_PATH.read_text())
    assert int(values["LB_LISTEN"]) in {container for _, container in port_mappings(lb)}
    # The compose upstream: the gateway service's replicas on the gateway's port, followed through DNS.
    upstream = COMPOSE_UPSTREAM_PATH.read_text()
    assert re.search(rf"server gateway:{env['gateway']['GATEWAY_PORT']} resolve\b", upstream)
    assert "zone gateways" in upstream and "resolver 127.0.0.11" in upstream
    if nginx_version() < (1, 27, 3):
        upstream = for_old_nginx(upstream, ["gateway"])
    checked = nginx_check(tmp_path, {"upstream.conf": upstream, "lb.conf": rendered})
    assert checked.returncode == 0, checked.stderr


def test_the_s3_balancer_spreads_over_the_four_nodes(services, tmp_path):
    mounts = {target: (ROOT / source).resolve() for target, source in bind_mounts(services["s3"]).items()}
    assert mounts == {"/etc/nginx/conf.d/default.conf": S3_LB_CONF}
    text = S3_LB_CONF.read_text()
    assert re.findall(r"server (minio\d):9000 resolve", text) == MINIO_NODES
    assert re.search(r"listen 9000;", text)
    # Presigned URLs are signed for the Host the client used: passed on as it came.
    assert "proxy_set_header Host $http_host;" in text
    assert "proxy_request_buffering off;" in text and "client_max_body_size 0;" in text
    if nginx_version() < (1, 27, 3):
        text = for_old_nginx(text, MINIO_NODES)
    checked = nginx_check(tmp_path, {"s3.conf": text.replace("listen 9000;", f"listen 127.0.0.1:{free_port()};")})
    assert checked.returncode == 0, checked.stderr


def test_the_local_cluster_and_compose_share_the_balancers_policy():
    # deploy/balancer.py's own upstream is the compose one with addresses instead of the service name.
    local = upstream_block([8090, 8091])
    for directive in ("zone gateways 64k;", "max_fails=1", "fail_timeout=10s", "keepalive 16;"):
        assert directive in local and directive in COMPOSE_UPSTREAM_PATH.read_text()


# --- in step with docker-compose.yml -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cdn", "minio-init"])
def test_the_shared_services_match_the_single_machine_file(name, services):
    """The CDN tier and the init script run as in docker-compose.yml, with only the store's address changed:
    a change to one file's service that the other misses fails here."""
    single = yaml.safe_load(COMPOSE_FILE.read_text())["services"][name]
    scale = services[name]
    assert scale["image"] == single["image"]
    assert scale.get("entrypoint") == single.get("entrypoint")
    assert set(environment(scale)) == set(environment(single))
    single_env, scale_env = environment(single), environment(scale)
    different = {key for key in single_env if without_messages(single_env[key]) != without_messages(scale_env[key])}
    assert different <= {"CDN_STORE_HOST", "MINIO_URL"}, different
    assert bind_mounts(scale) == bind_mounts(single)
    assert named_volume_mounts(scale) == named_volume_mounts(single)
    assert port_mappings(scale) == port_mappings(single)
    if name == "minio-init":
        needed = set(re.findall(r': "\$\{([A-Z][A-Z0-9_]*):\?', init_script_code()))
        assert needed <= set(environment(scale)) and (ROOT / "deploy" / "minio-init.sh") == INIT_SCRIPT


def test_the_minio_nodes_match_the_single_machine_minio(services):
    single = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["minio"]
    single_env = environment(single)
    node_env = environment(services["minio1"])
    assert set(node_env) - set(single_env) <= {"MINIO_API_CORS_ALLOW_ORIGIN"}
    assert set(single_env) - set(node_env) <= {"MINIO_API_CORS_ALLOW_ORIGIN"}
    for key in set(single_env) & set(node_env) - {"MINIO_NOTIFY_WEBHOOK_ENDPOINT_GATEWAY"}:
        assert without_messages(node_env[key]) == without_messages(single_env[key]), key


# --- Redis keeps its password off the command line -----------------------------------------------------------

@pytest.mark.real  # runs redis-server as compose would
def test_the_redis_command_asks_for_the_password_and_keeps_it_off_the_command_line(services, tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: ./dev test installs it")
    svc = services["redis"]
    assert svc["entrypoint"] == ["/bin/sh", "-c"] and svc.get("user") == "redis"
    script = svc["command"][0].replace("$$", "$")  # compose's escape for a literal $
    assert "/tmp/redis.conf" in script
    port = free_port()
    script = script.replace("/tmp/redis.conf", shlex.quote(str(tmp_path / "redis.conf")))
    script = script.replace("exec redis-server", f"exec {binary}") + f" --port {port} --bind 127.0.0.1 --dir {tmp_path}"
    password = "p" + os.urandom(16).hex()
    process = subprocess.Popen(["/bin/sh", "-c", script], env={"REDISCLI_AUTH": password, "PATH": os.environ["PATH"]},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password=password)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, "redis did not start"
                time.sleep(0.05)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        assert password not in Path(f"/proc/{process.pid}/cmdline").read_text()
        assert (tmp_path / "redis.conf").stat().st_mode & 0o077 == 0
    finally:
        process.terminate()
        process.wait(10)


# --- documentation and docker compose itself -------------------------------------------------------------------

def test_the_readme_explains_the_scale_deployment():
    text = (ROOT / "README.md").read_text()
    for needle in ("docker compose -f docker-compose.scale.yml up -d", MINIO_RELEASE, "CVE-2025-62506",
                   "deploy/minio.Dockerfile", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "/metrics"):
        assert needle in text, f"README.md does not mention {needle!r}"


def test_docker_compose_accepts_the_file(tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose v2 here")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in filled_env().items()))
    ok = subprocess.run([*command, "--project-directory", str(ROOT), "-f", str(SCALE_COMPOSE_FILE), "--env-file",
                         str(env_file), "config", "--quiet"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    partial = tmp_path / "partial.env"
    partial.write_text("".join(f"{k}={v}\n" for k, v in read_env_example().items()))
    failed = subprocess.run([*command, "--project-directory", str(ROOT), "-f", str(SCALE_COMPOSE_FILE), "--env-file",
                             str(partial), "config", "--quiet"], capture_output=True, text=True)
    assert "missing a value" in failed.stderr

"""The OpenAPI document (gateway/openapi.json): well formed, true to the app's routes, served.

The document is written by hand, so these tests are what keeps it and the code
from drifting apart: every route the app registers is documented with the same
method and path template, nothing else is, and the routes that need no access
token are exactly the ones the document marks so.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest

import gateway
from gateway.http.app import create_app
from gateway.config import Config
from gateway.http.routes.links import link_json
from gateway.http.parsing import FILE_ID_PATTERN, OWN_CURSOR, SHARED_CURSOR
from gateway.core.changes import CURSOR as CHANGES_CURSOR
from gateway.http.routes.openapi import with_settings
from gateway.http.views import file_json, listed_file_json
from gateway.http.routes import webapp

DOCUMENT_PATH = Path(gateway.__file__).parent / "openapi.json"
SERVED_AT = "/dropbox/v1/openapi.json"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
PATH_ITEM_KEYS = HTTP_METHODS | {"$ref", "summary", "description", "servers", "parameters"}
JSON_SCHEMA_TYPES = {"null", "boolean", "object", "array", "number", "string", "integer"}
ERROR_REF = "#/components/schemas/Error"
# The store's webhooks authenticate with the gateway's events token, not an access token.
EVENTS_TOKEN_ONLY = [{"eventsToken": []}]

# Pages for people (the shared link page and its stylesheet): they answer HTML (or CSS), errors too.
PAGES = {"/s/{token}"}
PAGE_MEDIA = {"text/html", "text/css"}
# Answers that are files, not JSON (their errors are JSON as everywhere).
FILE_ANSWERS = {("/dropbox/v1/zips/{ticket}", "200"): "application/zip"}

# Status codes the contract (shared/api-contract.md) and the handlers' tests fix for each operation;
# the document must list at least these.
CONTRACT_STATUSES = {
    ("post", "/dropbox/v1/users"): {"201", "400", "409"},
    ("post", "/dropbox/v1/tokens"): {"200", "400", "401", "429"},
    ("get", "/dropbox/v1/users/me"): {"200", "401"},
    ("delete", "/dropbox/v1/tokens/current"): {"204", "401"},
    ("post", "/dropbox/v1/tokens/current/renew"): {"200", "401"},
    ("get", "/dropbox/v1/files/{file_id}/shares"): {"200", "401", "404"},
    ("put", "/dropbox/v1/users/me/password"): {"204", "400", "401", "403", "429"},
    ("get", "/dropbox/v1/config"): {"200"},
    ("get", "/dropbox/v1/openapi.json"): {"200"},
    ("post", "/dropbox/v1/files"): {"200", "201", "400", "401", "403", "413", "429", "503"},
    ("get", "/dropbox/v1/files"): {"200", "400", "401"},
    ("post", "/dropbox/v1/files/{file_id}/upload-urls"): {"200", "400", "401", "404", "409"},
    ("post", "/dropbox/v1/files/{file_id}/complete"): {"200", "401", "404", "409", "422", "503"},
    ("get", "/dropbox/v1/files/shared"): {"200", "401"},
    ("get", "/dropbox/v1/files/{file_id}"): {"200", "401", "404"},
    ("get", "/dropbox/v1/files/{file_id}/content"): {"302", "401", "404", "409"},
    ("delete", "/dropbox/v1/files/{file_id}"): {"204", "401", "404"},
    ("post", "/dropbox/v1/files/share"): {"200", "400", "401", "404", "429"},
    ("delete", "/dropbox/v1/files/{file_id}/shares/{username}"): {"204", "401", "404", "429"},
    ("post", "/dropbox/v1/events"): {"200", "400", "401"},
    ("post", "/dropbox/v1/events/seaweedfs"): {"200", "400", "401"},
    ("get", "/healthz"): {"200"},
    ("get", "/readyz"): {"200", "503"},
    ("post", "/dropbox/v1/files/{file_id}/links"): {"201", "400", "401", "404", "409"},
    ("get", "/dropbox/v1/files/{file_id}/links"): {"200", "401", "404"},
    ("delete", "/dropbox/v1/links/{link}"): {"204", "401", "404"},
    ("get", "/dropbox/v1/links/{link}"): {"200", "404", "410"},
    ("post", "/dropbox/v1/links/{token}/download"): {"200", "401", "403", "404", "410", "429"},
    ("get", "/s/{token}"): {"200", "404", "410"},
    ("post", "/s/{token}"): {"303", "400", "401", "403", "404", "410", "429"},
    # v1.2: the tree.
    ("post", "/dropbox/v1/folders"): {"200", "201", "400", "401", "404", "409"},
    ("get", "/dropbox/v1/folders/{folder_id}"): {"200", "401", "404"},
    ("patch", "/dropbox/v1/folders/{folder_id}"): {"200", "400", "401", "404", "409"},
    ("delete", "/dropbox/v1/folders/{folder_id}"): {"204", "400", "401", "404"},
    ("get", "/dropbox/v1/folders/{folder_id}/entries"): {"200", "400", "401", "404"},
    ("get", "/dropbox/v1/metadata"): {"200", "400", "401", "404"},
    ("patch", "/dropbox/v1/files/{file_id}"): {"200", "400", "401", "404", "409"},
    ("post", "/dropbox/v1/files/{file_id}/copy"): {"201", "400", "401", "403", "404", "409"},
    ("get", "/dropbox/v1/files/{file_id}/versions"): {"200", "401", "404"},
    ("post", "/dropbox/v1/files/{file_id}/restore"): {"200", "401", "404", "409"},
    ("get", "/dropbox/v1/trash"): {"200", "400", "401"},
    ("post", "/dropbox/v1/trash/{id}/restore"): {"200", "401", "404"},
    ("delete", "/dropbox/v1/trash/{id}"): {"204", "401", "404"},
    ("get", "/dropbox/v1/changes"): {"200", "400", "401", "410"},
    ("get", "/dropbox/v1/changes/wait"): {"200", "400", "401", "410"},
    ("get", "/dropbox/v1/search"): {"200", "400", "401"},
    # Beyond the contract: zips (tests/test_zips.py).
    ("post", "/dropbox/v1/zips"): {"200", "400", "401", "404", "409", "413"},
    ("get", "/dropbox/v1/zips/{ticket}"): {"200", "403", "404", "413"},
    # Beyond the contract: many small files in one request (tests/test_batches.py).
    ("post", "/dropbox/v1/files/batch"): {"200", "400", "401", "413"},
}


def load_document() -> dict:
    def no_duplicate_keys(pairs: list) -> dict:
        keys = [key for key, _ in pairs]
        duplicates = {key for key in keys if keys.count(key) > 1}
        assert not duplicates, f"duplicate keys in {DOCUMENT_PATH.name}: {sorted(duplicates)}"
        return dict(pairs)

    return json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"), object_pairs_hook=no_duplicate_keys)


@pytest.fixture(scope="module")
def document() -> dict:
    return load_document()


def resolve(document: dict, node):
    """Follow local ``$ref``s until a node that is not a reference."""
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are used: {ref}"
        assert ref not in seen, f"reference loop at {ref}"
        seen.add(ref)
        node = document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(node, dict) and part in node, f"unresolvable reference {ref}"
            node = node[part]
    return node


def operations(document: dict):
    """(method, path, path item, operation) for every operation in the document."""
    for path, item in document["paths"].items():
        for method in sorted(HTTP_METHODS & item.keys()):
            yield method, path, item, item[method]


def app_routes() -> dict[tuple[str, str], object]:
    """(method, path template) -> handler for every route the real app registers.

    aiohttp adds a HEAD route next to every GET; those duplicates are left out
    (the document says once that every GET answers HEAD too).
    """
    app = create_app(Config())
    # The web app's page and files (gateway/http/routes/webapp.py) are for browsers, not the JSON API.
    web_app = {route.handler for route in webapp.routes}
    routes = [route for route in app.router.routes() if route.handler not in web_app]
    gets = {route.resource.canonical for route in routes if route.method == "GET"}
    found = {}
    for route in routes:
        path = route.resource.canonical
        if route.method == "HEAD" and path in gets:
            continue
        key = (route.method.lower(), path)
        assert key not in found, f"{key} is registered twice"
        found[key] = route.handler
    return found


def needs_access_token(document: dict, operation: dict) -> bool:
    security = operation.get("security", document.get("security", []))
    return any("bearerAuth" in requirement for requirement in security)


# -- The document is OpenAPI 3.1 shaped ------------------------------------------------------------


def test_the_document_is_openapi_3_1(document):
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    assert document["info"]["title"] and isinstance(document["info"]["title"], str)
    assert document["info"]["version"] and isinstance(document["info"]["version"], str)
    assert document["paths"] and isinstance(document["paths"], dict)
    assert set(document) <= {
        "openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks", "components", "security", "tags",
        "externalDocs",
    }
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["eventsToken"]["type"] == "http" and schemes["eventsToken"]["scheme"] == "bearer"
    assert document["security"] == [{"bearerAuth": []}], "an access token is needed unless an operation says otherwise"


def test_every_reference_resolves(document):
    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(document, node)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}/{index}")

    walk(document, "#")


def test_paths_and_operations_are_well_formed(document):
    operation_ids = []
    tags = {tag["name"] for tag in document.get("tags", [])}
    schemes = document["components"]["securitySchemes"]
    for path, item in document["paths"].items():
        assert path.startswith("/"), path
        assert set(item) <= PATH_ITEM_KEYS, (path, set(item) - PATH_ITEM_KEYS)
    for method, path, item, operation in operations(document):
        where = f"{method.upper()} {path}"
        operation_ids.append(operation["operationId"])
        assert operation.get("summary"), where
        assert set(operation.get("tags", [])) <= tags, where
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), where
        # Path parameters: exactly the template's names, each required.
        declared = [resolve(document, p) for p in item.get("parameters", []) + operation.get("parameters", [])]
        for parameter in declared:
            assert parameter["in"] in {"path", "query", "header", "cookie"}, where
            assert "schema" in parameter or "content" in parameter, where
        in_path = {p["name"] for p in declared if p["in"] == "path"}
        assert in_path == set(re.findall(r"\{([^}/]+)\}", path)), where
        assert all(p["required"] is True for p in declared if p["in"] == "path"), where
        if "requestBody" in operation:
            body = resolve(document, operation["requestBody"])
            assert body["content"], where
            for media in body["content"].values():
                assert "schema" in media, where
        # Responses: status codes, a description each, the contract's error body for every error.
        responses = operation["responses"]
        assert responses, where
        for status, response in responses.items():
            assert re.fullmatch(r"[1-5](\d\d|XX)|default", status), (where, status)
            response = resolve(document, response)
            assert response["description"], (where, status)
            content = response.get("content", {})
            if path in PAGES and content:
                assert set(content) <= PAGE_MEDIA, (where, status, "pages answer HTML, errors too")
            elif status.startswith(("4", "5")):
                schema = content["application/json"]["schema"]
                assert schema.get("$ref") == ERROR_REF or any(
                    part.get("$ref") == ERROR_REF for part in resolve(document, schema).get("allOf", [])
                ), (where, status, "error answers have the contract's error body")
            elif (path, status) in FILE_ANSWERS:
                assert set(content) == {FILE_ANSWERS[path, status]}, (where, status)
            elif status.startswith("2") and status != "204":
                assert content["application/json"]["schema"], (where, status)
            else:
                assert not content, (where, status, "no body")
    assert len(operation_ids) == len(set(operation_ids)), "operationIds are unique"


def test_schemas_are_consistent(document):
    def check(schema, where: str) -> None:
        if isinstance(schema, dict) and "$ref" not in schema:
            types = schema.get("type", [])
            assert set([types] if isinstance(types, str) else types) <= JSON_SCHEMA_TYPES, where
            if "required" in schema and "properties" in schema:
                missing = set(schema["required"]) - set(schema["properties"])
                assert not missing, (where, "required but not described", missing)
            for name, sub in schema.get("properties", {}).items():
                check(sub, f"{where}.{name}")
            for key in ("items", "additionalProperties"):
                if isinstance(schema.get(key), dict):
                    check(schema[key], f"{where}.{key}")
            for key in ("allOf", "anyOf", "oneOf"):
                for index, sub in enumerate(schema.get(key, [])):
                    check(sub, f"{where}.{key}[{index}]")

    for name, schema in document["components"]["schemas"].items():
        check(schema, name)


def test_the_schemas_have_the_contracts_fields(document):
    schemas = document["components"]["schemas"]
    assert set(schemas["User"]["required"]) == {"user_id", "username", "email"}
    assert set(schemas["Me"]["required"]) == {"user_id", "username", "email", "quota_bytes", "used_bytes"}
    assert set(schemas["Token"]["required"]) == {"access_token", "token_type", "expires_in"}
    assert set(schemas["Config"]["required"]) == {
        "chunk_size", "max_file_size", "inline_upload_limit", "upload_url_ttl", "download_url_ttl",
        "trash_retention", "version_retention",
    }
    assert set(schemas["Folder"]["required"]) == {
        "type", "folder_id", "name", "path", "parent_id", "created_at", "modified_at"}
    assert {"type", "name", "path", "parent_id", "modified_at"} <= set(schemas["FileObject"]["required"])
    assert set(schemas["UploadClaim"]["required"]) == {"file_name", "file_size", "fingerprint", "chunk_size", "chunks"}
    assert set(schemas["Chunk"]["required"]) == {"index", "fingerprint", "status"}
    assert set(schemas["FileObject"]["properties"]["status"]["enum"]) == {"uploading", "uploaded", "failed"}
    assert set(schemas["Chunk"]["properties"]["status"]["enum"]) == {"pending", "uploaded"}
    assert schemas["FileList"]["properties"]["next_cursor"]["type"] == ["string", "null"]
    assert set(schemas["UploadUrl"]["required"]) == {"index", "url", "method", "headers", "expires_at"}
    error = schemas["Error"]["properties"]["error"]
    assert set(error["required"]) == {"code", "message"} and "missing" in error["properties"]


def test_the_file_object_schema_matches_file_json(document):
    schema = document["components"]["schemas"]["FileObject"]
    row = {
        "id": "f1", "file_name": "a.txt", "file_size": 3, "file_type": "text/plain", "fingerprint": "0" * 64,
        "owner_name": "alice", "created_at": "2024-01-01T00:00:00.000000Z", "chunk_size": 8, "total_chunks": 1,
        "failure_reason": None, "completed_at": None, "parent_id": "root", "modified_at": "2024-01-01T00:00:00.000000Z",
        "replaced_by": None, "deleted_at": None, "path": "/a.txt",
    }
    chunks = [{"idx": 0, "fingerprint": "1" * 64, "status": "pending"}]
    for status, extra, download in [
        ("uploading", {}, None),
        ("uploaded", {"completed_at": "2024-01-01T00:00:01.000000Z"}, ("https://cdn/c/x/a.txt?sig=s", 1700000000)),
        ("failed", {"failure_reason": "the bytes did not match"}, None),
    ]:
        body = file_json({**row, **extra, "status": status}, chunks, download)
        assert set(schema["required"]) <= set(body), status
        assert set(body) <= set(schema["properties"]), (status, set(body) - set(schema["properties"]))
        chunk_schema = resolve(document, schema["properties"]["chunks"]["items"])
        assert set(body["chunks"][0]) == set(chunk_schema["properties"])
        listed = listed_file_json({**row, **extra, "status": status}, 0, download)
        assert set(schema["required"]) <= set(listed) <= set(schema["properties"]) and "chunks" not in listed, status


def test_the_link_schemas_match_what_the_gateway_answers(document):
    schemas = document["components"]["schemas"]
    config = Config(public_url="https://files.example")
    for password_hash, expires_at in ((None, None), ("scrypt$...", "2030-01-01T00:00:00.000000Z")):
        link = {"id": "l1", "file_id": "f1", "token": "t" * 43, "password_hash": password_hash,
                "expires_at": expires_at, "created_at": "2024-01-01T00:00:00.000000Z", "download_count": 0}
        body = link_json(config, link)
        assert set(body) == set(schemas["Link"]["required"]) == set(schemas["Link"]["properties"])
        assert body["url"] == "https://files.example/s/" + "t" * 43
    assert set(schemas["LinkInfo"]["required"]) == {"file_name", "file_size", "file_type", "expires_at", "has_password"}
    assert set(schemas["LinkDownload"]["required"]) == {"download_url", "expires_at"}
    assert set(schemas["LinkRequest"]["properties"]) == {"expires_in", "password"}


def test_the_document_states_the_formats_the_gateway_parses(document):
    """Patterns the handlers check (gateway/http/parsing.py) are the document's, character for character."""
    parameters = document["components"]["parameters"]
    assert parameters["cursor"]["schema"]["pattern"] == OWN_CURSOR.pattern
    assert parameters["shared_cursor"]["schema"]["pattern"] == SHARED_CURSOR.pattern
    assert parameters["file_id"]["schema"]["pattern"] == f"^{FILE_ID_PATTERN}$"
    assert parameters["changes_cursor"]["schema"]["pattern"] == parameters["wait_cursor"]["schema"]["pattern"] \
        == CHANGES_CURSOR.pattern


# -- The document and the app's routes cannot drift ----------------------------------------------


def test_every_route_of_the_app_is_documented_and_nothing_else():
    document = load_document()
    documented = {(method, path) for method, path, _, _ in operations(document)}
    registered = set(app_routes())
    assert not registered - documented, f"routes missing from {DOCUMENT_PATH.name}: {sorted(registered - documented)}"
    assert not documented - registered, f"documented but not routes of the app: {sorted(documented - registered)}"


def test_public_routes_are_exactly_those_the_document_marks_public(document):
    handlers = app_routes()
    public_in_app = {key for key, handler in handlers.items() if getattr(handler, "public", False)}
    ops = {(method, path): operation for method, path, _, operation in operations(document)}
    without_access_token = {key for key, operation in ops.items() if not needs_access_token(document, operation)}
    assert public_in_app == without_access_token
    marked_public = {key for key, operation in ops.items() if operation.get("security") == []}
    events_token = {key for key, operation in ops.items() if operation.get("security") == EVENTS_TOKEN_ONLY}
    assert events_token == {("post", "/dropbox/v1/events"), ("post", "/dropbox/v1/events/seaweedfs")}
    assert marked_public == public_in_app - events_token
    # The contract's list: sign-up, log-in, configuration, store events, health (and this document).
    assert marked_public == {
        ("post", "/dropbox/v1/users"),
        ("post", "/dropbox/v1/tokens"),
        ("get", "/dropbox/v1/config"),
        ("get", "/dropbox/v1/openapi.json"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        # A shared link's visitors: the token is the credential.
        ("get", "/dropbox/v1/links/{link}"),
        ("post", "/dropbox/v1/links/{token}/download"),
        ("get", "/s/{token}"),
        ("post", "/s/{token}"),
        # A zip's URL: its signed ticket is the credential, as a CDN download URL's signature is.
        ("get", "/dropbox/v1/zips/{ticket}"),
    }
    for key, operation in ops.items():
        if key not in marked_public:
            assert "401" in operation["responses"], f"{key} needs a token, so it answers 401 without one"


def test_each_operation_lists_the_contracts_status_codes(document):
    ops = {(method, path): operation for method, path, _, operation in operations(document)}
    assert set(CONTRACT_STATUSES) == set(ops)
    for key, statuses in CONTRACT_STATUSES.items():
        listed = set(ops[key]["responses"])
        assert statuses <= listed, (key, statuses - listed)


# -- Served by the gateway -----------------------------------------------------------------------


async def test_the_gateway_serves_the_document_without_a_token(gateway, http: aiohttp.ClientSession):
    async with http.get(gateway.url + SERVED_AT) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert response.headers.get("X-Request-Id")
        served = json.loads(await response.read())
    assert served == with_settings(load_document(), gateway.config.chunk_size, gateway.config.max_file_size)
    claim = served["components"]["schemas"]["UploadClaim"]["properties"]
    assert claim["chunk_size"]["const"] == gateway.config.chunk_size
    assert claim["file_size"]["maximum"] == gateway.config.max_file_size
    # A wrong token does not matter either: the endpoint is public.
    async with http.get(gateway.url + SERVED_AT, headers={"Authorization": "Bearer nonsense"}) as response:
        assert response.status == 200


async def test_live_answers_have_the_documented_shapes(gateway, http: aiohttp.ClientSession, document):
    schemas = document["components"]["schemas"]
    async with http.get(gateway.url + "/dropbox/v1/config") as response:
        assert response.status == 200
        assert set(await response.json()) == set(schemas["Config"]["properties"])
    async with http.get(gateway.url + "/dropbox/v1/users/me") as response:
        assert response.status == 401
        body = await response.json()
        assert set(body) == {"error"} and set(schemas["Error"]["properties"]["error"]["required"]) <= set(body["error"])
    async with http.get(gateway.url + "/dropbox/v1/files") as response:
        assert response.status == 401

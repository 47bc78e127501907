"""cdn/signing.js's signatures, computed by njs in a real nginx and checked against references:
SigV4 against botocore's signer for the same request and time, the edge signature against the
gateway's (gateway/core/downloads.py). The whole path (nginx signing real store requests, checking
real URLs) is in tests/test_cdn.py.
"""
from __future__ import annotations

import datetime
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode

from cdn.nginx import NJS_DIR, js_module, main_config, nginx_binary
from gateway.core.downloads import signature
from storage.embedded import free_port

HARNESS = Path(__file__).with_name("njs") / "signing_harness.js"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture(scope="module")
def njs(tmp_path_factory):
    """nginx with signing.js and a harness that exposes its pure functions over HTTP."""
    state = tmp_path_factory.mktemp("njs")
    (state / "temp").mkdir()
    port = free_port()
    (state / "cdn.conf").write_text(
        f"js_path {NJS_DIR};\n"
        f"js_import harness from {HARNESS};\n"
        "server {\n"
        f"    listen 127.0.0.1:{port};\n"
        "    access_log off;\n"
        "    client_body_buffer_size 64k;\n"
        "    location = /healthz { return 200 ok; }\n"
        "    location = /sigv4 { js_content harness.sigv4Authorization; }\n"
        "    location = /edge { js_content harness.edgeSignature; }\n"
        "    location = /window { js_content harness.signingWindow; }\n"
        "}\n"
    )
    (state / "nginx.conf").write_text(main_config(state, "1", js_module()))
    with open(state / "nginx.log", "wb") as log:
        process = subprocess.Popen(
            [nginx_binary(), "-p", str(state), "-c", str(state / "nginx.conf"), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={},
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError((state / "nginx.log").read_text()) from None
            time.sleep(0.05)

    def call(function: str, **arguments) -> str:
        request = urllib.request.Request(f"{base}/{function}", data=json.dumps(arguments).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read().decode()

    yield call
    process.terminate()
    process.wait(10)


def botocore_authorization(monkeypatch, method, host, path, region, access_key, secret_key, when):
    """What botocore's S3 signer sends for this body-less request at ``when``: (Authorization, X-Amz-Date)."""
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: when)
    # botocore's S3 serializer %-encodes the key into the URL (percent_encode, safe "/~"); the signer takes it as it is.
    request = AWSRequest(method=method, url=f"http://{host}{percent_encode(path, safe='/~')}")
    S3SigV4Auth(Credentials(access_key, secret_key), "s3", region).add_auth(request)
    assert request.headers["X-Amz-Content-SHA256"] == EMPTY_SHA256  # what the store fetcher sends
    return request.headers["Authorization"], request.headers["X-Amz-Date"]


@pytest.mark.parametrize(
    ("method", "host", "path", "region"),
    [
        ("GET", "127.0.0.1:9000", "/dropbox-content/content/" + "ab" * 32, "us-east-1"),
        ("HEAD", "minio:9000", "/dropbox-content/content/" + "0f" * 32, "us-east-1"),
        ("GET", "s3.eu-west-3.amazonaws.com", "/my.bucket-1/content/" + "9e" * 32, "eu-west-3"),
        # S3's encoding of a path: everything but unreserved characters, segment by segment.
        ("GET", "store.internal:443", "/bucket/odd key/(1)!*'~_.-+=&", "ap-south-1"),
    ],
)
def test_sigv4_matches_botocore(njs, monkeypatch, method, host, path, region):
    for when in (datetime.datetime(2026, 1, 2, 3, 4, 5), datetime.datetime(1999, 12, 31, 23, 59, 59)):
        access_key, secret_key = "cdn-reader", "s3cr3t/with+odd=chars"
        expected, amz_date = botocore_authorization(monkeypatch, method, host, path, region, access_key, secret_key, when)
        ours = njs(
            "sigv4", method=method, path=path, host=host, region=region, amzDate=amz_date,
            accessKey=access_key, secretKey=secret_key,
        )
        assert ours == expected


def test_sigv4_depends_on_every_input(njs):
    base = dict(method="GET", path="/b/content/x", host="h:1", region="r", amzDate="20260102T030405Z",
                accessKey="a", secretKey="s")
    reference = njs("sigv4", **base)
    changes = dict(method="HEAD", path="/b/content/y", host="h:2", region="q", amzDate="20260102T030406Z",
                   accessKey="b", secretKey="t")
    for name, value in changes.items():
        assert njs("sigv4", **{**base, name: value}) != reference, name


@pytest.mark.parametrize(
    ("expires", "path", "ascii_name", "type"),
    [
        ("1795620384", "/c/" + "ab" * 32 + "/report.pdf", "report.pdf", "application/pdf"),
        ("1", "/c/" + "00" * 32 + "/%E6%8A%A5%E5%91%8A.pdf", "download.pdf", "image/svg+xml"),
        ("999999999999", "/c/" + "ff" * 32 + "/a%20%281%29.txt", "", ""),
    ],
)
def test_the_edge_signature_is_the_gateways(njs, expires, path, ascii_name, type):
    for secret in ("test-cdn-secret", "0123456789abcdef" * 4):
        ours = njs("edge", secret=secret, expires=expires, path=path, ascii_name=ascii_name, type=type)
        assert ours == signature(secret, int(expires), path, ascii_name, type)


def test_the_edge_signs_for_a_window_of_seconds_from_the_second_before(njs):
    """The seconds in which the edge sends a download's slices to the store under the signature it
    made at the download's start (cdn/nginx.conf.template finds the current one in this list)."""
    signed = int(datetime.datetime(2026, 12, 4, 16, 19, 11, tzinfo=datetime.UTC).timestamp())
    assert njs("window", signedAt="20261204T161911Z", window=2) == " ".join(str(signed + i) for i in range(-1, 3))
    assert njs("window", signedAt="20261204T161911Z", window=0) == f"{signed - 1} {signed}"
    assert njs("window", signedAt="20261204T161911Z", window=-1) == ""
    assert len(njs("window", signedAt="19991231T235959Z", window=600).split()) == 602

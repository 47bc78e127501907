"""storage/sigv4.py gives the very URL botocore's ``generate_presigned_url`` gives for the same part upload,
and the very headers its SigV4 signer gives a request.

The same inputs (endpoint, credentials, region, bucket, key, upload id, part number, checksum,
expiry; a request's method, query, headers and body) and the same moment, botocore's clock frozen
there: byte for byte the same, for keys with anything UTF-8 can hold (spaces, slashes, ``+``,
``%``, ``?``, accents). That the store takes them is tested against the real store
(tests/test_store_contract.py, and every upload of the real-parts tests).
"""
from __future__ import annotations

import base64
import datetime
import functools
import hashlib
from unittest import mock

import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.s3 import S3ObjectStore, s3_client
from storage.sigv4 import Signer, object_path
from tests.lanes import examples

# Text UTF-8 can hold (no lone surrogates), of any other kind.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
KEYS = st.one_of(TEXT, st.from_regex(r"content/[0-9a-f]{2}/[0-9a-f]{62}", fullmatch=True),
                 st.lists(TEXT, min_size=1, max_size=4).map("/".join))
# 2001-01-01 .. 2099-12-31, in whole seconds as the store signs (SigV4's time has no fractions).
MOMENTS = st.integers(978307200, 4102358400)
# Credentials and regions: a botocore client is made for each (a fraction of a second), so a few, odd
# characters included.
CREDENTIALS = st.sampled_from([("bench", "secret"), ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                               ("key/with+odd=chars~", "s p/a+c=e%")])


@functools.cache
def client_of(endpoint: str, access_key: str, secret_key: str, region: str):
    return s3_client(endpoint, access_key, secret_key, region=region)


def botocore_url(endpoint: str, access_key: str, secret_key: str, region: str, bucket: str, key: str,
                 upload_id: str, part: int, checksum: str, expires: int, now: float) -> str:
    """What botocore presigns for UploadPart at ``now`` (its clock frozen there)."""
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: moment):
        return client_of(endpoint, access_key, secret_key, region).generate_presigned_url(
            "upload_part", HttpMethod="PUT", ExpiresIn=expires,
            Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": part, "ChecksumSHA256": checksum})


def ours(endpoint: str, access_key: str, secret_key: str, region: str, bucket: str, key: str, upload_id: str,
         part: int, checksum: str, expires: int, now: float) -> str:
    signer = Signer(endpoint, access_key, secret_key, region)
    return signer.presign("PUT", bucket, key, [("uploadId", upload_id), ("partNumber", str(part))],
                          {"x-amz-checksum-sha256": checksum}, expires, now)


def checksum_of(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@settings(max_examples=examples(200), deadline=None)
@given(key=KEYS, upload_id=TEXT, part=st.integers(1, 10_000), data=st.binary(max_size=16),
       expires=st.integers(1, 7 * 24 * 3600), now=MOMENTS, region=st.sampled_from(["us-east-1", "garage"]),
       credentials=CREDENTIALS)
def test_a_part_url_is_botocores_byte_for_byte(key, upload_id, part, data, expires, now, region, credentials):
    args = ("http://127.0.0.1:8333", *credentials, region, "content", key, upload_id, part, checksum_of(data),
            expires, now)
    assert ours(*args) == botocore_url(*args)


@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:8333", "http://localhost:80", "https://S3.Example.COM", "https://s3.example.com:443/",
    "https://s3.example.com:8443", "http://[::1]:9000", "http://store.internal:9000/s3-prefix",
])
def test_endpoints_host_and_port_and_prefix_are_signed_as_botocore_does(endpoint):
    args = (endpoint, "bench", "secret/key+", "us-east-1", "bench-content", "content/ab/c d", "2~up+load/id=",
            7, checksum_of(b"x"), 900, 1764893671)
    assert ours(*args) == botocore_url(*args)


def test_the_signing_key_is_derived_again_when_the_date_changes():
    """The key of one date is kept; a URL of the next day has that day's key, as botocore signs it."""
    args = ("http://127.0.0.1:8333", "bench", "secret", "us-east-1", "b", "k", "u", 1, checksum_of(b""), 60)
    signer = Signer(*args[:4])
    for now in (1764892800 - 1, 1764892800, 1764892800 + 86399, 1764892800 + 86400):  # either side of midnights
        url = signer.presign("PUT", "b", "k", [("uploadId", "u"), ("partNumber", "1")],
                             {"x-amz-checksum-sha256": checksum_of(b"")}, 60, now)
        assert url == botocore_url(*args, now=now)


async def test_the_store_presigns_each_part_with_its_checksum_and_one_expiry():
    """S3ObjectStore's part URLs: botocore's URL for each part, the checksum header to send, and an expiry
    that is the URLs' own (X-Amz-Date + X-Amz-Expires), in batches across the loop's turns."""
    store = S3ObjectStore("http://127.0.0.1:1", "bench", "secret", "content", public_endpoint="https://files.example")
    try:
        parts = [(number, checksum_of(bytes([number % 256]))) for number in range(1, 150)]
        presigned = await store.presign_upload_parts("content/ab/cd", "upload-1", parts, expires=600)
    finally:
        await store.close()
    assert [p.headers for p in presigned] == [{"x-amz-checksum-sha256": checksum} for _, checksum in parts]
    for (number, checksum), request in zip(parts, presigned, strict=True):
        assert request.method == "PUT"
        now = request.expires_at - 600
        assert request.url == botocore_url("https://files.example", "bench", "secret", "us-east-1", "content",
                                           "content/ab/cd", "upload-1", number, checksum, 600, now)


def botocore_headers(endpoint: str, access_key: str, secret_key: str, region: str, method: str, bucket: str,
                     key: str, query: str, headers: dict[str, str], body: bytes, now: int) -> dict[str, str]:
    """The headers botocore's S3 SigV4 signer gives the request at ``now`` (its clock frozen there)."""
    url = endpoint.rstrip("/") + object_path(bucket, key) + (f"?{query}" if query else "")
    request = AWSRequest(method, url, headers=headers, data=body)
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: moment):
        S3SigV4Auth(Credentials(access_key, secret_key), "s3", region).add_auth(request)
    return dict(request.headers.items())


# Header values as the store requests have them (checksums, a type) and any printable text with runs of spaces.
HEADER_VALUES = st.one_of(st.sampled_from(["SHA256", "COMPOSITE", "application/octet-stream"]),
                          st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=20))
HEADER_NAMES = st.sampled_from(["x-amz-checksum-sha256", "x-amz-checksum-algorithm", "Content-Type", "X-Amz-Meta-Note"])
QUERIES = st.sampled_from(["", "uploads", "uploadId=a%2Bb&partNumber=3", "tagging"])


@settings(max_examples=examples(200), deadline=None)
@given(method=st.sampled_from(["PUT", "POST", "GET", "DELETE"]), key=KEYS, query=QUERIES,
       headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=3), body=st.binary(max_size=64), now=MOMENTS,
       region=st.sampled_from(["us-east-1", "garage"]), credentials=CREDENTIALS,
       endpoint=st.sampled_from(["http://127.0.0.1:8333", "https://s3.example.com", "http://store:9000/prefix"]))
def test_a_signed_request_has_botocores_headers_byte_for_byte(method, key, query, headers, body, now, region,
                                                             credentials, endpoint):
    ours = Signer(endpoint, *credentials, region).sign(method, "content", key, query, headers, body, now)
    theirs = botocore_headers(endpoint, *credentials, region, method, "content", key, query, headers, body, now)
    assert list(ours.items()) == list(theirs.items())

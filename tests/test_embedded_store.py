"""The embedded store's launcher: a port taken between picking it and weed binding it is picked again."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

import storage.embedded as embedded

pytestmark = pytest.mark.real  # starts SeaweedFS processes of its own


def test_a_picked_port_taken_by_another_process_is_picked_again(tmp_path, monkeypatch):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_port = embedded.free_port
        picks = iter([taken])  # the first internal port weed is given is already someone else's
        monkeypatch.setattr(embedded, "free_port", lambda: next(picks, None) or real_free_port())
        store = embedded.EmbeddedStore(tmp_path, "access", "secret-" + "x" * 16, "race-bucket",
                                       s3_port=real_free_port()).start(timeout=40)
        try:
            assert taken not in store.ports.values()
            assert store.process is not None and store.process.poll() is None
        finally:
            store.stop()
    ports = {str(port) for port in (store.s3_port, *store.ports.values())}
    left = [path.name for path in Path("/tmp").glob("seaweedfs-*.sock") if path.stem.rsplit("-", 1)[-1] in ports]
    assert left == [], "weed's sockets are left in /tmp"


def http_status(port: int, method: str, path: str, body: bytes | None = None) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=body)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def listening(port: int, timeout: float = 60.0) -> socket.socket:
    """A connection to ``port`` once it listens. The store is ready when S3 answers (EmbeddedStore.wait_ready);
    weed opens its gRPC servers on their own goroutines, and on a loaded machine one may still be starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # polls a port: there is no event to wait on


def speaks_plain_grpc(port: int) -> bool:
    """Whether the port answers an HTTP/2 connection in clear (what a gRPC client without TLS opens)
    with its SETTINGS frame; a TLS-only server reads the preface as a broken handshake instead."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
    with listening(port) as sock:
        sock.sendall(preface)
        try:
            header = sock.recv(9)
        except (ConnectionResetError, TimeoutError):
            return False
    return len(header) == 9 and header[3] == 0x04


def test_only_the_s3_port_serves_anyone_without_the_stores_own_secrets(store):
    """The review listed, read and wrote all content through the filer's port on 127.0.0.1, past the S3 keys."""
    from tests.harness import raw_s3

    s3 = raw_s3(store.endpoint)
    s3.put_object(Bucket=store.bucket, Key="content/only-through-s3", Body=b"private bytes")
    assert s3.get_object(Bucket=store.bucket, Key="content/only-through-s3")["Body"].read() == b"private bytes"
    filer, volume, master = store.ports["filer.port"], store.ports["volume.port"], store.ports["master.port"]
    folder = f"/buckets/{store.bucket}/content/"
    refused = {
        "the filer lists the bucket": http_status(filer, "GET", folder),
        "the filer reads an object": http_status(filer, "GET", folder + "only-through-s3"),
        "the filer writes an object": http_status(filer, "PUT", folder + "planted", b"planted"),
        "the volume server reads a blob": http_status(volume, "GET", "/1,01"),
        "the volume server writes a blob": http_status(volume, "POST", "/1,01", b"planted"),
        # Guarded by client address only: these must not be served at all (-disableHttp).
        "the master deletes the bucket's volumes": http_status(master, "GET", f"/col/delete?collection={store.bucket}"),
        "the master hands out file ids and write tokens": http_status(master, "POST", "/dir/assign"),
        "the master grows volumes": http_status(master, "GET", "/vol/grow?count=1"),
    }
    # 401: no token the store signed itself; 404: the HTTP API is off.
    assert {what: status for what, status in refused.items() if status not in (401, 404)} == {}
    for port in ("filer.port.grpc", "volume.port.grpc", "master.port.grpc", "s3.port.grpc"):
        assert not speaks_plain_grpc(store.ports[port]), f"{port} takes gRPC without the store's certificate"
    assert s3.get_object(Bucket=store.bucket, Key="content/only-through-s3")["Body"].read() == b"private bytes"
    assert "planted" not in {o["Key"] for o in s3.list_objects_v2(Bucket=store.bucket, Prefix="content/").get("Contents", [])}


def test_the_gateways_key_is_scoped_to_its_bucket(store):
    """The gateway's identity was an administrator of the whole store; it may now use its bucket only."""
    from botocore.exceptions import ClientError

    from storage.s3 import s3_client
    from tests.harness import raw_s3

    assert store._operator is not None, "the store has its launcher's own administrator"
    other = "not-the-gateways"
    operator = s3_client(store.endpoint, *store._operator, attempts=1)
    try:
        operator.create_bucket(Bucket=other)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
    operator.put_object(Bucket=other, Key="kept", Body=b"someone else's")
    gateway = raw_s3(store.endpoint)
    gateway.put_object(Bucket=store.bucket, Key="content/scoped", Body=b"ours")  # its own bucket: as before
    assert gateway.get_object(Bucket=store.bucket, Key="content/scoped")["Body"].read() == b"ours"
    attempts = {
        "read another bucket": lambda: gateway.get_object(Bucket=other, Key="kept"),
        "write another bucket": lambda: gateway.put_object(Bucket=other, Key="planted", Body=b"x"),
        "list another bucket": lambda: gateway.list_objects_v2(Bucket=other),
        "make a bucket": lambda: gateway.create_bucket(Bucket="gateway-made-this"),
        "delete a bucket": lambda: gateway.delete_bucket(Bucket=other),
        "set its bucket's policy": lambda: gateway.put_bucket_policy(
            Bucket=store.bucket, Policy='{"Version": "2012-10-17", "Statement": []}'),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
        except ClientError as refused:
            assert refused.response["ResponseMetadata"]["HTTPStatusCode"] == 403, name
        else:
            raise AssertionError(f"the gateway's key could {name}")


def test_a_given_port_taken_is_the_callers_to_pick_again(tmp_path):
    """weed could not have the S3 port it was given: fresh internal ports would not help, so start() says so
    at once (the bench stack then picks all its ports again), with weed's own words."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        store = embedded.EmbeddedStore(tmp_path, "access", "secret-" + "x" * 16, "taken-bucket", s3_port=taken)
        with pytest.raises(RuntimeError, match=r"specified by flag s3\.port"):
            store.start(timeout=40)
        store.stop()
    assert (tmp_path / "weed.log").read_text().count("Port allocation failed") == 1, "started once, not three times"


def test_the_tests_store_starts_on_a_fresh_s3_port_when_its_first_was_taken(tmp_path, monkeypatch):
    """tests/harness.py's start_store picks the S3 port itself, so it picks it again: every test of a
    session stands on that one store, and another process on the machine may take the port first."""
    from tests import harness

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        monkeypatch.setattr(harness, "free_port", lambda: next(picks, None) or embedded.free_port())
        store = harness.start_store(tmp_path)
        try:
            assert store.s3_port != taken
            harness.raw_s3(store.endpoint).head_bucket(Bucket=harness.BUCKET)
        finally:
            store.stop()
    assert (tmp_path / "weed.log").read_text().count("Port allocation failed") == 1


def test_a_picked_port_is_below_the_range_of_outgoing_connections_and_free():
    """So that no client's connection takes it as its own end before the server listens (free_port)."""
    low = int(embedded.EPHEMERAL_RANGE.read_text().split()[0])
    picked = [embedded.free_port() for _ in range(500)]
    assert len(set(picked)) == len(picked), "one process is never given one port twice"
    for port in picked[:50]:
        assert embedded.PICKED_PORTS_FROM <= port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))

"""The embedded store's launcher: a port taken between picking it and weed binding it is picked again."""
from __future__ import annotations

import socket

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

"""./dev up --address: what clients are given names the address, and the proxies on it (deploy/lan.py)."""
from __future__ import annotations

import argparse

import pytest

from deploy import lan
from deploy.stack import gateway_environment, parse_args

PORTS = lan.Ports(gateway=8080, cdn=8081, s3=9000)


def test_an_address_is_one_ip_address_of_this_machine():
    assert lan.checked_address("192.168.1.20") == "192.168.1.20"
    assert lan.checked_address("fd00::1") == "fd00::1"
    for wrong in ("files.lan", "0.0.0.0", "::", "192.168.1.300", "", "127.0.0.1"):
        with pytest.raises(ValueError):
            lan.checked_address(wrong)


def test_clients_are_given_the_address_and_the_gateway_trusts_only_its_proxy(tmp_path, monkeypatch):
    for name in ("GATEWAY_PUBLIC_URL", "GATEWAY_S3_PUBLIC_ENDPOINT", "GATEWAY_CDN_URL", "GATEWAY_TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)
    args = parse_args(["--address", "192.168.1.20", "--gateway-port", "8080", "--cdn-port", "8081",
                       "--s3-port", "9000"])
    env = gateway_environment(tmp_path, {}, args)
    assert (env["GATEWAY_PUBLIC_URL"], env["GATEWAY_S3_PUBLIC_ENDPOINT"], env["GATEWAY_CDN_URL"]) == (
        "http://192.168.1.20:8080", "http://192.168.1.20:9000", "http://192.168.1.20:8081")
    assert env["GATEWAY_TRUSTED_PROXIES"] == "127.0.0.1"
    # The parts themselves stay on loopback: the gateway binds there, and reaches the store there.
    assert (env["GATEWAY_HOST"], env["GATEWAY_S3_ENDPOINT"]) == ("127.0.0.1", "http://127.0.0.1:9000")


def test_addresses_set_by_hand_win_a_tls_proxy_in_front(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", "https://files.example.org")
    args = argparse.Namespace(address="192.168.1.20", gateway_port=8080, cdn_port=8081, s3_port=9000)
    env = gateway_environment(tmp_path, {}, args)
    assert env["GATEWAY_PUBLIC_URL"] == "https://files.example.org"
    assert env["GATEWAY_S3_PUBLIC_ENDPOINT"] == "http://192.168.1.20:9000"


def test_without_an_address_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.delenv("STACK_ADDRESS", raising=False)
    monkeypatch.delenv("GATEWAY_PUBLIC_URL", raising=False)
    args = parse_args(["--gateway-port", "8080"])
    assert args.address is None
    assert gateway_environment(tmp_path, {}, args)["GATEWAY_PUBLIC_URL"] == "http://127.0.0.1:8080"


def test_the_front_passes_each_port_to_its_part_on_loopback_with_the_clients_host():
    config = lan.front_config("fd00::1", PORTS)
    assert [line.strip() for line in config.splitlines() if line.strip().startswith("listen")] == [
        "listen [fd00::1]:8080;", "listen [fd00::1]:8081;", "listen [fd00::1]:9000;"]
    for port in (8080, 8081, 9000):
        assert f"proxy_pass http://127.0.0.1:{port};" in config
    assert config.count("proxy_set_header Host $http_host;") == 3  # SigV4 signs the Host the client used
    assert config.count("proxy_request_buffering off;") == 3  # chunks stream through
    assert config.count("proxy_set_header X-Forwarded-For $remote_addr;") == 3  # never the client's own


def test_the_gateway_names_the_settings_other_machines_cannot_reach():
    from gateway.config import Config

    lan_app = {"public_url": "http://192.168.1.20:8080"}
    assert Config(**lan_app, s3_endpoint="http://127.0.0.1:9000", cdn_url="http://localhost:8081").loopback_for_others() == [
        "GATEWAY_S3_PUBLIC_ENDPOINT", "GATEWAY_CDN_URL"]
    assert Config(**lan_app, s3_endpoint="http://127.0.0.1:9000", s3_public_endpoint="http://192.168.1.20:9000",
                  cdn_url="http://[::1]:8081").loopback_for_others() == ["GATEWAY_CDN_URL"]
    assert Config(**lan_app, s3_public_endpoint="http://192.168.1.20:9000",
                  cdn_url="http://192.168.1.20:8081").loopback_for_others() == []
    # Served on loopback itself: everyone is on this machine.
    assert Config(public_url="http://localhost:8080", s3_endpoint="http://127.0.0.1:9000").loopback_for_others() == []

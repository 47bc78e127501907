"""Schemathesis hooks for tests/test_schemathesis.py: how the fuzzer gets its access token.

The fuzzer logs in as the test's user (SCHEMATHESIS_GATEWAY, SCHEMATHESIS_USERNAME,
SCHEMATHESIS_PASSWORD) and keeps the token until an answer is 401: it calls
``DELETE /dropbox/v1/tokens/current`` too, which revokes the token it holds,
and then logs in again. The store's webhooks get the events token instead
(SCHEMATHESIS_EVENTS_TOKEN).
"""
from __future__ import annotations

import os

import requests
import schemathesis


EVENTS = r"^/dropbox/v1/events"


@schemathesis.auth(refresh_interval=3000).skip_for(path_regex=EVENTS)
class AccessToken:
    def get(self, case, context):
        response = requests.post(
            os.environ["SCHEMATHESIS_GATEWAY"] + "/dropbox/v1/tokens",
            json={"username": os.environ["SCHEMATHESIS_USERNAME"], "password": os.environ["SCHEMATHESIS_PASSWORD"]},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.auth(refresh_interval=None).apply_to(path_regex=EVENTS)
class EventsToken:
    def get(self, case, context):
        return os.environ["SCHEMATHESIS_EVENTS_TOKEN"]

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


WAIT = "/dropbox/v1/changes/wait"


@schemathesis.hook
def before_call(context, case, kwargs):
    """A change wait holds its answer up to `timeout` seconds (30 by default): the fuzzer asks for 1 at most.

    Waiting is what the call does when nothing changes; a case that waits 30 s or
    120 s tells nothing more about the interface's shape, and ran into the
    fuzzer's own request timeout.
    """
    if case.path == WAIT:
        query = dict(case.query or {})
        try:
            query["timeout"] = min(int(query.get("timeout", 1)), 1)
        except (TypeError, ValueError):
            pass  # a malformed timeout stays: its 400 is part of what is checked
        case.query = query

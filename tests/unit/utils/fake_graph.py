# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The in-memory Microsoft Graph of the unit tests: the base every fake client builds on, Graph errors, and how a module
test runs a module against a fake.

``FakeGraph`` records each call in ``calls`` and answers ``$batch`` item by item as Graph does: a subclass answers one
batched request in ``answer_batched`` (a failed item is a raised ``GraphError``). ``ReadOnlyGraph`` answers every read
from ``answer(path)`` and fails the test on any write. The fakes of each resource live beside this file
(``fake_apps``, ``fake_assignments``, ``fake_sync``); a test keeps only what is particular to it.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import re

from urllib.parse import parse_qsl

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.entrascim.cloudflare.plugins.module_utils import _entra_module
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError

CLIENT_SECRET = "graph-client-secret-never-printed-4Kd8"
MODULE_ARGS = {"tenant_id": "00000000-0000-4000-8000-0000000000aa", "client_id": "00000000-0000-4000-8000-0000000000bb",
               "client_secret": CLIENT_SECRET}
CLAUSE = re.compile(r"(\w+) eq '((?:[^']|'')*)'")


def graph_error(status, code, message="error"):
    """A ``GraphError`` as the client raises it (fake_servers.graph_error is the HTTP answer of a real local server)."""
    return GraphError(message, status=status, code=code, request_id="req-%d" % status)


def not_found(what):
    return graph_error(404, "Request_ResourceNotFound", "Resource '%s' does not exist" % what)


def matches(obj, params):
    """Whether ``obj`` passes every ``name eq 'value'`` clause of the ``$filter`` in ``params`` (letter case ignored)."""
    clauses = CLAUSE.findall((params or {}).get("$filter", ""))
    return all(str(obj.get(name, "")).lower() == value.replace("''", "'").lower() for name, value in clauses)


def error_body(err):
    """The body of a Graph error answer (also of a failed ``$batch`` item)."""
    return {"error": {"code": err.code, "message": err.message, "innerError": {"request-id": err.request_id}}}


class FakeGraph(object):
    """Records each call in ``calls``; answers ``$batch`` item by item as Graph does.

    ``answer_batched(request, path, params)`` answers one item as ``(status, body)`` or raises ``GraphError`` (the item
    then carries that error): by default as the plain ``list`` would (a ``$batch`` of list reads, each recorded by that
    read). ``record_batch(requests)`` records the batch itself (by default nothing more).
    """

    def __init__(self):
        self.calls = []

    def record_batch(self, requests):
        """Nothing by default: each item is recorded by the read that answers it."""

    def answer_batched(self, request, path, params):
        return 200, {"value": self.list(path, params)}

    def batch(self, requests):
        self.record_batch(requests)
        items = []
        for number, request in enumerate(requests, 1):
            path, dummy, query = request["url"].partition("?")
            try:
                status, body = self.answer_batched(request, path, dict(parse_qsl(query)))
            except GraphError as err:
                status, body = err.status, error_body(err)
            items.append({"id": str(number), "status": status, "headers": {}, "body": body})
        return items


class ReadOnlyGraph(FakeGraph):
    """Every read answered by ``answer(path)`` (a document; lists read its ``value``); any write fails the test."""

    def answer(self, path):
        raise NotImplementedError

    def get(self, path, params=None):
        self.calls.append(("GET", path, params))
        return self.answer(path)

    def list(self, path, params=None):
        self.calls.append(("LIST", path, params))
        return self.answer(path)["value"]

    def record_batch(self, requests):
        self.calls.append(("BATCH", [item["url"] for item in requests], None))

    def answer_batched(self, request, path, params):
        return 200, self.answer(path)

    def post(self, path, *args, **kwargs):
        raise AssertionError("a read-only step wrote to Graph: %s" % path)

    put = patch = delete = post


# ---------------------------------------------------------------------------------------------- running a module
def use_fake_graph(monkeypatch, client, clock=None):
    """Every EntraModule gets ``client`` (a fake, or a function returning it) as its Graph client, and waits on ``clock``."""

    def build(self):
        self._client = client() if callable(client) else client
        if clock is not None:
            self.sleep = clock.sleep
            self.clock = clock

    monkeypatch.setattr(_entra_module.EntraModule, "_build_client", build)
    return client


def run_module(main, capsys, args, defaults=None, never=()):
    """Run a module's ``main`` with ``args`` (over ``defaults``) to its exit; its JSON result, once no secret value
    (the client secret, any of ``never``) is found in its output."""
    with patch_module_args(dict(defaults or {}, **args)):
        with pytest.raises(SystemExit):
            main()
    out = capsys.readouterr().out
    for value in (CLIENT_SECRET,) + tuple(never):
        assert value not in out, "a secret value appeared in the module output"
    return json.loads(out)


def warning_texts(result):
    """Warnings as text (ansible-core 2.19+ returns structured warning summaries)."""
    return [json.dumps(warning) for warning in result.get("warnings", [])]

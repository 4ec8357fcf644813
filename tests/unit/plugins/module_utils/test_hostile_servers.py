# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Regression tests of the adversarial review (issue 12 items 1-3, 9 and 12): secrets with line breaks and quotes,
exceptions that would print them, redirects and links that would carry them elsewhere, and bad numbers.

Each test runs a real module process body (``EntraModule.run``) against local HTTPS/HTTP servers on 127.0.0.1."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
from urllib.parse import quote

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.entrascim.cloudflare.plugins.module_utils._entra_module import EntraModule
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import error_step, redact
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import CLIENT_ID, CLIENT_SECRET, SECRET_VALUES, TENANT_ID
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_servers import PlainSink, Reply

QUOTED_SECRET = 'Se"cr\\et~with-quote-and-backslash-0123'


def run_module(capfd, args, fn, **kwargs):
    """Run ``EntraModule.run(fn)``; return (exit code, result, all output)."""
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            EntraModule(**kwargs).run(fn)
    out, err = capfd.readouterr()
    result = json.loads(out)
    return info.value.code, result, "\n".join([out, err] + list(strings(result)))


def strings(value):
    """Every string inside a result, decoded (the raw JSON output escapes a JSON-escaped form once more)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def args_for(server, pki, **extra):
    args = dict(graph_endpoint=server.graph_endpoint, authority_host=server.base_url, ca_path=pki.ca_path,
                tenant_id=TENANT_ID, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    args.update(extra)
    return args


def every_form(value):
    return [value, json.dumps(value)[1:-1], quote(value, safe=""), repr(value)[1:-1]]


def read_org(entra):
    with error_step("read organization"):
        return {"organization": entra.client.get("organization")}


def test_a_client_secret_ending_in_a_newline_is_used_without_it(capfd, fake_ms, pki):
    fake_ms.add("GET", "/v1.0/organization", Reply(200, {"value": []}))
    code, result, out = run_module(capfd, args_for(fake_ms, pki, client_secret=CLIENT_SECRET + "\n"), read_org)
    assert code == 0, result
    assert fake_ms.token_requests == 1 and CLIENT_SECRET not in out


def test_a_secret_with_a_line_break_inside_is_refused_without_showing_it(capfd, fake_ms, pki):
    bad = CLIENT_SECRET[:12] + "\n" + CLIENT_SECRET[12:]
    code, result, out = run_module(capfd, args_for(fake_ms, pki, client_secret=bad), read_org)
    assert code == 1
    assert "client_secret holds a control character" in result["msg"]
    assert fake_ms.requests == []
    assert CLIENT_SECRET[:12] not in out and CLIENT_SECRET[12:] not in out


@pytest.mark.parametrize("value", ["eyJ0eXAi.access\ntoken.value-0123456789", "eyJ0eXAi.access\rtoken\x00value-0123456789"])
def test_an_access_token_with_a_control_character_is_refused_before_any_request(capfd, fake_ms, pki, value):
    args = dict(graph_endpoint=fake_ms.graph_endpoint, ca_path=pki.ca_path, access_token=value)
    code, result, out = run_module(capfd, args, read_org)
    assert code == 1 and "access_token holds a control character" in result["msg"]
    assert fake_ms.requests == [] and "token.value" not in out


def test_a_token_endpoint_issuing_a_token_with_a_newline_cannot_make_it_print(capfd, fake_ms, pki):
    hostile = "tok-hostile-" + "a1b2c3d4e5f6" * 3 + "\nX-Injected: yes"
    SECRET_VALUES.add(hostile.split("\n", maxsplit=1)[0])
    fake_ms.token_reply = Reply(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": hostile})
    fake_ms.add("GET", "/v1.0/organization", Reply(200, {"value": []}))
    code, result, out = run_module(capfd, args_for(fake_ms, pki, token_cache=False), read_org)
    assert code == 1
    assert result["error_code"] == "InvalidHeaderValue" and "Authorization header" in result["msg"]
    assert fake_ms.graph_requests() == []
    for form in every_form(hostile) + every_form(hostile.split("\n", maxsplit=1)[0]):
        assert form not in out


def test_any_exception_is_a_fail_json_redacted_in_every_form(capfd, fake_ms, pki):
    fake_ms.add("GET", "/v1.0/organization", Reply(200, {"value": []}))
    SECRET_VALUES.add(QUOTED_SECRET)

    def crash(entra):
        entra.client.get("organization")
        token = entra.client.tokens[0]
        parts = (json.dumps({"t": token, "s": QUOTED_SECRET}), quote(QUOTED_SECRET, safe=""), repr(QUOTED_SECRET.encode()),
                 quote(token, safe=""))
        raise ValueError("boom %s | %s | %s | %s" % parts)

    fake_ms.register_app(CLIENT_ID, secret=QUOTED_SECRET)
    code, result, out = run_module(capfd, args_for(fake_ms, pki, client_secret=QUOTED_SECRET + "\n"), crash)
    assert code == 1
    assert result["msg"].startswith("Failed to call Microsoft Graph: unexpected error ValueError: boom")
    tokens = list(fake_ms.issued)
    assert tokens, "no token was issued: the test would not test access tokens"
    for secret in tokens + [QUOTED_SECRET]:
        for form in every_form(secret):
            assert form not in out, "a form of a secret leaked"
    assert "********" in result["msg"]


def test_a_graph_400_echoing_the_body_is_redacted_in_json_form(capfd, fake_ms, pki):
    """Item 12: Graph's message quotes the request body, where a secret with quote or backslash is JSON-escaped."""
    SECRET_VALUES.add(QUOTED_SECRET)
    echoed = json.dumps({"credentials": [{"key": "SecretToken", "value": QUOTED_SECRET}]})
    fake_ms.add("PUT", "/v1.0/servicePrincipals/sp-1/synchronization/secrets",
                Reply(400, {"error": {"code": "BadRequest", "message": "Invalid body: %s" % echoed}}))

    def put(entra):
        with error_step("store the secrets"):
            entra.client.put("servicePrincipals/sp-1/synchronization/secrets",
                             {"value": [{"key": "SecretToken", "value": entra.params["secret_token"]}]})

    # The secret is a module option marked no_log, as entra_sync_secrets' secret_token is.
    with patch_module_args(dict(args_for(fake_ms, pki), secret_token=QUOTED_SECRET)):
        with pytest.raises(SystemExit):
            EntraModule(argument_spec=dict(secret_token=dict(type="str", no_log=True))).run(put)
    out, err = capfd.readouterr()
    result = json.loads(out)
    assert result["failed"] is True and "BadRequest" in result["msg"]
    for form in every_form(QUOTED_SECRET):
        assert form not in "\n".join([out, err] + list(strings(result)))


def test_token_endpoint_redirects_are_never_followed(capfd, fake_ms, pki):
    with PlainSink() as sink:
        fake_ms.token_reply = Reply(307, {}, headers={"Location": sink.url + "/steal/oauth2/v2.0/token"})
        code, result, out = run_module(capfd, args_for(fake_ms, pki, token_cache=False), read_org)
        assert code == 1
        assert "redirect to http://127.0.0.1" in result["msg"] and "not followed" in result["msg"]
        assert sink.received == []
    assert CLIENT_SECRET not in out


def test_a_next_link_downgraded_to_http_never_gets_the_token(capfd, fake_ms, pki):
    with PlainSink() as sink:
        host = fake_ms.graph_endpoint.split("://", 1)[1]
        fake_ms.add("GET", "/v1.0/users", Reply(200, {"value": [{"id": "1"}], "@odata.nextLink": "http://%s/v1.0/users?$skiptoken=2" % host}))

        def list_users(entra):
            with error_step("list users"):
                return {"users": entra.client.list("users")}

        code, result, dummy = run_module(capfd, args_for(fake_ms, pki), list_users)
        assert code == 1 and result["error_code"] == "ForeignHost"
        assert "only https://" in result["msg"]
        assert sink.received == []


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_a_graph_redirect_is_never_a_success(capfd, fake_ms, pki, method):
    with PlainSink() as sink:
        fake_ms.add(method, "/v1.0/servicePrincipals/sp-1/synchronization/secrets",
                    Reply(307, {}, headers={"Location": sink.url + "/v1.0/elsewhere"}))

        def call(entra):
            with error_step("store the secrets"):
                entra.client.request(method, "servicePrincipals/sp-1/synchronization/secrets", body={"value": []} if method == "PUT" else None)
            return {"changed": True}

        code, result, dummy = run_module(capfd, args_for(fake_ms, pki), call)
        assert code == 1 and result.get("changed") is not True
        assert result["error_code"] == "UnexpectedRedirect" and result["status"] == 307
        assert sink.received == []


@pytest.mark.parametrize("extra, text", [
    ({"timeout": 0}, "timeout must be more than 0 seconds"),
    ({"timeout": -5}, "timeout must be more than 0 seconds"),
    ({"wait_timeout": -1}, "wait_timeout must be 0 or more"),
    ({"service_principal_id": ""}, "service_principal_id is empty"),
    ({"service_principal_id": "  "}, "service_principal_id is empty"),
])
def test_bad_numbers_and_empty_ids_fail_clearly_before_any_request(capfd, fake_ms, pki, extra, text):
    spec = dict(wait_timeout=dict(type="int", default=10), service_principal_id=dict(type="str"))
    code, result, dummy = run_module(capfd, args_for(fake_ms, pki, **extra), read_org, argument_spec=spec)
    assert code == 1 and text in result["msg"], result
    assert fake_ms.requests == []


def test_validate_certs_false_warns(capfd, fake_ms, pki):
    fake_ms.add("GET", "/v1.0/organization", Reply(200, {"value": []}))
    code, result, dummy = run_module(capfd, args_for(fake_ms, pki, validate_certs=False), read_org)
    assert code == 0
    assert "validate_certs is false" in json.dumps(result.get("warnings"))


def test_redact_replaces_longer_forms_first():
    secret = 'a"b\\c-long-enough'
    text = "plain %s json %s url %s" % (secret, json.dumps(secret)[1:-1], quote(secret, safe=""))
    assert redact(text, [secret]) == "plain ******** json ******** url ********"

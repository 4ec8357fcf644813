# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the cloudflare_scim_check module: options, docs, and runs against a local SCIM server."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import ast
import json
import os
import ssl
import threading

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from ansible.module_utils.testing import patch_module_args

from ansible_collections.entrascim.cloudflare.plugins.doc_fragments.cloudflare import ModuleDocFragment
from ansible_collections.entrascim.cloudflare.plugins.module_utils import _cloudflare as cf
from ansible_collections.entrascim.cloudflare.plugins.modules import cloudflare_scim_check as module

ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
TOKEN = "cf-module-test-token-9Kq2Lm4Np6Rs8Tu0Vw"


class Scim(object):
    """A minimal Cloudflare SCIM endpoint: one account, one token, fixed users and groups."""

    def __init__(self, users, groups, pki):
        self.users = [{"id": "u%d" % i, "userName": name} for i, name in enumerate(users)]
        self.groups = [{"id": "g%d" % i, "displayName": name} for i, name in enumerate(groups)]
        self.requests = []
        scim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_GET(self):  # noqa: N802  pylint: disable=invalid-name
                scim.answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert_path, pki.server_key_path)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.ca_path = pki.ca_path
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return "https://127.0.0.1:%d/client/v4" % self.httpd.server_address[1]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, handler):
        url = urlparse(handler.path)
        self.requests.append(url.path)
        query = dict((k, v[0]) for k, v in parse_qs(url.query).items())
        if handler.headers.get("Authorization") != "Bearer " + TOKEN:
            status, body = 401, {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}
        elif url.path.endswith("/ServiceProviderConfig"):
            status, body = 200, {"patch": {"supported": True}, "filter": {"supported": True, "maxResults": 1000}}
        else:
            items = self.users if url.path.endswith("/Users") else self.groups
            start, count = int(query.get("startIndex", 1)), int(query.get("count", 100))
            status, body = 200, {"totalResults": len(items), "Resources": items[start - 1:start - 1 + count]}
        data = json.dumps(body).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


@pytest.fixture
def scim(pki):
    server = Scim(["alice@example.com"], ["Engineers", "CF-%s - Administrator" % ACCOUNT], pki)
    yield server
    server.close()


def warning_texts(result):
    """Module warnings as text (ansible-core >= 2.19 serialises them as WarningSummary objects; older cores as strings)."""
    texts = []
    for item in result.get("warnings", []):
        texts.append(item if isinstance(item, str) else item.get("event", {}).get("msg") or item.get("msg", ""))
    return texts


def run_module(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def test_reports_counts_deprecated_groups_and_warnings(scim, capsys):
    result, out = run_module({"account_id": ACCOUNT, "scim_token": TOKEN, "api_endpoint": scim.endpoint, "ca_path": scim.ca_path,
                              "expect_users": ["alice@example.com"], "expect_groups": ["Engineers"]}, capsys)
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["reachable"] is True and result["token_valid"] is True
    assert result["users"] == 1 and result["groups"] == 2
    assert result["missing_users"] == [] and result["missing_groups"] == []
    assert [g["role"] for g in result["deprecated_groups"]] == ["Administrator"]
    assert result["service_provider_config"]["patch_supported"] is True
    assert result["scim_base_url"] == "%s/accounts/%s/scim/v2" % (scim.endpoint, ACCOUNT)
    warnings = " ".join(warning_texts(result))
    assert "2025-06-02" in warnings
    assert TOKEN not in out


def test_missing_objects_fail_with_the_report(scim, capsys):
    result, out = run_module({"account_id": ACCOUNT, "scim_token": TOKEN, "api_endpoint": scim.endpoint, "ca_path": scim.ca_path,
                              "expect_users": ["bob@example.com"]}, capsys)
    assert result["failed"] is True
    assert "users bob@example.com" in result["msg"]
    assert result["missing_users"] == ["bob@example.com"] and result["token_valid"] is True
    assert TOKEN not in out


def test_fail_on_missing_false_only_reports(scim, capsys):
    result, dummy = run_module({"account_id": ACCOUNT, "scim_token": TOKEN, "api_endpoint": scim.endpoint, "ca_path": scim.ca_path,
                                "expect_groups": ["Finance"], "fail_on_missing": False}, capsys)
    assert not result.get("failed")
    assert result["missing_groups"] == ["Finance"]


def test_rejected_token_fails_with_token_valid_false_and_no_token(scim, capsys):
    wrong = "cf-another-token-that-is-not-valid-1234"
    result, out = run_module({"account_id": ACCOUNT, "scim_token": wrong, "api_endpoint": scim.endpoint, "ca_path": scim.ca_path}, capsys)
    assert result["failed"] is True
    assert result["token_valid"] is False and result["reachable"] is True
    assert "the SCIM token was rejected (HTTP 401)" in result["msg"]
    assert wrong not in out and TOKEN not in out


def test_check_mode_reads_the_same(scim, capsys):
    result, dummy = run_module({"account_id": ACCOUNT, "scim_token": TOKEN, "api_endpoint": scim.endpoint, "ca_path": scim.ca_path,
                                "_ansible_check_mode": True}, capsys)
    assert result["changed"] is False and result["token_valid"] is True
    assert any(path.endswith("/Users") for path in scim.requests)


@pytest.mark.parametrize("account_id", ["023e105f4ecef8ad9ca31a8372d0c35", "not-an-account-id-at-all-00000000", ACCOUNT + "00"])
def test_invalid_account_id_fails_before_any_request(account_id, scim, capsys):
    result, dummy = run_module({"account_id": account_id, "scim_token": TOKEN, "api_endpoint": scim.endpoint, "ca_path": scim.ca_path}, capsys)
    assert result["failed"] is True
    assert "32 hexadecimal characters" in result["msg"]
    assert scim.requests == []


def test_api_endpoint_must_be_a_url(capsys):
    result, dummy = run_module({"account_id": ACCOUNT, "scim_token": TOKEN, "api_endpoint": "ftp://example.com"}, capsys)
    assert result["failed"] is True and "api_endpoint" in result["msg"]


def test_negative_wait_timeout_is_refused(capsys):
    result, dummy = run_module({"account_id": ACCOUNT, "scim_token": TOKEN, "wait_timeout": -1}, capsys)
    assert result["failed"] is True and "wait_timeout" in result["msg"]


def _documentation():
    with open(module.__file__) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "DOCUMENTATION":
            return yaml.safe_load(node.value.value)
    raise AssertionError("no DOCUMENTATION")


def test_documentation_fragments():
    # the attributes themselves (merged from the fragments) are checked for every module in test_runtime_action_groups
    assert _documentation()["extends_documentation_fragment"] == [
        "ansible.builtin.action_common_attributes", "entrascim.cloudflare.cloudflare", "entrascim.cloudflare.cloudflare.action_group"]


def test_doc_fragment_matches_the_connection_spec():
    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert sorted(options) == sorted(cf.CLOUDFLARE_CONNECTION_SPEC)
    for name, spec in cf.CLOUDFLARE_CONNECTION_SPEC.items():
        assert options[name]["type"] == spec["type"], name
        assert options[name].get("default") == spec.get("default"), name


def test_module_file_is_small():
    with open(module.__file__) as handle:
        source = handle.read()
    code = source[source.index('"""\n\nfrom ansible') + 4:]
    assert len([line for line in code.splitlines() if line.strip()]) <= 80
    assert os.path.basename(module.__file__) == "cloudflare_scim_check.py"


def test_http_endpoint_is_refused_before_the_token_is_sent(scim, capsys):
    plain = scim.endpoint.replace("https://", "http://")
    result, out = run_module({"account_id": ACCOUNT, "scim_token": TOKEN, "api_endpoint": plain}, capsys)
    assert result["failed"] is True
    assert "api_endpoint must be an https:// URL" in result["msg"]
    assert scim.requests == [] and TOKEN not in out


def test_token_with_a_trailing_newline_is_stripped_and_never_printed(scim, capsys):
    result, out = run_module({"account_id": ACCOUNT, "scim_token": TOKEN + "\n", "api_endpoint": scim.endpoint,
                              "ca_path": scim.ca_path}, capsys)
    assert not result.get("failed"), result
    assert result["token_valid"] is True
    assert TOKEN not in out


@pytest.mark.parametrize("bad", [TOKEN[:10] + "\n" + TOKEN[10:], TOKEN + "\x00x", "\t" + TOKEN + "\r" + "z"])
def test_token_with_a_control_character_inside_is_refused_without_showing_it(bad, scim, capsys):
    result, out = run_module({"account_id": ACCOUNT, "scim_token": bad, "api_endpoint": scim.endpoint,
                              "ca_path": scim.ca_path}, capsys)
    assert result["failed"] is True
    assert "scim_token holds a control character" in result["msg"]
    assert scim.requests == []
    for fragment in (TOKEN[:10], TOKEN[10:], TOKEN):
        assert fragment not in out

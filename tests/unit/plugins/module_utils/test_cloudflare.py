# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the Cloudflare SCIM client and checks (plugins/module_utils/_cloudflare.py) against a local SCIM server."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import socket
import threading

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils import _cloudflare as cf

ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "cf-scim-token-Zq8vN3kL1pR7sT2uW9xY4"
SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimServer(object):
    """A small Cloudflare-like SCIM server on 127.0.0.1 that records every request it gets."""

    def __init__(self, users=(), groups=(), max_count=100):
        self.users = [{"id": "u%d" % i, "userName": name} for i, name in enumerate(users)]
        self.groups = [{"id": "g%d" % i, "displayName": name} for i, name in enumerate(groups)]
        self.max_count = max_count
        self.token = TOKEN
        self.forced = []          # [(status, headers, body)] answered before anything else, one per request
        self.forbidden = False    # answer 403 to every request with a valid token
        self.on_list = None       # callback(resource) before each listing
        self.spc = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"], "patch": {"supported": True},
                    "bulk": {"supported": False, "maxOperations": 0}, "filter": {"supported": True, "maxResults": 100},
                    "changePassword": {"supported": False}, "sort": {"supported": False}, "etag": {"supported": False},
                    "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token"}]}
        self.log = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                return

            def do_GET(self):  # noqa: N802  pylint: disable=invalid-name
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def api_endpoint(self):
        return "http://127.0.0.1:%d/client/v4" % self.httpd.server_address[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def reply(self, handler, status, body, headers=None):
        data = json.dumps(body).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/scim+json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, handler):
        url = urlparse(handler.path)
        query = dict((key, values[0]) for key, values in parse_qs(url.query).items())
        self.log.append({"path": url.path, "query": query, "authorization": handler.headers.get("Authorization")})
        if self.forced:
            status, headers, body = self.forced.pop(0)
            return self.reply(handler, status, body, headers)
        prefix = "/client/v4/accounts/%s/scim/v2/" % ACCOUNT
        if not url.path.startswith(prefix):
            return self.reply(handler, 404, {"success": False, "errors": [{"code": 7003, "message": "Could not route to %s" % url.path}]})
        if handler.headers.get("Authorization") != "Bearer %s" % self.token:
            return self.reply(handler, 401, {"schemas": [SCIM_ERROR], "status": "401", "detail": "Invalid token"})
        if self.forbidden:
            return self.reply(handler, 403, {"schemas": [SCIM_ERROR], "status": "403", "detail": "Missing SCIM permission"})
        resource = url.path[len(prefix):]
        if resource == "ServiceProviderConfig":
            return self.reply(handler, 200, self.spc)
        if resource in ("Users", "Groups"):
            if self.on_list:
                self.on_list(resource)
            items = self.users if resource == "Users" else self.groups
            start = int(query.get("startIndex", 1))
            count = min(int(query.get("count", self.max_count)), self.max_count)
            page = items[start - 1:start - 1 + count]
            return self.reply(handler, 200, {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": len(items),
                                             "startIndex": start, "itemsPerPage": len(page), "Resources": page})
        return self.reply(handler, 404, {"schemas": [SCIM_ERROR], "status": "404", "detail": "Unknown resource"})


class FakeTime(object):
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def client_for(server, fake_time=None, token=TOKEN, account=ACCOUNT):
    fake_time = fake_time or FakeTime()
    return cf.CloudflareScimClient(account, token, api_endpoint=server.api_endpoint, timeout=5, sleep=fake_time.sleep,
                                   clock=fake_time.clock)


def check_for(server, fake_time=None, **kwargs):
    fake_time = fake_time or FakeTime()
    return cf.ScimCheck(client_for(server, fake_time), sleep=fake_time.sleep, clock=fake_time.clock, **kwargs)


def assert_no_token(*values):
    for value in values:
        assert TOKEN not in json.dumps(value)


# ------------------------------------------------------------------------------------------------ pure helpers

@pytest.mark.parametrize("value,valid", [(ACCOUNT, True), (ACCOUNT.upper(), True), (ACCOUNT[:-1], False), (ACCOUNT + "0", False),
                                         ("g" * 32, False), ("", False), (None, False)])
def test_account_id_validation(value, valid):
    assert cf.valid_account_id(value) is valid


def test_scim_base_url():
    assert cf.scim_base_url("https://api.cloudflare.com/client/v4/", ACCOUNT) == \
        "https://api.cloudflare.com/client/v4/accounts/%s/scim/v2" % ACCOUNT
    assert cf.scim_base_url(None, ACCOUNT).startswith(cf.DEFAULT_API_ENDPOINT)


@pytest.mark.parametrize("name,expected", [
    ("CF-%s - Administrator" % ACCOUNT, {"account_id": ACCOUNT, "role": "Administrator"}),
    ("CF-%s-Administrator Read Only" % ACCOUNT, {"account_id": ACCOUNT, "role": "Administrator Read Only"}),
    ("CF-%s  -  Super Administrator - All Privileges " % ACCOUNT.upper(),
     {"account_id": ACCOUNT, "role": "Super Administrator - All Privileges"}),
    ("CF-%s - " % ACCOUNT, None),
    ("CF-%s - Admin" % ACCOUNT[:-1], None),
    ("cf-%s - Admin" % ACCOUNT, None),
    ("CF Admins", None),
    ("Cloudflare Admins", None),
    (None, None),
])
def test_virtual_group_pattern(name, expected):
    assert cf.virtual_group_match(name) == expected


def test_deprecated_groups_lists_only_the_pattern():
    groups = [{"id": "1", "displayName": "CF-%s - Billing" % ACCOUNT}, {"id": "2", "displayName": "Engineers"},
              {"id": "3", "displayName": "cloudflare-v1-administrator"}]
    assert cf.deprecated_groups(groups) == [{"id": "1", "display_name": "CF-%s - Billing" % ACCOUNT, "account_id": ACCOUNT,
                                             "role": "Billing"}]


def test_parse_error_bodies():
    assert cf.parse_error_body(json.dumps({"schemas": [SCIM_ERROR], "detail": "Invalid token", "status": "401"})) == (None, "Invalid token")
    assert cf.parse_error_body(json.dumps({"schemas": [SCIM_ERROR], "scimType": "invalidFilter", "detail": "bad"})) == ("invalidFilter", "bad")
    assert cf.parse_error_body(json.dumps({"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]})) == \
        ("10000", "Authentication error")
    assert cf.parse_error_body("<html>Bad gateway</html>") == (None, "<html>Bad gateway</html>")
    assert cf.parse_error_body("") == (None, None)


def test_explain_401_403_404_and_unreachable():
    rejected = cf.explain(cf.CloudflareError("Invalid token", status=401), ACCOUNT)
    assert rejected.startswith("the SCIM token was rejected (HTTP 401)")
    assert "account-owned token" in rejected and "SCIM Provisioning > Edit" in rejected
    forbidden = cf.explain(cf.CloudflareError("nope", status=403), ACCOUNT)
    assert forbidden.startswith("the token lacks the SCIM Provisioning permission (HTTP 403)")
    assert ACCOUNT in forbidden and "account-owned token" in forbidden
    missing = cf.explain(cf.CloudflareError("x", status=404, url="https://h/accounts/a/scim/v2/Users"), ACCOUNT)
    assert "check account_id and api_endpoint" in missing
    assert cf.explain(cf.CloudflareError("Could not connect", status=None), ACCOUNT).startswith("the Cloudflare SCIM endpoint is not reachable")
    assert "HTTP 500" in cf.explain(cf.CloudflareError("oops", status=500), ACCOUNT)


def test_find_missing_exact_then_case_insensitive():
    warnings = []
    assert cf.find_missing(["a@x.com", "B@x.com", "c@x.com"], ["a@x.com", "b@x.com"], "User", warnings) == ["c@x.com"]
    assert warnings == ["User 'B@x.com' is in Cloudflare as 'b@x.com' (different letter case)."]


def test_expectation_warnings():
    warnings = cf.expectation_warnings(["alice@x.com", "bob"], ["CF Admins", "Engineers"])
    assert len(warnings) == 2
    assert "'bob' is not an e-mail address" in warnings[0]
    assert "'CF Admins' starts with 'CF'" in warnings[1]


def test_service_provider_config_summary():
    summary = cf.summarize_service_provider_config(ScimServer().spc)
    assert summary == {"patch_supported": True, "bulk_supported": False, "bulk_max_operations": 0, "filter_supported": True,
                       "filter_max_results": 100, "change_password_supported": False, "sort_supported": False,
                       "etag_supported": False, "authentication_schemes": ["oauthbearertoken"]}
    assert cf.summarize_service_provider_config({})["patch_supported"] is None


# ------------------------------------------------------------------------------------------------ the client

def test_client_sends_the_bearer_token_and_pages_with_start_index_and_count():
    names = ["user%03d@example.com" % i for i in range(230)]
    with ScimServer(users=names, max_count=100) as server:
        items, total = client_for(server).list_all("Users", page_size=100)
    assert total == 230
    assert [item["userName"] for item in items] == names
    assert [entry["query"]["startIndex"] for entry in server.log] == ["1", "101", "201"]
    assert all(entry["query"]["count"] == "100" for entry in server.log)
    assert all(entry["authorization"] == "Bearer %s" % TOKEN for entry in server.log)


def test_paging_follows_what_the_server_returns_when_it_caps_count():
    names = ["user%03d@example.com" % i for i in range(45)]
    with ScimServer(users=names, max_count=20) as server:
        items, total = client_for(server).list_all("Users", page_size=100)
    assert total == 45 and len(items) == 45
    assert [entry["query"]["startIndex"] for entry in server.log] == ["1", "21", "41"]


def test_paging_stops_on_an_empty_page_even_if_total_is_wrong():
    with ScimServer(users=["a@x.com"]) as server:
        server.forced = [(200, {}, {"totalResults": 5, "Resources": [{"id": "1", "userName": "a@x.com"}]}),
                         (200, {}, {"totalResults": 5, "Resources": []})]
        items, total = client_for(server).list_all("Users")
    assert len(items) == 1 and total == 5
    assert len(server.log) == 2


def test_total_asks_for_one_item():
    with ScimServer(users=["a@x.com", "b@x.com", "c@x.com"]) as server:
        assert client_for(server).total("Users") == 3
    assert server.log[0]["query"] == {"startIndex": "1", "count": "1"}


def test_429_is_retried_after_retry_after():
    fake_time = FakeTime()
    with ScimServer(users=["a@x.com"]) as server:
        server.forced = [(429, {"Retry-After": "7"}, {"success": False, "errors": [{"code": 971, "message": "Please wait"}]})]
        assert client_for(server, fake_time).total("Users") == 1
    assert fake_time.sleeps == [7.0]
    assert len(server.log) == 2


def test_5xx_is_retried_with_backoff():
    fake_time = FakeTime()
    with ScimServer(users=["a@x.com"]) as server:
        server.forced = [(502, {}, {"errors": [{"code": 1, "message": "bad gateway"}]}), (503, {}, {"detail": "busy"})]
        assert client_for(server, fake_time).total("Users") == 1
    assert len(fake_time.sleeps) == 2 and all(0 < delay <= 2 for delay in fake_time.sleeps)


def test_error_text_echoing_the_token_is_redacted():
    with ScimServer() as server:
        server.forced = [(400, {}, {"detail": "bad header: Bearer %s" % TOKEN})]
        with pytest.raises(cf.CloudflareError) as info:
            client_for(server).total("Users")
    assert info.value.status == 400
    assert TOKEN not in str(info.value)


def test_non_json_answer_is_an_error():
    with ScimServer() as server:
        server.forced = [(200, {}, "not-a-document")]
        with pytest.raises(cf.CloudflareError):
            client_for(server).list_all("Users")


# ------------------------------------------------------------------------------------------------ the check

def test_check_reports_counts_missing_and_deprecated_groups():
    groups = ["Engineers", "CF-%s - Administrator" % ACCOUNT, "cloudflare-v1-admin"]
    with ScimServer(users=["alice@example.com", "Bob@example.com"], groups=groups) as server:
        result, message, warnings = check_for(server, expect_users=["alice@example.com", "bob@example.com", "carol@example.com"],
                                              expect_groups=["Engineers", "Finance"], fail_on_missing=True).run()
    assert result["reachable"] is True and result["token_valid"] is True
    assert result["users"] == 2 and result["groups"] == 3 and result["system_groups"] == 1
    assert result["missing_users"] == ["carol@example.com"]
    assert result["missing_groups"] == ["Finance"]
    assert result["deprecated_groups"] == [{"id": "g1", "display_name": groups[1], "account_id": ACCOUNT, "role": "Administrator"}]
    assert result["service_provider_config"]["patch_supported"] is True
    assert result["changed"] is False and result["polls"] == 1
    assert message.startswith("Expected objects are missing in Cloudflare: users carol@example.com; groups Finance.")
    assert any("different letter case" in item for item in warnings)
    assert any("deprecated by Cloudflare since 2025-06-02" in item for item in warnings)
    assert_no_token(result, message, warnings)


def test_check_without_expectations_only_counts_users():
    with ScimServer(users=["a@x.com", "b@x.com"], groups=["Engineers"]) as server:
        result, message, warnings = check_for(server).run()
    assert message is None and warnings == []
    assert result["users"] == 2 and result["groups"] == 1
    assert [entry["path"].rsplit("/", 1)[1] for entry in server.log] == ["Users", "ServiceProviderConfig", "Groups"]


def test_fail_on_missing_false_reports_without_failing():
    with ScimServer(users=[]) as server:
        result, message, dummy = check_for(server, expect_users=["a@x.com"], fail_on_missing=False).run()
    assert message is None
    assert result["missing_users"] == ["a@x.com"]


def test_rejected_token_reports_token_valid_false_without_the_token():
    with ScimServer(users=["a@x.com"]) as server:
        server.token = "another-token-that-is-current-0000"
        result, message, warnings = check_for(server, expect_users=["a@x.com"]).run()
    assert result["reachable"] is True
    assert result["token_valid"] is False
    assert "the SCIM token was rejected (HTTP 401)" in message
    assert "account-owned" in message
    assert len(server.log) == 1  # nothing else is tried with a rejected token
    assert_no_token(result, message, warnings)


def test_token_without_permission_reports_403_message():
    with ScimServer() as server:
        server.forbidden = True
        result, message, dummy = check_for(server).run()
    assert result["token_valid"] is False
    assert "the token lacks the SCIM Provisioning permission (HTTP 403)" in message


def test_unknown_account_is_a_404_with_token_validity_unknown():
    with ScimServer() as server:
        check = cf.ScimCheck(client_for(server, account="f" * 32))
        result, message, dummy = check.run()
    assert result["reachable"] is True and result["token_valid"] is None
    assert "HTTP 404" in message and "check account_id and api_endpoint" in message


def test_unreachable_endpoint():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fake_time = FakeTime()
    client = cf.CloudflareScimClient(ACCOUNT, TOKEN, api_endpoint="http://127.0.0.1:%d/client/v4" % port, timeout=2,
                                     sleep=fake_time.sleep, clock=fake_time.clock)
    result, message, dummy = cf.ScimCheck(client).run()
    assert result["reachable"] is False and result["token_valid"] is None
    assert message.startswith("Cloudflare SCIM check failed: the Cloudflare SCIM endpoint is not reachable")
    assert TOKEN not in message


def test_missing_service_provider_config_is_only_a_warning():
    with ScimServer(users=["a@x.com"]) as server:
        server.spc = None

        original = server.handle

        def handle(handler):
            if handler.path.endswith("/ServiceProviderConfig"):
                return server.reply(handler, 404, {"detail": "not here"})
            return original(handler)

        server.handle = handle
        result, message, warnings = check_for(server).run()
    assert message is None
    assert result["service_provider_config"] == {}
    assert any(item.startswith("Could not read ServiceProviderConfig") for item in warnings)


def test_wait_polls_until_expected_objects_arrive():
    fake_time = FakeTime()
    with ScimServer(users=["a@x.com"], groups=[]) as server:
        listings = []

        def arrive(resource):
            listings.append(resource)
            if len(listings) == 5:  # third poll (users+groups per poll): everything is there
                server.users.append({"id": "u9", "userName": "b@x.com"})
                server.groups.append({"id": "g9", "displayName": "Engineers"})

        server.on_list = arrive
        result, message, dummy = check_for(server, fake_time, expect_users=["a@x.com", "b@x.com"], expect_groups=["Engineers"],
                                           wait_timeout=600).run()
    assert message is None
    assert result["missing_users"] == [] and result["missing_groups"] == []
    assert result["polls"] == 3
    assert fake_time.sleeps == [2, 4]


def test_wait_gives_up_at_the_timeout():
    fake_time = FakeTime()
    with ScimServer(users=[]) as server:
        result, message, dummy = check_for(server, fake_time, expect_users=["late@x.com"], wait_timeout=20).run()
    assert result["missing_users"] == ["late@x.com"]
    assert "after waiting 20 seconds" in message
    assert sum(fake_time.sleeps) == 20
    assert fake_time.sleeps == [2, 4, 8, 6]


def test_duplicate_expectations_are_reported_once():
    with ScimServer(users=[]) as server:
        result, message, dummy = check_for(server, expect_users=["a@x.com", "b@x.com", "a@x.com"]).run()
    assert result["missing_users"] == ["a@x.com", "b@x.com"]
    assert "users a@x.com, b@x.com." in message


def test_no_wait_means_one_poll():
    fake_time = FakeTime()
    with ScimServer(users=[]) as server:
        result, dummy, dummy2 = check_for(server, fake_time, expect_users=["late@x.com"], wait_timeout=0).run()
    assert result["polls"] == 1 and fake_time.sleeps == []

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GraphClient against a real local HTTPS Graph stand-in: verbs, errors, paging, OData quoting, $batch, 401 refresh."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._auth import AccessTokenAuth, ClientSecretAuth
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError, failure_message
from ansible_collections.entrascim.cloudflare.plugins.module_utils._graph import (
    GraphClient, batch_error, batch_get, encode_query, filter_eq, odata_literal, odata_quote,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils._transport import RetryPolicy, Transport
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import CLIENT_ID, CLIENT_SECRET, TENANT_ID
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_servers import Reply, graph_error


@pytest.fixture
def client(fake_ms, pki, fake_clock, tmp_path):
    transport = Transport(ca_path=pki.ca_path, timeout=10, sleep=fake_clock.sleep, clock=fake_clock.clock, rand=lambda: 0.0,
                          retry=RetryPolicy(max_attempts=5, deadline=120))
    auth = ClientSecretAuth(TENANT_ID, CLIENT_ID, CLIENT_SECRET, fake_ms.base_url, fake_ms.graph_endpoint, transport,
                            cache_dir=str(tmp_path / "cache"))
    return GraphClient(transport, auth, fake_ms.graph_endpoint)


def test_odata_quote_doubles_single_quotes():
    assert odata_quote("O'Brien") == "'O''Brien'"
    assert odata_quote("it''s") == "'it''''s'"
    assert odata_quote("plain") == "'plain'"


def test_filter_eq_builds_an_and_of_equalities():
    assert filter_eq(displayName="O'Brien", applicationTemplateId="8adf8e6e-67b2-4cf2-a259-e3dc5476c621") == (
        "displayName eq 'O''Brien' and applicationTemplateId eq '8adf8e6e-67b2-4cf2-a259-e3dc5476c621'")
    assert filter_eq({"servicePrincipal/id": "sp-1"}, accountEnabled=True) == "servicePrincipal/id eq 'sp-1' and accountEnabled eq true"
    assert odata_literal(None) == "null" and odata_literal(3) == "3" and odata_literal(False) == "false"
    with pytest.raises(ValueError):
        filter_eq()


def test_query_strings_are_percent_encoded():
    query = encode_query({"$filter": filter_eq(userPrincipalName="a+b@contoso.com", displayName="O'Brien & co"),
                          "$select": ["id", "displayName"], "$count": True, "$skip": None})
    assert query == ("$filter=userPrincipalName%20eq%20'a%2Bb@contoso.com'%20and%20displayName%20eq%20'O''Brien%20%26%20co'"
                     "&$select=id,displayName&$count=true")


def test_get_sends_the_token_and_the_escaped_filter(client, fake_ms):
    fake_ms.add("GET", "/v1.0/servicePrincipals", Reply(200, {"value": [{"id": "sp-1"}]}))
    result = client.get("servicePrincipals", params={"$filter": filter_eq(displayName="O'Brien's app")}, select=["id", "appId"])
    assert result == {"value": [{"id": "sp-1"}]}
    request = fake_ms.recorded("GET", "/v1.0/servicePrincipals")[0]
    assert request.raw_query == "$filter=displayName%20eq%20'O''Brien''s%20app'&$select=id,appId"
    assert request.query["$filter"] == ["displayName eq 'O''Brien''s app'"]
    assert request.headers["authorization"].startswith("Bearer tok-")
    assert request.headers["accept"] == "application/json"
    assert request.headers["client-request-id"]


def test_write_verbs_send_json_and_parse_answers(client, fake_ms):
    fake_ms.add("POST", "/v1.0/applicationTemplates/tpl/instantiate", Reply(201, {"application": {"id": "app-1"}}))
    fake_ms.add("PATCH", "/v1.0/servicePrincipals/sp-1", Reply(204))
    fake_ms.add("PUT", "/v1.0/servicePrincipals/sp-1/synchronization/secrets", Reply(204))
    fake_ms.add("DELETE", "/v1.0/applications/app-1", Reply(204))
    assert client.post("applicationTemplates/tpl/instantiate", {"displayName": "Cloudflare"}) == {"application": {"id": "app-1"}}
    assert client.patch("servicePrincipals/sp-1", {"notes": "x"}) is None
    assert client.put("servicePrincipals/sp-1/synchronization/secrets", {"value": []}) is None
    assert client.delete("/applications/app-1") is None
    post = fake_ms.recorded("POST")[-1]
    assert post.json() == {"displayName": "Cloudflare"}
    assert post.headers["content-type"] == "application/json"
    assert fake_ms.recorded("DELETE")[0].body == b""
    assert client.request_count == 4


def test_errors_raise_graph_error_with_request_id_and_unwrapped_message(client, fake_ms):
    nested = json.dumps({"error": {"code": "InvalidNotificationSettings", "message": "Notification e-mail is not valid."}})
    fake_ms.add("PUT", "/v1.0/servicePrincipals/sp-1/synchronization/secrets",
                graph_error(400, "UnknownError", nested, request_id="rid-secrets"))
    with pytest.raises(GraphError) as info:
        client.put("servicePrincipals/sp-1/synchronization/secrets", {"value": []})
    err = info.value
    assert (err.status, err.code, err.outer_code, err.request_id) == (400, "InvalidNotificationSettings", "UnknownError", "rid-secrets")
    assert err.message == "Notification e-mail is not valid."
    assert err.method == "PUT" and err.url.endswith("/v1.0/servicePrincipals/sp-1/synchronization/secrets")
    assert failure_message("save synchronization secrets", err) == (
        "Failed to save synchronization secrets: InvalidNotificationSettings: Notification e-mail is not valid. (request-id rid-secrets)")


def test_request_id_from_the_header_when_the_body_has_none(client, fake_ms):
    fake_ms.add("GET", "/v1.0/things", Reply(409, body="conflict", headers={"request-id": "hdr-rid"}))
    with pytest.raises(GraphError) as info:
        client.get("things")
    assert info.value.request_id == "hdr-rid"
    assert info.value.client_request_id


def test_paging_follows_next_link_across_three_pages_resending_headers(client, fake_ms):
    base = fake_ms.base_url + "/v1.0/users"
    fake_ms.add("GET", "/v1.0/users", lambda request: Reply(200, {
        "@odata.count": 5,
        "value": [{"id": "u1"}, {"id": "u2"}],
        "@odata.nextLink": base + "?$skiptoken=page2&$filter=x",
    }) if "$skiptoken" not in request.query else (
        Reply(200, {"value": [], "@odata.nextLink": base + "?$skiptoken=page3"}) if request.query["$skiptoken"] == ["page2"]
        else Reply(200, {"value": [{"id": "u3"}, {"id": "u4"}, {"id": "u5"}]})))
    users = client.list("users", params={"$count": "true"}, headers={"ConsistencyLevel": "eventual"}, select=["id"])
    assert [u["id"] for u in users] == ["u1", "u2", "u3", "u4", "u5"]
    pages = fake_ms.recorded("GET", "/v1.0/users")
    assert len(pages) == 3
    assert [p.raw_query for p in pages] == ["$count=true&$select=id", "$skiptoken=page2&$filter=x", "$skiptoken=page3"]
    assert all(p.headers.get("consistencylevel") == "eventual" for p in pages)
    assert client.list("users", headers={"ConsistencyLevel": "eventual"}, max_items=1) == [{"id": "u1"}]


def test_next_link_to_another_host_is_refused(client, fake_ms):
    fake_ms.add("GET", "/v1.0/users", Reply(200, {"value": [1], "@odata.nextLink": "https://127.0.0.2:1/v1.0/users?$skiptoken=x"}))
    with pytest.raises(GraphError) as info:
        client.list("users")
    assert info.value.code == "ForeignHost"
    assert len(fake_ms.recorded("GET", "/v1.0/users")) == 1


def test_a_paging_loop_is_stopped(client, fake_ms):
    fake_ms.add("GET", "/v1.0/users", Reply(200, {"value": [1], "@odata.nextLink": fake_ms.base_url + "/v1.0/users?$skiptoken=same"}))
    with pytest.raises(GraphError) as info:
        client.list("users")
    assert info.value.code == "PagingLoop"


def _batch_server(fake_ms, plan):
    """Answer $batch requests: ``plan`` maps request id -> list of (status, headers, body) answers, in order."""
    sent = []

    def answer(request):
        batch = request.json()["requests"]
        sent.append(batch)
        responses = []
        for item in reversed(batch):  # Graph may answer in any order
            status, headers, body = plan[item["id"]].pop(0) if len(plan[item["id"]]) > 1 else plan[item["id"]][0]
            responses.append({"id": item["id"], "status": status, "headers": headers, "body": body})
        return Reply(200, {"responses": responses})

    fake_ms.add("POST", "/v1.0/$batch", answer)
    return sent


def test_batch_partial_failure_and_per_item_429_retry(client, fake_ms, fake_clock):
    sent = _batch_server(fake_ms, {
        "1": [(201, {}, {"id": "assignment-1"})],
        "2": [(404, {}, {"error": {"code": "Request_ResourceNotFound", "message": "Principal not found.",
                                   "innerError": {"request-id": "rid-item-2"}}})],
        "3": [(429, {"Retry-After": "4"}, {"error": {"code": "TooManyRequests", "message": "later"}}), (201, {}, {"id": "assignment-3"})],
    })
    results = client.batch([
        {"method": "POST", "url": "/servicePrincipals/sp-1/appRoleAssignedTo", "body": {"principalId": "p1"}},
        {"method": "POST", "url": fake_ms.base_url + "/v1.0/servicePrincipals/sp-1/appRoleAssignedTo", "body": {"principalId": "p2"}},
        {"method": "POST", "url": "servicePrincipals/sp-1/appRoleAssignedTo", "body": {"principalId": "p3"}},
    ])
    assert [(r["id"], r["status"]) for r in results] == [("1", 201), ("2", 404), ("3", 201)]
    assert results[2]["body"] == {"id": "assignment-3"}
    assert fake_clock.sleeps == [4.0]
    assert [[item["id"] for item in batch] for batch in sent] == [["1", "2", "3"], ["3"]]
    first = sent[0][0]
    assert first["url"] == "/servicePrincipals/sp-1/appRoleAssignedTo"
    assert first["headers"] == {"Content-Type": "application/json"}
    assert sent[0][1]["url"] == "/servicePrincipals/sp-1/appRoleAssignedTo"
    assert batch_error(results[0]) is None
    err = batch_error(results[1])
    assert (err.status, err.code, err.request_id) == (404, "Request_ResourceNotFound", "rid-item-2")


def test_batch_chunks_of_twenty_keep_request_order(client, fake_ms):
    plan = dict((str(i), [(200, {}, {"n": i})]) for i in range(1, 46))
    sent = _batch_server(fake_ms, plan)
    results = client.batch([{"url": "/users/u%d" % i} for i in range(1, 46)])
    assert [len(batch) for batch in sent] == [20, 20, 5]
    assert [r["body"]["n"] for r in results] == list(range(1, 46))
    assert all(item["method"] == "GET" and "headers" not in item for batch in sent for item in batch)


def test_batch_429_retries_are_bounded(client, fake_ms, fake_clock):
    sent = _batch_server(fake_ms, {"a": [(429, {"retry-after": "2"}, {"error": {"code": "TooManyRequests", "message": "later"}})]})
    results = client.batch([{"id": "a", "url": "/users"}], max_attempts=3)
    assert results[0]["status"] == 429
    assert len(sent) == 3
    assert fake_clock.sleeps == [2.0, 2.0]


def test_batch_resends_reads_hit_by_a_server_error_but_not_creates(client, fake_ms, fake_clock):
    # like a plain request: a 5xx answer is retried for an idempotent method (GET), never for a POST
    outage = (503, {}, {"error": {"code": "serviceNotAvailable", "message": "The service is temporarily unavailable."}})
    sent = _batch_server(fake_ms, {"1": [outage, (200, {}, {"value": []})], "2": [outage]})
    results = client.batch([{"url": "/applications"}, {"method": "POST", "url": "/servicePrincipals", "body": {"appId": "a"}}])
    assert [(r["id"], r["status"]) for r in results] == [("1", 200), ("2", 503)]
    assert [[item["id"] for item in batch] for batch in sent] == [["1", "2"], ["1"]]
    assert len(fake_clock.sleeps) == 1 and fake_clock.sleeps[0] > 0


def test_batch_retry_drops_dependencies_already_answered(client, fake_ms):
    sent = _batch_server(fake_ms, {
        "1": [(201, {}, {"id": "x"})],
        "2": [(429, {"Retry-After": "1"}, {}), (204, {}, None)],
    })
    results = client.batch([{"id": "1", "method": "POST", "url": "/a", "body": {}},
                            {"id": "2", "method": "DELETE", "url": "/b", "dependsOn": ["1"]}])
    assert [r["status"] for r in results] == [201, 204]
    assert sent[0][1]["dependsOn"] == ["1"]
    assert "dependsOn" not in sent[1][0]


def test_batch_rejects_duplicate_ids(client):
    with pytest.raises(ValueError):
        client.batch([{"id": "1", "url": "/a"}, {"id": "1", "url": "/b"}])


def test_401_with_a_cached_token_refreshes_once(client, fake_ms):
    fake_ms.add("GET", "/v1.0/organization", Reply(200, {"value": [{"id": TENANT_ID}]}))
    first_token = client.token_provider.get_token()
    fake_ms.revoke(first_token)
    assert client.get("organization") == {"value": [{"id": TENANT_ID}]}
    tokens = [r.headers["authorization"][7:] for r in fake_ms.recorded("GET", "/v1.0/organization")]
    assert tokens[0] == first_token and tokens[1] != first_token
    assert fake_ms.token_requests == 2
    assert client.request_count == 2


def test_401_with_a_token_that_cannot_be_refreshed_fails_with_advice(fake_ms, pki):
    fake_ms.add("GET", "/v1.0/organization", Reply(200, {}))
    transport = Transport(ca_path=pki.ca_path, timeout=10)
    client = GraphClient(transport, AccessTokenAuth("stale-opaque-token-" + "y" * 16), fake_ms.graph_endpoint)
    with pytest.raises(GraphError) as info:
        client.get("organization")
    assert info.value.status == 401
    assert len(fake_ms.recorded("GET", "/v1.0/organization")) == 1
    assert "rejected the access token" in failure_message("read users", info.value)


def test_5xx_errors_after_retries_keep_the_attempt_count(client, fake_ms, fake_clock):
    fake_ms.add("GET", "/v1.0/things", Reply(502, body="<html>Bad gateway</html>", headers={"Content-Type": "text/html"}))
    with pytest.raises(GraphError) as info:
        client.get("things")
    assert info.value.status == 502
    assert info.value.attempts == 5
    assert info.value.message == "<html>Bad gateway</html>"
    assert len(fake_clock.sleeps) == 4


def test_a_callable_token_provider_is_accepted(fake_ms, pki):
    token = fake_ms.issue_token()
    fake_ms.add("GET", "/v1.0/me", Reply(200, {"ok": True}))
    client = GraphClient(Transport(ca_path=pki.ca_path), lambda: token, fake_ms.graph_endpoint + "/")
    assert client.base_url == fake_ms.base_url + "/v1.0"
    assert client.get("me") == {"ok": True}


class _BatchGetClient(object):
    """A client with ``batch``, ``get`` and ``iter_pages`` answering from ``pages`` (path -> list of pages)."""

    def __init__(self, pages, batch_status=None):
        self.pages = pages
        self.batch_status = batch_status
        self.calls = []

    def _page(self, path, index=0):
        if path not in self.pages:
            raise GraphError("Resource does not exist.", status=404, code="Request_ResourceNotFound")
        page = dict(self.pages[path][index])
        if index + 1 < len(self.pages[path]):
            page["@odata.nextLink"] = "https://graph.example/v1.0%s?$skiptoken=%d" % (path, index + 1)
        return page

    def batch(self, requests):
        self.calls.append(("batch", [item["url"] for item in requests]))
        if self.batch_status is not None:
            raise GraphError("batch refused", status=self.batch_status, code="BadRequest")
        items = []
        for index, item in enumerate(requests):
            try:
                items.append({"id": str(index + 1), "status": 200, "headers": {}, "body": self._page(item["url"].split("?")[0])})
            except GraphError as err:
                items.append({"id": str(index + 1), "status": err.status, "headers": {}, "body": {"error": {"code": err.code, "message": err.message}}})
        return items

    def get(self, path, params=None):
        self.calls.append(("get", path))
        return self._page(path)

    def iter_pages(self, url):
        self.calls.append(("next", url))
        path, dummy, token = url[len("https://graph.example/v1.0"):].partition("?$skiptoken=")
        index = int(token)
        while True:
            page = self._page(path, index)
            yield page
            if "@odata.nextLink" not in page:
                return
            index += 1


def test_batch_get_reads_in_one_batch_and_completes_paged_collections():
    client = _BatchGetClient({"/sp": [{"id": "sp"}], "/list": [{"value": [1, 2]}, {"value": [3]}, {"value": [4]}]})
    answers = batch_get(client, [("/sp", {"$select": "id"}), ("/list", None), ("/gone", None)])
    assert answers[0] == ({"id": "sp"}, None)
    assert answers[1] == ({"value": [1, 2, 3, 4]}, None)
    assert answers[2][0] is None and answers[2][1].status == 404
    assert client.calls[0] == ("batch", ["/sp?$select=id", "/list", "/gone"])
    assert [kind for kind, dummy in client.calls] == ["batch", "next"]


def test_batch_get_sends_a_single_read_plainly_and_falls_back_when_batch_is_refused():
    client = _BatchGetClient({"/sp": [{"id": "sp"}]})
    assert batch_get(client, [("/sp", None)]) == [({"id": "sp"}, None)]
    assert client.calls == [("get", "/sp")]
    refusing = _BatchGetClient({"/sp": [{"id": "sp"}], "/other": [{"id": "other"}]}, batch_status=400)
    assert batch_get(refusing, [("/sp", None), ("/other", None)]) == [({"id": "sp"}, None), ({"id": "other"}, None)]
    assert [kind for kind, dummy in refusing.calls] == ["batch", "get", "get"]
    down = _BatchGetClient({}, batch_status=None)
    down.batch = lambda requests: (item for item in ()).throw(GraphError("no answer", status=None, code="ConnectionError"))
    with pytest.raises(GraphError):
        batch_get(down, [("/a", None), ("/b", None)])

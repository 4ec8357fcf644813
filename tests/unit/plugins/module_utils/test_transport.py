# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transport against a real local HTTPS server: retries, Retry-After, deadline, TLS settings, proxies."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import email.utils
import http.client

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.plugins.module_utils._graph import GraphClient
from ansible_collections.entrascim.cloudflare.plugins.module_utils._transport import (
    RetryPolicy, Transport, parse_retry_after,
)
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_servers import RESET, Reply, graph_error

WALL_NOW = 1795000000.0


def make_transport(pki, clock, **kwargs):
    kwargs.setdefault("ca_path", pki.ca_path)
    kwargs.setdefault("retry", RetryPolicy(max_attempts=6, backoff_base=1.0, backoff_max=30.0, deadline=180.0, jitter=0.5))
    return Transport(sleep=clock.sleep, clock=clock.clock, now=lambda: WALL_NOW, rand=lambda: 0.5, **kwargs)


def url(server, path="/v1.0/things"):
    return server.base_url + path


def test_429_waits_exactly_retry_after_seconds(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", graph_error(429, "TooManyRequests", "Please retry again later.", headers={"Retry-After": "7"}),
                Reply(200, {"value": []}))
    transport = make_transport(pki, fake_clock)
    response = transport.request("GET", url(fake_ms))
    assert response.status_code == 200
    assert fake_clock.sleeps == [7.0]
    assert response.retry_attempts == 2
    assert len(fake_ms.recorded("GET", "/v1.0/things")) == 2


def test_429_retry_after_as_http_date(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    when = email.utils.formatdate(WALL_NOW + 30, usegmt=True)
    fake_ms.add("POST", "/v1.0/things", Reply(429, {"error": {"code": "TooManyRequests", "message": "later"}}, headers={"Retry-After": when}),
                Reply(201, {"id": "1"}))
    transport = make_transport(pki, fake_clock)
    # A POST is retried on 429: a throttled request was not processed.
    assert transport.request("POST", url(fake_ms), json={"a": 1}).status_code == 201
    assert fake_clock.sleeps == [30.0]


def test_503_honours_retry_after_and_backs_off_without_it(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", graph_error(503, "ServiceUnavailable", "busy", headers={"Retry-After": "2"}),
                graph_error(503, "ServiceUnavailable", "busy"), Reply(200, {"ok": True}))
    transport = make_transport(pki, fake_clock)
    assert transport.request("GET", url(fake_ms)).json() == {"ok": True}
    # second wait: back-off for attempt 2 = 2 s minus jitter (0.5 * 0.5) = 1.5 s
    assert fake_clock.sleeps == [2.0, 1.5]


def test_5xx_back_off_exponentially_with_jitter(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", graph_error(500, "InternalServerError", "x"), graph_error(502, "BadGateway", "x"),
                graph_error(504, "GatewayTimeout", "x"), Reply(200, {"ok": True}))
    transport = make_transport(pki, fake_clock)
    assert transport.request("GET", url(fake_ms)).status_code == 200
    assert fake_clock.sleeps == [0.75, 1.5, 3.0]
    assert transport.attempts == 4


def test_post_is_not_retried_on_500(fake_ms, pki, fake_clock):
    """instantiate is not idempotent: a 500 may have created the app, a retry would duplicate it."""
    fake_ms.require_auth = False
    fake_ms.add("POST", "/v1.0/things", graph_error(500, "InternalServerError", "x"), Reply(201, {"id": "dup"}))
    transport = make_transport(pki, fake_clock)
    assert transport.request("POST", url(fake_ms), json={}).status_code == 500
    assert fake_clock.sleeps == []
    assert len(fake_ms.recorded("POST", "/v1.0/things")) == 1
    # ... unless the caller says the POST is safe to repeat.
    fake_ms.add("POST", "/v1.0/things", graph_error(500, "InternalServerError", "x"), Reply(204))
    assert transport.request("POST", url(fake_ms), json={}, idempotent=True).status_code == 204


def test_connection_reset_is_retried_for_get(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", RESET, RESET, Reply(200, {"ok": 1}))
    transport = make_transport(pki, fake_clock)
    assert transport.request("GET", url(fake_ms)).json() == {"ok": 1}
    assert len(fake_ms.recorded("GET", "/v1.0/things")) == 3
    assert fake_clock.sleeps == [0.75, 1.5]


def test_connection_reset_after_a_post_was_sent_is_not_retried(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("POST", "/v1.0/things", RESET, Reply(201, {}))
    transport = make_transport(pki, fake_clock)
    with pytest.raises(GraphError) as info:
        transport.request("POST", url(fake_ms), json={})
    assert info.value.status is None
    assert info.value.code == "ConnectionError"
    assert "127.0.0.1:%d" % fake_ms.port in info.value.message
    assert len(fake_ms.recorded("POST", "/v1.0/things")) == 1


def test_connection_refused_is_retried_even_for_post(pki, fake_clock):
    """Nothing was sent when the connection is refused, so even a POST may be retried; it ends in ConnectionError."""
    transport = make_transport(pki, fake_clock, retry=RetryPolicy(max_attempts=3, jitter=0))
    with pytest.raises(GraphError) as info:
        transport.request("POST", "https://127.0.0.1:1/v1.0/things", json={})
    assert info.value.code == "ConnectionError"
    assert info.value.attempts == 3
    assert fake_clock.sleeps == [1.0, 2.0]


def test_deadline_exceeded_stops_retrying(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", graph_error(503, "ServiceUnavailable", "The service is unavailable.", request_id="rid-503"))
    transport = make_transport(pki, fake_clock, retry=RetryPolicy(max_attempts=100, backoff_base=1, backoff_max=8, deadline=20, jitter=0))
    client = GraphClient(transport, lambda: "unused-token", fake_ms.graph_endpoint)
    with pytest.raises(GraphError) as info:
        client.get("things")
    # waits 1 + 2 + 4 + 8 = 15 s; the next 8 s wait would pass the 20 s deadline
    assert fake_clock.sleeps == [1, 2, 4, 8]
    assert sum(fake_clock.sleeps) <= 20
    assert info.value.status == 503
    assert info.value.attempts == 5
    assert info.value.request_id == "rid-503"
    assert len(fake_ms.recorded("GET", "/v1.0/things")) == 5


def test_retry_after_beyond_the_deadline_is_not_waited_for(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", graph_error(429, "TooManyRequests", "later", headers={"Retry-After": "3600"}))
    transport = make_transport(pki, fake_clock, retry=RetryPolicy(deadline=60))
    response = transport.request("GET", url(fake_ms))
    assert response.status_code == 429
    assert fake_clock.sleeps == []


def test_max_attempts_bound(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", graph_error(500, "InternalServerError", "boom"))
    transport = make_transport(pki, fake_clock, retry=RetryPolicy(max_attempts=3))
    assert transport.request("GET", url(fake_ms)).status_code == 500
    assert len(fake_ms.recorded("GET", "/v1.0/things")) == 3


def test_4xx_are_not_retried(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", graph_error(404, "Request_ResourceNotFound", "gone"))
    transport = make_transport(pki, fake_clock)
    assert transport.request("GET", url(fake_ms)).status_code == 404
    assert fake_clock.sleeps == []


def test_ca_path_beats_requests_ca_bundle(fake_ms, pki, fake_clock, monkeypatch):
    """REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE (set by the hermetic_env fixture) do not contain our CA."""
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", Reply(200, {"ok": True}))
    assert pki.other_bundle_path.endswith("other-bundle.pem")
    transport = make_transport(pki, fake_clock)
    assert transport.request("GET", url(fake_ms)).status_code == 200
    # msal calls the session without any verify argument: ca_path must still apply.
    assert transport.session.get(url(fake_ms)).status_code == 200
    assert transport.session.post(url(fake_ms, "/v1.0/missing"), data={"a": "b"}).status_code == 404


def test_without_ca_path_the_environment_bundle_applies_and_tls_fails_clearly(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", Reply(200, {"ok": True}))
    transport = make_transport(pki, fake_clock, ca_path=None)
    with pytest.raises(GraphError) as info:
        transport.request("GET", url(fake_ms))
    assert info.value.code == "TLSError"
    assert "ca_path" in info.value.message
    assert fake_clock.sleeps == []  # TLS failures are not retried


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_validate_certs_false_skips_verification(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", Reply(200, {"ok": True}))
    transport = make_transport(pki, fake_clock, ca_path=None, validate_certs=False)
    assert transport.request("GET", url(fake_ms)).status_code == 200
    assert transport.session.get(url(fake_ms)).status_code == 200


def test_proxy_from_the_environment_is_used(fake_ms, pki, fake_clock, proxy, monkeypatch):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", Reply(200, {"ok": True}))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    transport = make_transport(pki, fake_clock)
    assert transport.request("GET", url(fake_ms)).status_code == 200
    assert proxy.tunnels == ["127.0.0.1:%d" % fake_ms.port]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    fresh = make_transport(pki, fake_clock)
    assert fresh.request("GET", url(fake_ms)).status_code == 200
    assert len(proxy.tunnels) == 1


def test_one_connection_is_kept_alive_for_several_requests(fake_ms, pki, fake_clock, monkeypatch):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", Reply(200, {"n": 1}), Reply(200, {"n": 2}), RESET, Reply(200, {"n": 3}))
    connects = []
    original = http.client.HTTPSConnection.connect
    monkeypatch.setattr(http.client.HTTPSConnection, "connect", lambda self: connects.append(self.host) or original(self))
    transport = make_transport(pki, fake_clock)
    assert [transport.request("GET", url(fake_ms)).json()["n"] for dummy in range(3)] == [1, 2, 3]
    # one TLS connection for the first two answers; the reset one is replaced by a new connection
    assert connects == ["127.0.0.1", "127.0.0.1"]
    assert fake_clock.sleeps == [0.75]


def test_response_text_json_and_headers(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    body = "{\"name\": \"Zo\u00eb\"}".encode("latin-1")
    fake_ms.add("GET", "/v1.0/things", Reply(200, body=body, headers={"Content-Type": "application/json; charset=ISO-8859-1", "X-Thing": "1"}))
    response = make_transport(pki, fake_clock).request("GET", url(fake_ms), params={"filter": 'userName eq "a b"'})
    assert response.json() == {"name": "Zo\u00eb"} and response.headers["x-thing"] == response.headers.get("X-THING") == "1"
    assert "X-Thing" in response.headers and response.request.method == "GET"
    assert fake_ms.requests[-1].raw_query == "filter=userName+eq+%22a+b%22"


def test_user_agent_and_timeout_defaults(fake_ms, pki, fake_clock):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/things", Reply(200, {}))
    transport = make_transport(pki, fake_clock, timeout=7)
    transport.session.get(url(fake_ms))
    assert "entrascim.cloudflare" in fake_ms.requests[-1].headers["user-agent"]
    assert transport.session.default_timeout == 7


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), (" 5 ", 5.0), ("0", 0.0), ("-3", 0.0), ("soon", None), ("", None), (None, None),
    (email.utils.formatdate(WALL_NOW + 90, usegmt=True), 90.0),
    (email.utils.formatdate(WALL_NOW - 90, usegmt=True), 0.0),
])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=WALL_NOW) == expected


def test_backoff_is_capped_and_jittered():
    policy = RetryPolicy(backoff_base=1, backoff_max=10, jitter=0.5)
    assert [policy.backoff(n, lambda: 0.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.backoff(3, lambda: 1.0) == 2.0
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)

"""Fault injection at configured rates (statistically, seeded), latency per operation, profiles (faults.py)."""

import concurrent.futures
import json
import math
import time
import uuid

import pytest

from tests.emulator import faults as fault_config
from tests.emulator.harness import EmulatorError
from tests.emulator.tests.clients import admin_refusal

ALICE = "a1b2c3d4-0001-4000-8000-000000000001"


def _within(count, trials, rate, sigmas=4.5):
    expected = trials * rate
    spread = sigmas * math.sqrt(trials * rate * (1 - rate))
    return expected - spread <= count <= expected + spread


def _statuses(graph, trials, path="/users/" + ALICE):
    return [graph.get(path).status_code for _index in range(trials)]


def test_429_and_503_at_configured_rates(graph, faults):
    faults({"rate_429": 0.2, "rate_503": 0.1, "retry_after": 1, "seed": 11})
    statuses = _statuses(graph, 400)
    throttled, unavailable = statuses.count(429), statuses.count(503)
    assert _within(throttled, 400, 0.2)
    assert _within(unavailable, 400 * 0.8, 0.1)  # the 503 roll happens only when no 429 was drawn
    assert statuses.count(200) == 400 - throttled - unavailable


def test_throttled_response_carries_retry_after_and_graph_body(graph, faults):
    faults({"rate_429": 1.0, "retry_after": 3})
    response = graph.get("/users/" + ALICE)
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    error = response.json()["error"]
    assert error["code"] == "TooManyRequests" and error["innerError"]["status"] == "429"
    faults({"rate_503": 1.0})
    response = graph.get("/users/" + ALICE)
    assert response.status_code == 503 and response.json()["error"]["code"] == "serviceNotAvailable"


def test_same_seed_same_faults(graph, faults):
    faults({"rate_429": 0.5, "seed": 99})
    first = _statuses(graph, 40)
    faults({"rate_429": 0.5, "seed": 99})
    assert _statuses(graph, 40) == first
    faults({"rate_429": 0.5, "seed": 100})
    assert _statuses(graph, 40) != first


def test_rates_per_operation(graph, faults):
    faults({"rate_429": {"default": 0.0, "groups.get": 1.0}})
    assert set(_statuses(graph, 10)) == {200}
    assert set(_statuses(graph, 5, "/groups/b1c2d3e4-0001-4000-8000-000000000001")) == {429}


def test_latency_per_operation_does_not_block_other_requests(graph, faults):
    faults({"latency_ms": {"default": 0, "users.get": 400}})
    started = time.monotonic()
    graph.get("/groups/b1c2d3e4-0001-4000-8000-000000000001")
    assert time.monotonic() - started < 0.3
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _i: graph.get("/users/" + ALICE).status_code, range(4)))
    elapsed = time.monotonic() - started
    assert results == [200] * 4
    assert 0.4 <= elapsed < 1.2  # four delayed requests in parallel, not 1.6 s in a row


def test_batch_latency_is_that_of_its_slowest_item_unless_sequential(graph, faults):
    # Graph runs the items of a batch without dependsOn in parallel, those with dependsOn one after the other.
    faults({"latency_ms": {"default": 0, "users.get": 400}})
    parallel = [{"id": str(i), "method": "GET", "url": "/users/" + ALICE} for i in range(1, 4)]
    started = time.monotonic()
    response = graph.post("/$batch", {"requests": parallel})
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and [r["status"] for r in response.json()["responses"]] == [200] * 3
    assert 0.4 <= elapsed < 1.1  # one item's latency, not 1.2 s
    sequential = [dict(item, dependsOn=[str(int(item["id"]) - 1)]) if item["id"] != "1" else item for item in parallel]
    started = time.monotonic()
    assert graph.post("/$batch", {"requests": sequential}).status_code == 200
    assert time.monotonic() - started >= 1.2


def test_time_scale_shrinks_latency_and_lag(graph, faults):
    faults({"latency_ms": {"default": 0, "users.get": 1000}, "time_scale": 0.1})
    started = time.monotonic()
    graph.get("/users/" + ALICE)
    assert 0.1 <= time.monotonic() - started < 0.5


def test_profiles_and_config_validation(emulator, tmp_path):
    realistic = emulator.set_faults("realistic")
    try:
        assert realistic["profile"] == "realistic" and 0 < realistic["rate_429"] <= 0.05 and realistic["replication_lag_s"] > 0
        assert realistic["instantiate_404_rate"] == pytest.approx(0.2)
        harsh = emulator.set_faults({"profile": "harsh", "time_scale": 0.5})
        assert harsh["rate_429"] > realistic["rate_429"] and harsh["rate_503"] > realistic["rate_503"] and harsh["time_scale"] == 0.5
        assert emulator.set_faults({"latency_ms": 5})["latency_ms"]["default"] == 5
    finally:
        emulator.set_faults("none")
    refused = [
        ({"rate_429": 2}, "rate_429 must be a number between 0 and 1"),
        ({"latancy_ms": 5}, "unknown fault config keys: latancy_ms (known: instantiate_404_rate, instantiate_503_after_create, "
                            "instantiate_503_retry_after, latency_ms, profile, rate_429, rate_503, replication_lag_s, reports_throttle, "
                            "retry_after, seed, time_scale)"),
        ({"profile": "brutal"}, "unknown fault profile or unreadable file 'brutal' (No such file or directory); profiles: harsh, none, "
                                "realistic"),
        ({"seed": "x"}, "seed must be an integer"),
        ({"latency_ms": {"default": -1}}, "latency_ms.default must be a non-negative number"),
    ]
    for bad, message in refused:
        with pytest.raises(EmulatorError) as failure:
            emulator.set_faults(bad)
        assert str(failure.value) == admin_refusal("/faults", message)
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"profile": "realistic", "rate_503": 0.0}))
    assert fault_config.resolve(str(path))["rate_503"] == 0.0
    with pytest.raises(fault_config.FaultConfigError):
        fault_config.resolve(str(tmp_path / "missing.json"))


def test_token_endpoint_and_admin_api_are_not_throttled(emulator, faults):
    faults({"rate_429": 1.0, "rate_503": 1.0})
    assert emulator.token()
    assert emulator.state()["tenant_id"] == emulator.tenant_id


def test_instantiate_503_after_create_acts_then_answers_503(emulator, graph, faults):
    """The next N instantiate calls create the app and its service principal, then answer 503 (with or without
    Retry-After); later calls, other operations and refused instantiates are untouched and do not use the count up."""
    template = "/applicationTemplates/8adf8e6e-67b2-4cf2-a259-e3dc5476c621/instantiate"

    def named(name):
        return graph.all(graph.filter_path("applications", "displayName eq '%s'" % name))

    config = faults({"instantiate_503_after_create": 2, "instantiate_503_retry_after": 3})
    assert config["instantiate_503_after_create"] == 2 and config["instantiate_503_retry_after"] == 3
    name = "acts then 503 %s" % uuid.uuid4().hex[:6]
    assert graph.post(template, {}).status_code == 400, "a refused call creates nothing and uses no count"
    assert graph.get("/users/" + ALICE).status_code == 200
    assert emulator.faults()["instantiate_503_after_create"] == 2
    response = graph.post(template, {"displayName": name})
    assert response.status_code == 503 and response.headers["Retry-After"] == "3"
    error = response.json()["error"]
    assert error["code"] == "serviceNotAvailable" and error["innerError"]["request-id"] == response.headers["request-id"]
    created = named(name)
    assert len(created) == 1, "the call that answered 503 created the application"
    sps = graph.all(graph.filter_path("servicePrincipals", "appId eq '%s'" % created[0]["appId"]))
    assert len(sps) == 1, "and its service principal"
    assert emulator.faults()["instantiate_503_after_create"] == 1
    assert graph.post(template, {"displayName": name}).status_code == 503
    response = graph.post(template, {"displayName": name})
    assert response.status_code == 201, "the count is used up"
    assert len(named(name)) == 3, "each of the three calls created an app: a client that retries a 503 makes duplicates"
    assert emulator.faults()["instantiate_503_after_create"] == 0

    faults({"instantiate_503_after_create": 1, "instantiate_404_rate": 1.0})
    other = "acts then 503 %s" % uuid.uuid4().hex[:6]
    response = graph.post(template, {"displayName": other})
    assert response.status_code == 503 and "Retry-After" not in response.headers, "no Retry-After unless configured"
    assert graph.post(template, {"displayName": other}).status_code == 404, "then instantiate_404_rate applies again"
    assert len(named(other)) == 2
    assert emulator.set_faults("none")["instantiate_503_after_create"] == 0

    count = ("instantiate_503_after_create must be a non-negative integer (how many of the next instantiate calls create the objects "
             "and answer 503)")
    delay = "instantiate_503_retry_after must be a non-negative number"
    for bad, message in (({"instantiate_503_after_create": -1}, count), ({"instantiate_503_after_create": 1.5}, count),
                         ({"instantiate_503_after_create": True}, count), ({"instantiate_503_retry_after": -1}, delay),
                         ({"instantiate_503_retry_after": "soon"}, delay)):
        with pytest.raises(EmulatorError) as failure:
            emulator.set_faults(bad)
        assert str(failure.value) == admin_refusal("/faults", message)

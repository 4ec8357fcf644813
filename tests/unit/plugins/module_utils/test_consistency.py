# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Eventual-consistency helpers: waits with consecutive reads, replication retries, bounded by time."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._consistency import (
    ConsistencyTimeout, is_replication_error, retry_replication, wait_until_visible,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError, failure_details, failure_message
from ansible_collections.entrascim.cloudflare.plugins.module_utils._graph import GraphClient
from ansible_collections.entrascim.cloudflare.plugins.module_utils._transport import Transport
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_servers import Reply, graph_error


def not_found():
    return graph_error(404, "Request_ResourceNotFound", "Resource 'sp-1' does not exist or one of its queried "
                       "reference-property objects are not present.", request_id="rid-404")


def scripted(*outcomes):
    """A read/call that returns or raises each outcome in turn (the last one repeats)."""
    outcomes = list(outcomes)
    calls = []

    def call():
        calls.append(1)
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    call.calls = calls
    return call


def gerr(status, code, message="x", request_id=None):
    return GraphError(message, status=status, code=code, request_id=request_id)


def test_wait_until_visible_against_the_server(fake_ms, pki, fake_clock):
    fake_ms.add("GET", "/v1.0/servicePrincipals/sp-1", not_found(), not_found(), Reply(200, {"id": "sp-1"}),
                Reply(200, {"id": "sp-1"}), Reply(200, {"id": "sp-1", "appRoles": []}))
    client = GraphClient(Transport(ca_path=pki.ca_path), fake_ms.issue_token, fake_ms.graph_endpoint)
    messages = []
    value = wait_until_visible(lambda: client.get("servicePrincipals/sp-1"), timeout=120, sleep=fake_clock.sleep,
                               clock=fake_clock.clock, progress=messages.append, what="service principal sp-1")
    assert value == {"id": "sp-1", "appRoles": []}
    assert fake_clock.sleeps == [1.0, 2.0, 1.0, 1.0]
    assert len(messages) == 5
    assert messages[0].startswith("waiting for service principal sp-1: read 1, not visible yet (HTTP 404 Request_ResourceNotFound")
    assert messages[-1].startswith("waiting for service principal sp-1: read 5, visible (3 of 3 consecutive reads)")
    assert len(fake_ms.recorded("GET", "/v1.0/servicePrincipals/sp-1")) == 5


def test_a_failed_read_resets_the_consecutive_count(fake_clock):
    read = scripted("v", gerr(404, "Request_ResourceNotFound"), "v", "v", gerr(403, "Authorization_RequestDenied"), "v", "v", "v")
    assert wait_until_visible(read, timeout=300, sleep=fake_clock.sleep, clock=fake_clock.clock) == "v"
    assert len(read.calls) == 8


def test_wait_times_out_naming_what_and_how_long(fake_clock):
    read = scripted(gerr(404, "Request_ResourceNotFound", "Resource 'sp-9' does not exist.", request_id="rid-9"))
    with pytest.raises(ConsistencyTimeout) as info:
        wait_until_visible(read, timeout=60, sleep=fake_clock.sleep, clock=fake_clock.clock, what="service principal sp-9")
    err = info.value
    # back-off from 1 s, capped at 10 s, never past the timeout
    assert fake_clock.sleeps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0]
    assert sum(fake_clock.sleeps) <= 60
    assert err.what == "service principal sp-9"
    assert err.waited == 55
    assert err.status == 404 and err.code == "Request_ResourceNotFound" and err.request_id == "rid-9"
    assert str(err.message).startswith("service principal sp-9 was not consistently visible after 55 s (0 of 3 consecutive")
    assert "Resource 'sp-9' does not exist." in err.message
    assert failure_message("read service principal", err).startswith(
        "Failed to read service principal: Request_ResourceNotFound: service principal sp-9 was not consistently visible")
    assert failure_details(err)["request_id"] == "rid-9"


def test_other_errors_are_not_waited_for(fake_clock):
    read = scripted(gerr(400, "Request_BadRequest", "Invalid filter clause"))
    with pytest.raises(GraphError) as info:
        wait_until_visible(read, timeout=60, sleep=fake_clock.sleep, clock=fake_clock.clock)
    assert not isinstance(info.value, ConsistencyTimeout)
    assert fake_clock.sleeps == []


def test_custom_not_yet_predicate_and_consecutive_count(fake_clock):
    read = scripted(gerr(409, "Conflict"), "v")
    assert wait_until_visible(read, timeout=60, consecutive=1, sleep=fake_clock.sleep, clock=fake_clock.clock,
                              not_yet=is_replication_error) == "v"


@pytest.mark.parametrize("error, expected", [
    (gerr(404, "Request_ResourceNotFound"), True),
    (gerr(404, "NotFound"), True),
    (gerr(403, "Authorization_RequestDenied"), True),
    (gerr(409, "Request_MultipleObjectsWithSameKeyValue"), True),
    (gerr(400, "UnknownError", "An unknown error occurred."), True),
    (GraphError(json.dumps({"error": {"code": "InvalidNotificationSettings", "message": "bad"}}), status=400, code="UnknownError"), False),
    (gerr(400, "Request_BadRequest"), False),
    (gerr(401, "InvalidAuthenticationToken"), False),
    (gerr(500, "InternalServerError"), False),
    (gerr(None, "ConnectionError"), False),
    (ValueError("not a graph error"), False),
])
def test_is_replication_error(error, expected):
    assert is_replication_error(error) is expected


def test_retry_replication_retries_the_lag_answers(fake_clock):
    call = scripted(gerr(404, "Request_ResourceNotFound"), gerr(403, "Authorization_RequestDenied"), gerr(409, "Conflict"),
                    gerr(400, "UnknownError"), {"id": "scim.123"})
    messages = []
    assert retry_replication(call, timeout=300, sleep=fake_clock.sleep, clock=fake_clock.clock, progress=messages.append,
                             what="create synchronization job") == {"id": "scim.123"}
    assert fake_clock.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert messages[1] == "retrying create synchronization job: attempt 2 answered HTTP 403 Authorization_RequestDenied: x, 1 s elapsed"


def test_retry_replication_does_not_retry_real_errors(fake_clock):
    nested = json.dumps({"error": {"code": "InvalidNotificationSettings", "message": "bad"}})
    call = scripted(GraphError(nested, status=400, code="UnknownError"), "never")
    with pytest.raises(GraphError) as info:
        retry_replication(call, timeout=300, sleep=fake_clock.sleep, clock=fake_clock.clock)
    assert info.value.code == "InvalidNotificationSettings"
    assert fake_clock.sleeps == []


def test_retry_replication_timeout_keeps_the_permission_hint(fake_clock):
    call = scripted(gerr(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.", request_id="rid-403"))
    with pytest.raises(ConsistencyTimeout) as info:
        retry_replication(call, timeout=30, sleep=fake_clock.sleep, clock=fake_clock.clock, what="starting the job")
    err = info.value
    assert sum(fake_clock.sleeps) <= 30
    assert err.status == 403 and err.last_error.code == "Authorization_RequestDenied"
    message = failure_message("start synchronization job", err)
    assert "still failed after" in message and "(request-id rid-403)" in message
    assert "Synchronization.ReadWrite.All" in message
    assert not is_replication_error(err)

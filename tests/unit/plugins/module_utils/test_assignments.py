# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decision logic of entra_app_assignment (module_utils/_assignments.py) against an in-memory Graph recording calls."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import uuid

from urllib.parse import parse_qsl

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._assignments import (
    DEFAULT_ACCESS_ROLE_ID,
    AssignmentError,
    AssignmentService,
    PartialFailure,
    ensure_assignments,
    plan,
    resolve_role,
    validate_principals,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils._consistency import ConsistencyTimeout
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import FakeClock
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_assignments import (
    MSIAM_ROLE_ID,
    ROLES,
    SP_ID,
    USER_ROLE_ID,
    FakeAssignmentsGraph,
    writes,
)
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import graph_error


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def graph():
    return FakeAssignmentsGraph()


def run(graph, clock, principals, **kwargs):
    service = AssignmentService(graph, SP_ID, wait_timeout=kwargs.pop("wait_timeout", 60), sleep=clock.sleep, clock=clock,
                                progress=kwargs.pop("progress", None))
    return ensure_assignments(service, principals, **kwargs)


# ---------------------------------------------------------------------------------------------- input and roles
@pytest.mark.parametrize("principal, problem", [
    ({"type": "user", "display_name": "Ann"}, "a user is named by user_principal_name"),
    ({"type": "group", "user_principal_name": "g@example.com"}, "a group is named by display_name"),
    ({"type": "group"}, "give exactly one of id, display_name"),
    ({"type": "user", "id": "x", "user_principal_name": "ann@example.com"}, "give exactly one of id, user_principal_name"),
    ({"type": "device", "id": "x"}, "type must be user or group"),
])
def test_invalid_principals_are_refused(principal, problem):
    with pytest.raises(AssignmentError) as caught:
        validate_principals([{"type": "group", "display_name": "ok"}, principal])
    assert "principals[1]: " + problem in caught.value.message


def test_default_role_is_the_user_role_by_display_name():
    assert resolve_role({"id": SP_ID, "appRoles": ROLES}, "User") == {"id": USER_ROLE_ID, "value": None, "display_name": "User"}


def test_role_by_id_and_by_value():
    sp = {"id": SP_ID, "appRoles": ROLES + [{"id": "C0FFEE00-0000-4000-8000-000000000001", "value": "Admin", "displayName": "Admins"}]}
    assert resolve_role(sp, MSIAM_ROLE_ID.upper())["display_name"] == "msiam_access"
    assert resolve_role(sp, "Admin")["id"] == "c0ffee00-0000-4000-8000-000000000001"
    assert resolve_role(sp, DEFAULT_ACCESS_ROLE_ID)["display_name"] == "Default Access"


def test_unknown_or_disabled_role_fails_listing_the_roles():
    with pytest.raises(AssignmentError) as caught:
        resolve_role({"id": SP_ID, "appRoles": ROLES}, "Admin")
    assert "has no app role 'Admin'" in caught.value.message and USER_ROLE_ID in caught.value.message
    disabled = [dict(ROLES[0], isEnabled=False)]
    with pytest.raises(AssignmentError, match="is disabled"):
        resolve_role({"id": SP_ID, "appRoles": disabled}, "User")


# ---------------------------------------------------------------------------------------------- plan (purge sets)
def test_plan_present_adds_only_missing_and_purge_removes_everything_else():
    keep = {"id": "a1", "principalId": "p1", "appRoleId": USER_ROLE_ID}
    other_role = {"id": "a2", "principalId": "p1", "appRoleId": MSIAM_ROLE_ID}
    stranger = {"id": "a3", "principalId": "p9", "appRoleId": USER_ROLE_ID}
    desired = [{"id": "p1"}, {"id": "p2"}]
    to_add, to_remove = plan([keep, other_role, stranger], desired, USER_ROLE_ID, "present", purge=False)
    assert [p["id"] for p in to_add] == ["p2"] and to_remove == []
    to_add, to_remove = plan([keep, other_role, stranger], desired, USER_ROLE_ID, "present", purge=True)
    assert [a["id"] for a in to_remove] == ["a2", "a3"]
    to_add, to_remove = plan([keep, other_role, stranger], [{"id": "p1"}], USER_ROLE_ID, "absent", purge=True)
    assert to_add == [] and [a["id"] for a in to_remove] == ["a1"]


# ---------------------------------------------------------------------------------------------- ensure
def test_creates_missing_assignments_in_one_batch_and_is_idempotent(graph, clock):
    admins, ann = graph.group("Cloudflare Admins"), graph.user("ann@example.com", "Ann")
    bob = graph.user("bob@example.com", "Bob")
    graph.assign(bob)
    principals = [{"type": "group", "display_name": "Cloudflare Admins"}, {"type": "user", "user_principal_name": "ann@example.com"},
                  {"type": "user", "id": bob["id"]}]
    result = run(graph, clock, principals)
    assert result["changed"] is True
    posts = [call for call in graph.calls if call[0] == "POST(batch)"]
    assert sorted(call[2]["principalId"] for call in posts) == sorted([admins["id"], ann["id"]])
    assert all(call[2]["appRoleId"] == USER_ROLE_ID and call[2]["resourceId"] == SP_ID for call in posts)
    assert graph.assigned() == [("Ann", USER_ROLE_ID), ("Bob", USER_ROLE_ID), ("Cloudflare Admins", USER_ROLE_ID)]
    assert [a["principal_display_name"] for a in result["added"]] == ["Cloudflare Admins", "Ann"]
    assert [a["principal_display_name"] for a in result["assignments"]] == ["Cloudflare Admins", "Ann", "Bob"]
    assert all(a["id"] for a in result["assignments"])
    assert result["diff"]["before"] == {"principals": ["user Bob (%s) as User" % bob["id"]]}
    assert "group Cloudflare Admins (%s) as User" % admins["id"] in result["diff"]["after"]["principals"]
    lookups = [call for call in graph.calls if call[0] == "GET(batch)" and call[1].startswith(("/users", "/groups"))]
    assert len(lookups) == 3, "the three principals are resolved in one $batch"
    assert [len(batch) for batch in graph.batches][0] == 5, "with the service principal and its assignments"
    graph.calls[:] = []
    again = run(graph, clock, principals)
    assert again["changed"] is False and writes(graph) == []
    assert again["diff"]["before"] == again["diff"]["after"]


def test_a_single_principal_is_written_with_a_plain_request(graph, clock):
    admins = graph.group("Admins")
    result = run(graph, clock, [{"type": "group", "display_name": "Admins"}])
    assert result["changed"] is True
    assert [[item["method"] for item in batch] for batch in graph.batches] == [["GET", "GET", "GET"]]  # the reads: one $batch
    assert ("POST", "/servicePrincipals/%s/appRoleAssignedTo" % SP_ID,
            {"principalId": admins["id"], "resourceId": SP_ID, "appRoleId": USER_ROLE_ID}) in graph.calls


def test_names_with_quotes_are_escaped(graph, clock):
    graph.user("o'brien@example.com", "Pat O'Brien")
    run(graph, clock, [{"type": "user", "user_principal_name": "o'brien@example.com"}])
    lookup = next(call for call in graph.calls if call[1].startswith("/users?"))
    assert dict(parse_qsl(lookup[1].partition("?")[2]))["$filter"] == "userPrincipalName eq 'o''brien@example.com'"


def test_unresolvable_names_fail_naming_them_before_any_write(graph, clock):
    graph.group("Twins")
    graph.group("Twins")
    graph.group("Admins")
    with pytest.raises(AssignmentError) as caught:
        run(graph, clock, [{"type": "group", "display_name": "Admins"}, {"type": "group", "display_name": "Twins"},
                           {"type": "group", "display_name": "Nobody"}, {"type": "user", "id": str(uuid.uuid4())}])
    message = caught.value.message
    assert "group 'Twins' matches 2 groups" in message and "group 'Nobody' matches no group" in message
    assert "does not exist" in message
    assert writes(graph) == []


def test_already_exists_counts_as_present(graph, clock):
    admins = graph.group("Admins")
    graph.list_lags = True  # the list does not show the assignment yet, the POST says it exists
    graph.assign(admins)
    result = run(graph, clock, [{"type": "group", "id": admins["id"]}])
    assert result["changed"] is False
    assert [a["principal_id"] for a in result["assignments"]] == [admins["id"]]


def test_check_mode_predicts_and_writes_nothing(graph, clock):
    admins, bob = graph.group("Admins"), graph.user("bob@example.com")
    stale = graph.assign(bob)
    result = run(graph, clock, [{"type": "group", "display_name": "Admins"}], purge=True, check_mode=True)
    assert result["changed"] is True
    assert writes(graph) == []
    assert result["added"] == [{"id": None, "principal_id": admins["id"], "principal_type": "Group",
                                "principal_display_name": "Admins", "app_role_id": USER_ROLE_ID}]
    assert [a["id"] for a in result["removed"]] == [stale["id"]]
    assert result["diff"]["after"] == {"principals": ["group Admins (%s) as User" % admins["id"]]}


def test_purge_removes_unlisted_assignments(graph, clock):
    admins, bob, eve = graph.group("Admins"), graph.user("bob@example.com"), graph.user("eve@example.com")
    graph.assign(admins)
    graph.assign(bob)
    graph.assign(eve, MSIAM_ROLE_ID)
    result = run(graph, clock, [{"type": "group", "display_name": "Admins"}], purge=True)
    assert result["changed"] is True
    assert graph.assigned() == [("Admins", USER_ROLE_ID)]
    assert len([call for call in graph.calls if call[0] == "DELETE(batch)"]) == 2


def test_absent_removes_only_the_listed_principals_and_skips_missing_ones(graph, clock):
    admins, bob = graph.group("Admins"), graph.user("bob@example.com", "Bob")
    graph.assign(admins)
    graph.assign(bob)
    result = run(graph, clock, [{"type": "user", "user_principal_name": "bob@example.com"},
                                {"type": "user", "user_principal_name": "gone@example.com"}], state="absent")
    assert result["changed"] is True
    assert graph.assigned() == [("Admins", USER_ROLE_ID)]
    assert result["skipped_principals"] == ["user 'gone@example.com' matches no user"]
    graph.calls[:] = []
    again = run(graph, clock, [{"type": "user", "user_principal_name": "bob@example.com"}], state="absent")
    assert again["changed"] is False and writes(graph) == []


def test_absent_still_fails_on_ambiguous_names(graph, clock):
    graph.group("Twins")
    graph.group("Twins")
    with pytest.raises(AssignmentError, match="matches 2 groups"):
        run(graph, clock, [{"type": "group", "display_name": "Twins"}], state="absent")


def test_rides_out_replication_of_a_new_service_principal(graph, clock):
    admins = graph.group("Admins")
    graph.sp_hidden = 3  # the first 404 answers the read in the $batch; the read made again alone waits through two more
    graph.post_hidden = 2
    messages = []
    result = run(graph, clock, [{"type": "group", "id": admins["id"]}], progress=messages.append)
    assert result["changed"] is True and graph.assigned() == [("Admins", USER_ROLE_ID)]
    assert len(clock.sleeps) == 4 and len(messages) == 4


def test_replication_that_never_ends_times_out(graph, clock):
    graph.sp_hidden = 1000
    with pytest.raises(ConsistencyTimeout) as caught:
        run(graph, clock, [{"type": "group", "display_name": "Admins"}], wait_timeout=15)
    assert caught.value.status == 404 and caught.value.step == "read service principal"
    assert sum(clock.sleeps) <= 15


def test_batch_items_lagging_are_retried_alone(graph, clock):
    first, second = graph.group("One"), graph.group("Two")
    graph.post_hidden = 1  # the first batched POST answers 404
    result = run(graph, clock, [{"type": "group", "id": first["id"]}, {"type": "group", "id": second["id"]}])
    assert result["changed"] is True
    assert graph.assigned() == [("One", USER_ROLE_ID), ("Two", USER_ROLE_ID)]
    assert [call[0] for call in graph.calls if call[0].startswith("POST")] == ["POST(batch)", "POST(batch)", "POST"]


def test_permission_error_without_any_write_is_a_graph_error_naming_the_step(graph, clock):
    admins = graph.group("Admins")
    graph.post_errors[admins["id"]] = graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    with pytest.raises(GraphError) as caught:
        run(graph, clock, [{"type": "group", "id": admins["id"]}])
    assert caught.value.step == "assign app role to group Admins"
    assert clock.sleeps == [], "a 403 is a permission problem, not replication: no retries"


def test_failure_after_other_writes_is_a_partial_failure(graph, clock):
    ok, bad = graph.group("Ok"), graph.group("Bad")
    graph.post_errors[bad["id"]] = graph_error(400, "Request_BadRequest", "Something is wrong with this group")
    with pytest.raises(PartialFailure) as caught:
        run(graph, clock, [{"type": "group", "id": ok["id"]}, {"type": "group", "id": bad["id"]}])
    assert caught.value.result["changed"] is True
    assert [a["principal_display_name"] for a in caught.value.result["added"]] == ["Ok"]
    assert caught.value.error.step == "assign app role to group Bad"


@pytest.mark.parametrize("outages", [1, 2, 3])
def test_batch_items_hit_by_an_outage_are_sent_again_alone(graph, clock, outages):
    one, two, three = graph.group("One"), graph.group("Two"), graph.user("three@example.com", "Three")
    graph.assign(three)
    graph.batch_outages = outages
    principals = [{"type": "group", "display_name": "One"}, {"type": "group", "display_name": "Two"}]
    result = run(graph, clock, principals, purge=True)
    assert result["changed"] is True
    assert graph.assigned() == [("One", USER_ROLE_ID), ("Two", USER_ROLE_ID)]
    resent = [call for call in graph.calls if call[0] in ("GET", "POST", "DELETE")]
    # every request the outage hit is sent again alone, plus the single removal (one request needs no $batch)
    assert len(resent) == outages + 1
    assert [call[0] for call in resent].count("DELETE") == 1
    assert sorted(a["principal_id"] for a in result["assignments"]) == sorted([one["id"], two["id"]])


# ---------------------------------------------------------------------------------------------- safety (issue 12 item 5, 13)
def test_purge_with_an_empty_list_is_refused_before_any_write(graph, clock):
    admins, bob = graph.group("Admins"), graph.user("bob@example.com", "Bob")
    graph.assign(admins)
    graph.assign(bob)
    with pytest.raises(AssignmentError) as caught:
        run(graph, clock, [], purge=True)
    assert "Refusing to remove all 2 assignments (group Admins, user Bob)" in caught.value.message
    assert "allow_purge_all=true" in caught.value.message
    assert writes(graph) == [] and len(graph.assigned()) == 2
    with pytest.raises(AssignmentError):
        run(graph, clock, [], purge=True, check_mode=True)


def test_purge_to_empty_with_allow_purge_all_removes_everything(graph, clock):
    graph.assign(graph.group("Admins"))
    graph.assign(graph.user("bob@example.com", "Bob"))
    result = run(graph, clock, [], purge=True, allow_purge_all=True)
    assert result["changed"] is True and graph.assigned() == []


def test_purge_creates_first_and_removes_nothing_when_a_create_fails(graph, clock):
    old, new = graph.user("old@example.com", "Old"), graph.group("New")
    graph.assign(old)
    graph.post_errors[new["id"]] = graph_error(400, "Request_BadRequest", "Something is wrong with this group")
    with pytest.raises(GraphError) as caught:
        run(graph, clock, [{"type": "group", "id": new["id"]}], purge=True)
    assert caught.value.step == "assign app role to group New"
    assert graph.assigned() == [("Old", USER_ROLE_ID)], "the old assignment must stay when its replacement failed"
    assert not [call for call in graph.calls if call[0].startswith("DELETE")]
    order = [call[0].split("(")[0] for call in writes(graph)]
    assert order and order[0] == "POST"


def test_purge_removes_only_after_the_creates(graph, clock):
    old, new = graph.user("old@example.com", "Old"), graph.group("New")
    graph.assign(old)
    run(graph, clock, [{"type": "group", "id": new["id"]}], purge=True)
    assert [call[0].split("(")[0] for call in writes(graph)] == ["POST", "DELETE"]
    assert graph.assigned() == [("New", USER_ROLE_ID)]


def test_a_group_name_starting_with_cf_is_warned_about(graph, clock):
    graph.group("CF Admins")
    graph.group("Cloudflare Admins")
    result = run(graph, clock, [{"type": "group", "display_name": "CF Admins"}, {"type": "group", "display_name": "Cloudflare Admins"}])
    assert len(result["warnings"]) == 1 and "group 'CF Admins' starts with 'CF'" in result["warnings"][0]
    assert result["changed"] is True

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decision logic of entra_app (module_utils/_apps.py) against a small in-memory Graph that records every call."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._app_service import AppError, AppService
from ansible_collections.entrascim.cloudflare.plugins.module_utils._apps import application_result, ensure_app, service_principal_result
from ansible_collections.entrascim.cloudflare.plugins.module_utils._consistency import ConsistencyTimeout
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.plugins.module_utils._service_principals import MARKER_TAG
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import FakeClock
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_apps import (
    OTHER_TEMPLATE,
    TEMPLATE,
    TEMPLATE_TAGS,
    USER_ROLE,
    FakeAppsGraph,
)
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import not_found


@pytest.fixture
def clock():
    return FakeClock()


def service(graph, clock, **kwargs):
    kwargs.setdefault("wait_timeout", 60)
    return AppService(graph, sleep=clock.sleep, clock=clock, **kwargs)


def test_creates_the_app_when_none_exists_and_waits_for_consistent_reads(clock):
    graph = FakeAppsGraph()
    messages = []
    result = ensure_app(service(graph, clock, progress=messages.append), "present", "Cloudflare SCIM - Prod", TEMPLATE)
    assert result["changed"] is True
    posts = [call for call in graph.writes if call[0] == "POST"]
    assert posts == [("POST", "/applicationTemplates/%s/instantiate" % TEMPLATE, {"displayName": "Cloudflare SCIM - Prod"})]
    app = next(iter(graph.apps.values()))
    assert result["application"] == {"id": app["id"], "app_id": app["appId"], "display_name": "Cloudflare SCIM - Prod",
                                     "application_template_id": TEMPLATE}
    assert result["service_principal"]["id"] == graph.sp_of(app)["id"]
    assert result["service_principal"]["app_roles"] == [{"id": USER_ROLE["id"], "value": None, "display_name": "User"}]
    assert result["diff"]["before"]["state"] == "absent"
    assert result["diff"]["after"]["service_principal_id"] == graph.sp_of(app)["id"]
    app_reads = [call for call in graph.calls if call[1] == "/applications/%s" % app["id"]]
    assert len(app_reads) == 3, "three consecutive reads of the new application"
    assert len([m for m in messages if "visible (" in m]) == 3


def test_wait_false_returns_right_after_instantiate(clock):
    graph = FakeAppsGraph()
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, wait=False)
    assert result["changed"] is True
    # the lookup is one $batch (applications and service principals of that name), the template check, instantiate,
    # then the marker tags on the new service principal
    sp_id = result["service_principal"]["id"]
    expected = [("GET", "/applications"), ("GET", "/servicePrincipals"), ("GET", "/applicationTemplates/%s" % TEMPLATE),
                ("POST", "/applicationTemplates/%s/instantiate" % TEMPLATE), ("PATCH", "/servicePrincipals/%s" % sp_id)]
    assert [call[:2] for call in graph.calls] == expected
    assert graph.sps[sp_id]["tags"] == TEMPLATE_TAGS + [MARKER_TAG]
    assert clock.sleeps == []


def test_adopts_the_single_existing_app_without_writing(clock):
    graph = FakeAppsGraph()
    app = graph.add_app("Prod")
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE)
    assert result["changed"] is False
    assert graph.writes == []
    assert result["application"]["id"] == app["id"]
    assert result["service_principal"]["id"] == graph.sp_of(app)["id"]
    assert result["diff"]["before"] == result["diff"]["after"]
    assert graph.sp_of(app)["notes"] == "fingerprint:abc"
    # one $batch found both: no read of the service principal by appId afterwards
    assert [call[:2] for call in graph.calls] == [("GET", "/applications"), ("GET", "/servicePrincipals")]


def test_existing_app_whose_service_principal_is_named_otherwise_is_still_found(clock):
    graph = FakeAppsGraph()
    app = graph.add_app("Prod")
    graph.sp_of(app)["displayName"] = "Renamed in the portal"
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE)
    assert result["changed"] is False and graph.writes == []
    assert result["service_principal"]["id"] == graph.sp_of(app)["id"]


def test_lookup_matches_name_and_template(clock):
    graph = FakeAppsGraph()
    graph.add_app("Prod", template=OTHER_TEMPLATE)
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, wait=False)
    assert result["changed"] is True, "an app with the same name from another template is not ours"
    assert graph.calls[0][2]["$filter"] == "displayName eq 'Prod' and applicationTemplateId eq '%s'" % TEMPLATE


def test_quotes_in_the_name_are_escaped(clock):
    graph = FakeAppsGraph()
    app = graph.add_app("O'Brien's account")
    result = ensure_app(service(graph, clock), "present", "O'Brien's account", TEMPLATE)
    assert result["changed"] is False and result["application"]["id"] == app["id"]
    assert graph.calls[0][2]["$filter"].startswith("displayName eq 'O''Brien''s account' and ")


def test_duplicates_fail_listing_ids_and_how_to_pin(clock):
    graph = FakeAppsGraph()
    first, second = graph.add_app("Prod"), graph.add_app("Prod")
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", TEMPLATE)
    message = caught.value.message
    assert first["id"] in message and second["appId"] in message and "app_id" in message
    assert sorted(d["id"] for d in caught.value.extra["duplicates"]) == sorted([first["id"], second["id"]])
    assert graph.writes == []


def test_duplicates_are_never_deleted_by_name(clock):
    graph = FakeAppsGraph()
    graph.add_app("Prod")
    graph.add_app("Prod")
    with pytest.raises(AppError):
        ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE)
    assert graph.writes == [] and len(graph.apps) == 2


def test_app_id_pins_one_of_the_duplicates(clock):
    graph = FakeAppsGraph()
    graph.add_app("Prod")
    pinned = graph.add_app("Prod")
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, app_id=pinned["appId"])
    assert result["changed"] is False and result["application"]["id"] == pinned["id"]
    assert graph.calls[0][2]["$filter"] == "appId eq '%s'" % pinned["appId"]


def test_app_id_with_another_name_fails(clock):
    graph = FakeAppsGraph()
    pinned = graph.add_app("Staging")
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, app_id=pinned["appId"])
    assert "named 'Staging', not 'Prod'" in caught.value.message
    assert graph.writes == []


def test_missing_pinned_app_is_not_created(clock):
    graph = FakeAppsGraph()
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, app_id="0a1b2c3d-1111-2222-3333-444455556666")
    assert "No application with app_id 0a1b2c3d-1111-2222-3333-444455556666" in caught.value.message
    assert graph.writes == []


def test_check_mode_predicts_a_create_and_writes_nothing(clock):
    graph = FakeAppsGraph()
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, check_mode=True)
    assert result["changed"] is True
    assert graph.writes == []
    assert result["application"] == {"id": None, "app_id": None, "display_name": "Prod", "application_template_id": TEMPLATE}
    assert result["diff"]["before"] == {"state": "absent", "display_name": "Prod", "application_template_id": TEMPLATE}
    assert result["diff"]["after"]["state"] == "present"


def test_instantiate_404_polls_for_the_app_it_created_instead_of_creating_twice(clock):
    graph = FakeAppsGraph(instantiate_404=True, lag=2)
    messages = []
    result = ensure_app(service(graph, clock, progress=messages.append), "present", "Prod", TEMPLATE)
    assert result["changed"] is True
    assert len([call for call in graph.writes if call[0] == "POST"]) == 1
    assert len(graph.apps) == 1
    app = next(iter(graph.apps.values()))
    assert result["application"]["id"] == app["id"]
    assert result["service_principal"]["id"] == graph.sp_of(app)["id"]
    assert any("instantiate answered 404" in m for m in messages)


def test_instantiate_404_without_an_app_times_out_without_a_second_instantiate(clock):
    graph = FakeAppsGraph(instantiate_404=True, instantiate_creates=False)
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock, wait_timeout=20), "present", "Prod", TEMPLATE)
    assert "Timed out after 20 seconds" in caught.value.message
    assert len([call for call in graph.writes if call[0] == "POST"]) == 1
    assert sum(clock.sleeps) <= 20


def test_replication_lag_resets_the_consecutive_count(clock):
    graph = FakeAppsGraph(lag=3)
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE)
    assert result["changed"] is True
    app = next(iter(graph.apps.values()))
    reads = [call for call in graph.calls if call[1] == "/applications/%s" % app["id"]]
    # 3 rounds where the application answers 404, 3 where the service principal does, then 3 good rounds in a row.
    assert len(reads) == 3 + 3 + 3


def test_wait_timeout_raises_consistency_timeout(clock):
    graph = FakeAppsGraph(lag=1000)
    with pytest.raises(ConsistencyTimeout) as caught:
        ensure_app(service(graph, clock, wait_timeout=30), "present", "Prod", TEMPLATE)
    assert caught.value.status == 404
    assert sum(clock.sleeps) <= 30


def test_absent_deletes_the_application_and_waits_until_it_is_gone(clock):
    graph = FakeAppsGraph()
    app = graph.add_app("Prod")
    sp_id = graph.sp_of(app)["id"]
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE)
    assert result["changed"] is True
    assert graph.writes == [("DELETE", "/applications/%s" % app["id"], None)]
    assert result["application"]["id"] == app["id"] and result["service_principal"]["id"] == sp_id
    assert result["diff"]["after"]["state"] == "absent"
    assert not graph.apps and not graph.sps


def test_absent_when_absent_is_unchanged(clock):
    graph = FakeAppsGraph()
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE)
    assert result["changed"] is False
    assert result["application"] == {} and result["service_principal"] == {}
    assert graph.writes == []


def test_absent_in_check_mode_writes_nothing(clock):
    graph = FakeAppsGraph()
    graph.add_app("Prod")
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, check_mode=True)
    assert result["changed"] is True
    assert graph.writes == [] and len(graph.apps) == 1


def test_delete_answering_404_means_someone_else_deleted_it(clock):
    graph = FakeAppsGraph()
    app = graph.add_app("Prod")
    graph.fail_on[("DELETE", "/applications/%s" % app["id"])] = not_found(app["id"])
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE)
    assert result["changed"] is False


def test_graph_errors_carry_the_step(clock):
    graph = FakeAppsGraph()
    graph.fail_on[("GET", "/applications")] = GraphError("Insufficient privileges to complete the operation.", status=403,
                                                         code="Authorization_RequestDenied")
    with pytest.raises(GraphError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", TEMPLATE)
    assert caught.value.step == "list applications"


def test_app_without_service_principal_is_reported(clock):
    graph = FakeAppsGraph()
    graph.add_app("Prod", with_sp=False)
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, wait=False)
    assert "has no service principal" in caught.value.message
    assert graph.writes == []


def test_result_shapes_are_snake_case():
    assert application_result(None) == {}
    assert service_principal_result({"id": "s", "appId": "a", "displayName": "n", "appRoles": None}) == {
        "id": "s", "app_id": "a", "display_name": "n", "app_roles": [], "managed": False, "cloudflare_account_id": None}


def test_waits_until_the_name_lookup_lists_the_new_app(clock):
    graph = FakeAppsGraph()
    original = graph.list
    lagging = {"misses": 2}

    def list_lagging(path, params=None):
        found = original(path, params)
        if lagging["misses"] and "displayName" in (params or {}).get("$filter", "") and graph.writes:
            lagging["misses"] -= 1
            return []
        return found

    graph.list = list_lagging
    messages = []
    result = ensure_app(service(graph, clock, progress=messages.append), "present", "Prod", TEMPLATE)
    assert result["changed"] is True
    assert len([m for m in messages if "not yet listed under its display name" in m]) == 2
    assert len([m for m in messages if "visible (" in m]) == 3


# ---------------------------------------------------------------------------------------------- marker (issue 12 item 4, 10)
ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
OTHER_ACCOUNT = "1" * 32


def deletes(graph):
    return [call for call in graph.calls if call[0] == "DELETE"]


def test_absent_leaves_an_unmarked_app_of_the_same_name_alone(clock):
    graph = FakeAppsGraph()
    hand_made = graph.add_app("Prod", tags=list(TEMPLATE_TAGS))
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE)
    assert result["changed"] is False and deletes(graph) == []
    assert hand_made["id"] in graph.apps
    assert "has no entrascim.cloudflare marker" in result["left_alone"]
    assert result["left_alone"] in result["warnings"]


def test_absent_matches_the_name_exactly(clock):
    graph = FakeAppsGraph()
    graph.add_app("unrelated PROD app")
    result = ensure_app(service(graph, clock), "absent", "Unrelated prod app", TEMPLATE)
    assert result["changed"] is False and deletes(graph) == [] and len(graph.apps) == 1
    assert "differs from 'Unrelated prod app' only in letter case" in result["warnings"][0]


def test_absent_deletes_an_unmarked_app_only_when_pinned_and_told(clock):
    graph = FakeAppsGraph()
    hand_made = graph.add_app("Prod", tags=list(TEMPLATE_TAGS))
    kept = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, app_id=hand_made["appId"])
    assert kept["changed"] is False and hand_made["id"] in graph.apps
    gone = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, app_id=hand_made["appId"], delete_unmarked=True)
    assert gone["changed"] is True and hand_made["id"] not in graph.apps


def test_absent_leaves_an_app_marked_for_another_account_alone(clock):
    graph = FakeAppsGraph()
    other = graph.add_app("Prod", tags=TEMPLATE_TAGS + [MARKER_TAG, "entrascim.cloudflare:account:" + OTHER_ACCOUNT])
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, account_id=ACCOUNT)
    assert result["changed"] is False and other["id"] in graph.apps
    assert "marked for Cloudflare account %s, not %s" % (OTHER_ACCOUNT, ACCOUNT) in result["left_alone"]
    mine = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, account_id=OTHER_ACCOUNT.upper())
    assert mine["changed"] is True and not graph.apps


def test_present_adopts_an_unmarked_app_by_adding_the_marker_and_keeps_its_tags(clock):
    graph = FakeAppsGraph()
    app = graph.add_app("Prod", tags=TEMPLATE_TAGS + ["HideApp"])
    predicted = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, account_id=ACCOUNT, check_mode=True)
    assert predicted["changed"] is True and predicted["adopted"] is True and graph.writes == []
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, account_id=ACCOUNT)
    assert result["changed"] is True and result["adopted"] is True
    assert graph.sp_of(app)["tags"] == TEMPLATE_TAGS + ["HideApp", MARKER_TAG, "entrascim.cloudflare:account:" + ACCOUNT]
    assert graph.sp_of(app)["notes"] == "fingerprint:abc"
    assert result["diff"]["before"]["managed_by_collection"] is False
    assert result["diff"]["after"]["cloudflare_account_id"] == ACCOUNT
    assert any("Adopted application" in w for w in result["warnings"])
    graph.calls[:] = []
    again = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, account_id=ACCOUNT)
    assert again["changed"] is False and graph.writes == []


def test_present_adds_the_account_tag_to_a_marked_app_without_warning(clock):
    graph = FakeAppsGraph()
    app = graph.add_app("Prod")
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, account_id=ACCOUNT)
    assert result["changed"] is True and result["warnings"] == []
    assert "entrascim.cloudflare:account:" + ACCOUNT in graph.sp_of(app)["tags"]


def test_present_refuses_an_app_marked_for_another_account_before_any_write(clock):
    graph = FakeAppsGraph()
    graph.add_app("Prod", tags=TEMPLATE_TAGS + [MARKER_TAG, "entrascim.cloudflare:account:" + OTHER_ACCOUNT])
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, account_id=ACCOUNT)
    assert "is marked for Cloudflare account %s, not %s" % (OTHER_ACCOUNT, ACCOUNT) in caught.value.message
    assert graph.writes == []


def test_present_refuses_to_create_beside_an_app_named_alike_in_another_case(clock):
    graph = FakeAppsGraph()
    graph.add_app("PROD")
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", TEMPLATE)
    assert "differ only in letter case" in caught.value.message and "'PROD'" in caught.value.message
    assert graph.writes == []


def test_an_unknown_template_fails_at_once_without_instantiating(clock):
    graph = FakeAppsGraph()
    unknown = "0f0f0f0f-1111-2222-3333-444444444444"
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", unknown)
    assert "No application template with id %s exists" % unknown in caught.value.message
    assert graph.writes == [] and clock.sleeps == []


def test_created_app_is_marked_with_the_account(clock):
    graph = FakeAppsGraph()
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, account_id=ACCOUNT.upper())
    sp = graph.sps[result["service_principal"]["id"]]
    assert sp["tags"] == TEMPLATE_TAGS + [MARKER_TAG, "entrascim.cloudflare:account:" + ACCOUNT]
    assert result["service_principal"]["managed"] is True and result["service_principal"]["cloudflare_account_id"] == ACCOUNT


@pytest.mark.parametrize("wait", [True, False])
@pytest.mark.parametrize("retry_sorts_first", [True, False])
def test_an_instantiate_sent_twice_after_graph_acted_leaves_one_app(clock, wait, retry_sorts_first):
    """Item 14: a 503 answered after Graph created the app, then the retry created a second one, in the same second."""
    graph = FakeAppsGraph()
    original = graph.post

    def post_twice(path, body=None):
        first = original(path, body)["application"]
        second = original(path, body)
        graph.calls.remove(("POST", path, body))
        stamp = "2026-12-04T10:00:00Z"
        graph.apps[first["id"]]["createdDateTime"] = stamp
        graph.apps[second["application"]["id"]]["createdDateTime"] = stamp
        ids = sorted([first["id"], second["application"]["id"]])
        if retry_sorts_first != (second["application"]["id"] == ids[0]):
            # make the tie-break (by id) pick the app the test wants as the oldest
            old_first, old_second = first["id"], second["application"]["id"]
            graph.apps[old_first]["id"], graph.apps[old_second]["id"] = old_second, old_first
            graph.apps[old_second], graph.apps[old_first] = graph.apps.pop(old_first), graph.apps.pop(old_second)
            second["application"]["id"] = old_first
        graph.last_attempts = 2
        return second

    graph.post = post_twice
    svc = service(graph, clock, now=lambda: 1796378400.0)  # 2026-12-04T10:00:00Z
    result = ensure_app(svc, "present", "Prod", TEMPLATE, wait=wait)
    assert len(graph.apps) == 1, "the extra app the first attempt made must be deleted in the same run"
    survivor = next(iter(graph.apps.values()))
    assert result["application"]["id"] == survivor["id"]
    assert graph.sp_of(survivor)["tags"][-1] == MARKER_TAG
    assert len([call for call in graph.calls if call[0] == "DELETE"]) == 1
    graph.calls[:] = []
    graph.post = original
    again = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, wait=wait)
    assert again["changed"] is False and graph.writes == []

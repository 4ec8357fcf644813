# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decision logic of entra_app (module_utils/_apps.py) against a small in-memory Graph that records every call."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import re
import urllib.parse
import uuid

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._apps import (
    MARKER_TAG,
    AppError,
    AppService,
    application_result,
    ensure_app,
    service_principal_result,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils._consistency import ConsistencyTimeout
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError

TEMPLATE = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
OTHER_TEMPLATE = "4602d0b4-76bb-404b-bca9-2652e1a39c6d"
USER_ROLE = {"id": "18d14569-c3bd-439b-9a66-3a2aee01d14f", "value": None, "displayName": "User", "isEnabled": True}
TEMPLATE_TAGS = ["WindowsAzureActiveDirectoryCustomSingleSignOnApplication", "WindowsAzureActiveDirectoryIntegratedApp"]
CLAUSE = re.compile(r"(\w+) eq '((?:[^']|'')*)'")


def not_found(what):
    return GraphError("Resource '%s' does not exist" % what, status=404, code="Request_ResourceNotFound", request_id="req-404")


class Clock(object):
    """A fake monotonic clock; ``sleep`` advances it and records the delay."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class FakeGraph(object):
    """Applications and service principals in memory, with the quirks the module must survive.

    ``hidden_reads[object id]`` = how many more reads (GET by id or list) answer as if it did not exist yet;
    ``instantiate_404`` creates the objects but answers 404; ``instantiate_creates`` False makes that 404 honest.
    """

    def __init__(self, instantiate_404=False, instantiate_creates=True, lag=0):
        self.apps = {}
        self.sps = {}
        self.calls = []
        self.hidden_reads = {}
        self.instantiate_404 = instantiate_404
        self.instantiate_creates = instantiate_creates
        self.lag = lag
        self.fail_on = {}
        self.templates = {TEMPLATE, OTHER_TEMPLATE}

    def add_app(self, name, template=TEMPLATE, with_sp=True, notes="fingerprint:abc", tags=None):
        """An existing app; by default one this collection made (its service principal carries the marker tag)."""
        app_id = str(uuid.uuid4())
        app = {"id": str(uuid.uuid4()), "appId": app_id, "displayName": name, "applicationTemplateId": template}
        self.apps[app["id"]] = app
        if with_sp:
            sp = {"id": str(uuid.uuid4()), "appId": app_id, "displayName": name, "applicationTemplateId": template,
                  "appRoles": [dict(USER_ROLE)], "notes": notes,
                  "tags": list(TEMPLATE_TAGS + [MARKER_TAG] if tags is None else tags)}
            self.sps[sp["id"]] = sp
        return app

    def sp_of(self, app):
        return next(sp for sp in self.sps.values() if sp["appId"] == app["appId"])

    @property
    def writes(self):
        return [call for call in self.calls if call[0] != "GET"]

    def _visible(self, object_id):
        remaining = self.hidden_reads.get(object_id, 0)
        if remaining > 0:
            self.hidden_reads[object_id] = remaining - 1
            return False
        return True

    def _check_failure(self, method, path):
        error = self.fail_on.get((method, path.split("?")[0].rstrip("/")))
        if error is not None:
            raise error

    def list(self, path, params=None):
        self.calls.append(("GET", path, dict(params or {})))
        self._check_failure("GET", path)
        clauses = [(name, value.replace("''", "'")) for name, value in CLAUSE.findall((params or {}).get("$filter", ""))]
        source = self.apps if path == "/applications" else self.sps
        matches = []
        for obj in list(source.values()):
            if all(str(obj.get(name, "")).lower() == value.lower() for name, value in clauses) and self._visible(obj["id"]):
                matches.append(dict(obj))
        return matches

    def batch(self, requests):
        """``$batch`` of list reads, answered item by item as Graph does (each item recorded like a plain read)."""
        items = []
        for number, request in enumerate(requests, 1):
            path, _mark, query = request["url"].partition("?")
            try:
                items.append({"id": str(number), "status": 200, "body": {"value": self.list(path, dict(urllib.parse.parse_qsl(query)))}})
            except GraphError as err:
                items.append({"id": str(number), "status": err.status, "headers": {},
                              "body": {"error": {"code": err.code, "message": err.message, "innerError": {"request-id": err.request_id}}}})
        return items

    def get(self, path, params=None):
        self.calls.append(("GET", path, dict(params or {})))
        self._check_failure("GET", path)
        kind, object_id = path.strip("/").split("/")
        if kind == "applicationTemplates":
            if object_id not in self.templates:
                raise not_found(object_id)
            return {"id": object_id, "displayName": "Non-gallery"}
        obj = (self.apps if kind == "applications" else self.sps).get(object_id)
        if obj is None or not self._visible(object_id):
            raise not_found(object_id)
        return dict(obj)

    def post(self, path, body=None):
        self.calls.append(("POST", path, body))
        self._check_failure("POST", path)
        template = path.split("/")[2]
        if self.instantiate_404 and not self.instantiate_creates:
            raise not_found(template)
        app = self.add_app(body["displayName"], template=template, notes=None, tags=TEMPLATE_TAGS)
        sp = self.sp_of(app)
        for object_id in (app["id"], sp["id"]):
            self.hidden_reads[object_id] = self.lag
        if self.instantiate_404:
            raise not_found(app["id"])
        return {"application": dict(app), "servicePrincipal": dict(sp)}

    def delete(self, path):
        self.calls.append(("DELETE", path, None))
        self._check_failure("DELETE", path)
        object_id = path.strip("/").split("/")[1]
        app = self.apps.pop(object_id, None)
        if app is None:
            raise not_found(object_id)
        for sp_id in [sp["id"] for sp in self.sps.values() if sp["appId"] == app["appId"]]:
            del self.sps[sp_id]

    def patch(self, path, body):
        """Only the marker tags of a service principal may be written (never its notes: the token fingerprint)."""
        self.calls.append(("PATCH", path, body))
        self._check_failure("PATCH", path)
        kind, object_id = path.strip("/").split("/")
        assert kind == "servicePrincipals" and set(body) == {"tags"}, "entra_app may only write service principal tags"
        sp = self.sps.get(object_id)
        if sp is None or not self._visible(object_id):
            raise not_found(object_id)
        sp["tags"] = list(body["tags"])


@pytest.fixture
def clock():
    return Clock()


def service(graph, clock, **kwargs):
    kwargs.setdefault("wait_timeout", 60)
    return AppService(graph, sleep=clock.sleep, clock=clock, **kwargs)


def test_creates_the_app_when_none_exists_and_waits_for_consistent_reads(clock):
    graph = FakeGraph()
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
    graph = FakeGraph()
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
    graph = FakeGraph()
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
    graph = FakeGraph()
    app = graph.add_app("Prod")
    graph.sp_of(app)["displayName"] = "Renamed in the portal"
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE)
    assert result["changed"] is False and graph.writes == []
    assert result["service_principal"]["id"] == graph.sp_of(app)["id"]


def test_lookup_matches_name_and_template(clock):
    graph = FakeGraph()
    graph.add_app("Prod", template=OTHER_TEMPLATE)
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, wait=False)
    assert result["changed"] is True, "an app with the same name from another template is not ours"
    assert graph.calls[0][2]["$filter"] == "displayName eq 'Prod' and applicationTemplateId eq '%s'" % TEMPLATE


def test_quotes_in_the_name_are_escaped(clock):
    graph = FakeGraph()
    app = graph.add_app("O'Brien's account")
    result = ensure_app(service(graph, clock), "present", "O'Brien's account", TEMPLATE)
    assert result["changed"] is False and result["application"]["id"] == app["id"]
    assert graph.calls[0][2]["$filter"].startswith("displayName eq 'O''Brien''s account' and ")


def test_duplicates_fail_listing_ids_and_how_to_pin(clock):
    graph = FakeGraph()
    first, second = graph.add_app("Prod"), graph.add_app("Prod")
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", TEMPLATE)
    message = caught.value.message
    assert first["id"] in message and second["appId"] in message and "app_id" in message
    assert sorted(d["id"] for d in caught.value.extra["duplicates"]) == sorted([first["id"], second["id"]])
    assert graph.writes == []


def test_duplicates_are_never_deleted_by_name(clock):
    graph = FakeGraph()
    graph.add_app("Prod")
    graph.add_app("Prod")
    with pytest.raises(AppError):
        ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE)
    assert graph.writes == [] and len(graph.apps) == 2


def test_app_id_pins_one_of_the_duplicates(clock):
    graph = FakeGraph()
    graph.add_app("Prod")
    pinned = graph.add_app("Prod")
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, app_id=pinned["appId"])
    assert result["changed"] is False and result["application"]["id"] == pinned["id"]
    assert graph.calls[0][2]["$filter"] == "appId eq '%s'" % pinned["appId"]


def test_app_id_with_another_name_fails(clock):
    graph = FakeGraph()
    pinned = graph.add_app("Staging")
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, app_id=pinned["appId"])
    assert "named 'Staging', not 'Prod'" in caught.value.message
    assert graph.writes == []


def test_missing_pinned_app_is_not_created(clock):
    graph = FakeGraph()
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, app_id="0a1b2c3d-1111-2222-3333-444455556666")
    assert "No application with app_id 0a1b2c3d-1111-2222-3333-444455556666" in caught.value.message
    assert graph.writes == []


def test_check_mode_predicts_a_create_and_writes_nothing(clock):
    graph = FakeGraph()
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, check_mode=True)
    assert result["changed"] is True
    assert graph.writes == []
    assert result["application"] == {"id": None, "app_id": None, "display_name": "Prod", "application_template_id": TEMPLATE}
    assert result["diff"]["before"] == {"state": "absent", "display_name": "Prod", "application_template_id": TEMPLATE}
    assert result["diff"]["after"]["state"] == "present"


def test_instantiate_404_polls_for_the_app_it_created_instead_of_creating_twice(clock):
    graph = FakeGraph(instantiate_404=True, lag=2)
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
    graph = FakeGraph(instantiate_404=True, instantiate_creates=False)
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock, wait_timeout=20), "present", "Prod", TEMPLATE)
    assert "Timed out after 20 seconds" in caught.value.message
    assert len([call for call in graph.writes if call[0] == "POST"]) == 1
    assert sum(clock.sleeps) <= 20


def test_replication_lag_resets_the_consecutive_count(clock):
    graph = FakeGraph(lag=3)
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE)
    assert result["changed"] is True
    app = next(iter(graph.apps.values()))
    reads = [call for call in graph.calls if call[1] == "/applications/%s" % app["id"]]
    # 3 rounds where the application answers 404, 3 where the service principal does, then 3 good rounds in a row.
    assert len(reads) == 3 + 3 + 3


def test_wait_timeout_raises_consistency_timeout(clock):
    graph = FakeGraph(lag=1000)
    with pytest.raises(ConsistencyTimeout) as caught:
        ensure_app(service(graph, clock, wait_timeout=30), "present", "Prod", TEMPLATE)
    assert caught.value.status == 404
    assert sum(clock.sleeps) <= 30


def test_absent_deletes_the_application_and_waits_until_it_is_gone(clock):
    graph = FakeGraph()
    app = graph.add_app("Prod")
    sp_id = graph.sp_of(app)["id"]
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE)
    assert result["changed"] is True
    assert graph.writes == [("DELETE", "/applications/%s" % app["id"], None)]
    assert result["application"]["id"] == app["id"] and result["service_principal"]["id"] == sp_id
    assert result["diff"]["after"]["state"] == "absent"
    assert not graph.apps and not graph.sps


def test_absent_when_absent_is_unchanged(clock):
    graph = FakeGraph()
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE)
    assert result["changed"] is False
    assert result["application"] == {} and result["service_principal"] == {}
    assert graph.writes == []


def test_absent_in_check_mode_writes_nothing(clock):
    graph = FakeGraph()
    graph.add_app("Prod")
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, check_mode=True)
    assert result["changed"] is True
    assert graph.writes == [] and len(graph.apps) == 1


def test_delete_answering_404_means_someone_else_deleted_it(clock):
    graph = FakeGraph()
    app = graph.add_app("Prod")
    graph.fail_on[("DELETE", "/applications/%s" % app["id"])] = not_found(app["id"])
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE)
    assert result["changed"] is False


def test_graph_errors_carry_the_step(clock):
    graph = FakeGraph()
    graph.fail_on[("GET", "/applications")] = GraphError("Insufficient privileges to complete the operation.", status=403,
                                                         code="Authorization_RequestDenied")
    with pytest.raises(GraphError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", TEMPLATE)
    assert caught.value.step == "list applications"


def test_app_without_service_principal_is_reported(clock):
    graph = FakeGraph()
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
    graph = FakeGraph()
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
    graph = FakeGraph()
    hand_made = graph.add_app("Prod", tags=list(TEMPLATE_TAGS))
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE)
    assert result["changed"] is False and deletes(graph) == []
    assert hand_made["id"] in graph.apps
    assert "has no entrascim.cloudflare marker" in result["left_alone"]
    assert result["left_alone"] in result["warnings"]


def test_absent_matches_the_name_exactly(clock):
    graph = FakeGraph()
    graph.add_app("unrelated PROD app")
    result = ensure_app(service(graph, clock), "absent", "Unrelated prod app", TEMPLATE)
    assert result["changed"] is False and deletes(graph) == [] and len(graph.apps) == 1
    assert "differs from 'Unrelated prod app' only in letter case" in result["warnings"][0]


def test_absent_deletes_an_unmarked_app_only_when_pinned_and_told(clock):
    graph = FakeGraph()
    hand_made = graph.add_app("Prod", tags=list(TEMPLATE_TAGS))
    kept = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, app_id=hand_made["appId"])
    assert kept["changed"] is False and hand_made["id"] in graph.apps
    gone = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, app_id=hand_made["appId"], delete_unmarked=True)
    assert gone["changed"] is True and hand_made["id"] not in graph.apps


def test_absent_leaves_an_app_marked_for_another_account_alone(clock):
    graph = FakeGraph()
    other = graph.add_app("Prod", tags=TEMPLATE_TAGS + [MARKER_TAG, "entrascim.cloudflare:account:" + OTHER_ACCOUNT])
    result = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, account_id=ACCOUNT)
    assert result["changed"] is False and other["id"] in graph.apps
    assert "marked for Cloudflare account %s, not %s" % (OTHER_ACCOUNT, ACCOUNT) in result["left_alone"]
    mine = ensure_app(service(graph, clock), "absent", "Prod", TEMPLATE, account_id=OTHER_ACCOUNT.upper())
    assert mine["changed"] is True and not graph.apps


def test_present_adopts_an_unmarked_app_by_adding_the_marker_and_keeps_its_tags(clock):
    graph = FakeGraph()
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
    graph = FakeGraph()
    app = graph.add_app("Prod")
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, account_id=ACCOUNT)
    assert result["changed"] is True and result["warnings"] == []
    assert "entrascim.cloudflare:account:" + ACCOUNT in graph.sp_of(app)["tags"]


def test_present_refuses_an_app_marked_for_another_account_before_any_write(clock):
    graph = FakeGraph()
    graph.add_app("Prod", tags=TEMPLATE_TAGS + [MARKER_TAG, "entrascim.cloudflare:account:" + OTHER_ACCOUNT])
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, account_id=ACCOUNT)
    assert "is marked for Cloudflare account %s, not %s" % (OTHER_ACCOUNT, ACCOUNT) in caught.value.message
    assert graph.writes == []


def test_present_refuses_to_create_beside_an_app_named_alike_in_another_case(clock):
    graph = FakeGraph()
    graph.add_app("PROD")
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", TEMPLATE)
    assert "differ only in letter case" in caught.value.message and "'PROD'" in caught.value.message
    assert graph.writes == []


def test_an_unknown_template_fails_at_once_without_instantiating(clock):
    graph = FakeGraph()
    unknown = "0f0f0f0f-1111-2222-3333-444444444444"
    with pytest.raises(AppError) as caught:
        ensure_app(service(graph, clock), "present", "Prod", unknown)
    assert "No application template with id %s exists" % unknown in caught.value.message
    assert graph.writes == [] and clock.sleeps == []


def test_created_app_is_marked_with_the_account(clock):
    graph = FakeGraph()
    result = ensure_app(service(graph, clock), "present", "Prod", TEMPLATE, account_id=ACCOUNT.upper())
    sp = graph.sps[result["service_principal"]["id"]]
    assert sp["tags"] == TEMPLATE_TAGS + [MARKER_TAG, "entrascim.cloudflare:account:" + ACCOUNT]
    assert result["service_principal"]["managed"] is True and result["service_principal"]["cloudflare_account_id"] == ACCOUNT


@pytest.mark.parametrize("wait", [True, False])
@pytest.mark.parametrize("retry_sorts_first", [True, False])
def test_an_instantiate_sent_twice_after_graph_acted_leaves_one_app(clock, wait, retry_sorts_first):
    """Item 14: a 503 answered after Graph created the app, then the retry created a second one, in the same second."""
    graph = FakeGraph()
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

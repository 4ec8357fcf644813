# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the entra_scim_preflight module with a fake Graph client (recording its calls)."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import ast

import pytest
import yaml

from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.plugins.modules import entra_scim_preflight as module
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import ReadOnlyGraph, use_fake_graph
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import run_module as run_main

SP_ID = "0f6d4c4a-8f43-4a43-b0b4-5d1c7c5cfa11"
USER_ROLE = "18d14569-c3bd-439b-9a66-3a2aee01d14f"
SECRET = "graph-client-secret-for-unit-tests-7Hn2Qp"
BASE_ARGS = {"service_principal_id": SP_ID, "tenant_id": "7f2a3b1c-0000-4000-8000-000000000001",
             "client_id": "5b9c1f0e-0000-4000-8000-000000000002", "client_secret": SECRET}


class FakeGraph(ReadOnlyGraph):
    """Answers the reads of the preflight from a small directory."""

    def __init__(self, users, assignments, members=None, sync_all="false", denied=()):
        super(FakeGraph, self).__init__()
        self.users = dict((item["id"], item) for item in users)
        self.assignments = assignments
        self.members = members or {}
        self.sync_all = sync_all
        self.denied = denied

    def _check(self, path):
        for fragment in self.denied:
            if fragment in path:
                raise GraphError("Insufficient privileges to complete the operation.", status=403, code="Authorization_RequestDenied",
                                 request_id="11111111-2222-3333-4444-555555555555")

    def answer(self, path):
        self._check(path)
        path = path.lstrip("/")
        if path.startswith("users/"):
            user = self.users.get(path.split("/")[1])
            if user is None:
                raise GraphError("Resource does not exist.", status=404, code="Request_ResourceNotFound")
            return user
        if path.endswith("/synchronization/secrets"):
            return {"value": [{"key": "SecretToken", "value": "*"}, {"key": "SyncAll", "value": self.sync_all}]}
        if path.endswith("/appRoleAssignedTo"):
            return {"value": list(self.assignments)}
        if path.endswith("/members"):
            return {"value": list(self.members.get(path.split("/")[1], []))}
        return {"id": SP_ID, "displayName": "Cloudflare SCIM - Test", "appRoles": [{"id": USER_ROLE, "displayName": "User", "value": None}]}


@pytest.fixture
def fake_graph(monkeypatch):
    holder = {}
    use_fake_graph(monkeypatch, lambda: holder["client"])
    return holder


def assignment(principal_id, name, kind="User", role=USER_ROLE):
    return {"id": "a-" + principal_id, "appRoleId": role, "principalId": principal_id, "principalType": kind, "principalDisplayName": name}


def run_module(args, capsys):
    return run_main(module.main, capsys, args, never=(SECRET,))


def test_clean_scope_passes(fake_graph, capsys):
    fake_graph["client"] = FakeGraph([{"id": "u1", "userPrincipalName": "alice@contoso.com", "mail": "alice@contoso.com",
                                       "accountEnabled": True}], [assignment("u1", "Alice")])
    result = run_module(BASE_ARGS, capsys)
    assert not result.get("failed"), result
    assert result["changed"] is False and result["passed"] is True
    assert result["findings"] == []
    assert result["counts"]["users_checked"] == 1
    assert result["sync_all"] is False
    assert result["service_principal_id"] == SP_ID


def test_errors_fail_with_findings_in_the_result(fake_graph, capsys):
    fake_graph["client"] = FakeGraph(
        [{"id": "u1", "userPrincipalName": "Alice@contoso.com", "mail": "alice@contoso.com", "accountEnabled": True}],
        [assignment("u1", "Alice"), assignment("g1", "CF Operators", "Group")],
        members={"g1": [{"@odata.type": "#microsoft.graph.group", "id": "g2", "displayName": "Nested"}]})
    result = run_module(BASE_ARGS, capsys)
    assert result["failed"] is True
    assert result["msg"].startswith("Preflight found 2 problem(s)")
    assert sorted(item["code"] for item in result["findings"]) == ["GROUP_NAME_RESERVED_CF", "NESTED_GROUP", "UPN_MAIL_MISMATCH"]
    assert result["counts"]["errors"] == 2 and result["counts"]["warnings"] == 1


def test_fail_on_warning_and_never(fake_graph, capsys):
    users = [{"id": "u1", "userPrincipalName": "bob@contoso.com", "mail": "bob@contoso.com", "accountEnabled": False}]
    fake_graph["client"] = FakeGraph(users, [assignment("u1", "Bob")])
    assert not run_module(BASE_ARGS, capsys).get("failed")
    fake_graph["client"] = FakeGraph(users, [assignment("u1", "Bob")])
    result = run_module(dict(BASE_ARGS, fail_on="warning"), capsys)
    assert result["failed"] is True and "USER_DISABLED" in result["msg"]
    fake_graph["client"] = FakeGraph(users, [])
    result = run_module(dict(BASE_ARGS, fail_on="never"), capsys)
    assert not result.get("failed")
    assert result["passed"] is False
    assert [item["code"] for item in result["findings"]] == ["NO_ASSIGNMENTS"]


def test_check_mode_only_reads(fake_graph, capsys):
    client = FakeGraph([], [], sync_all="true")
    fake_graph["client"] = client
    result = run_module(dict(BASE_ARGS, _ansible_check_mode=True, fail_on="never"), capsys)
    assert result["changed"] is False
    assert [item["code"] for item in result["findings"]] == ["SYNC_ALL_ENABLED"]
    assert {call[0] for call in client.calls} <= {"GET", "LIST", "BATCH"}


def test_permission_error_names_the_step_and_permission(fake_graph, capsys):
    fake_graph["client"] = FakeGraph([], [assignment("g1", "Engineers", "Group")], denied=("/members",))
    result = run_module(BASE_ARGS, capsys)
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to read group members: Authorization_RequestDenied: Insufficient privileges")
    assert "GroupMember.Read.All" in result["msg"]
    assert "(request-id 11111111-2222-3333-4444-555555555555)" in result["msg"]
    assert result["status"] == 403


def test_documentation_lists_every_finding_code_and_the_attributes():
    with open(module.__file__) as handle:
        source = handle.read()
    tree = ast.parse(source)
    doc = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "DOCUMENTATION":
            doc = yaml.safe_load(node.value.value)
    assert doc["attributes"]["check_mode"]["support"] == "full"
    description = " ".join(doc["description"])
    for code in ("UPN_MAIL_MISMATCH", "MAIL_MISSING", "USER_DISABLED", "GROUP_NAME_RESERVED_CF", "DEPRECATED_VIRTUAL_GROUP",
                 "NESTED_GROUP", "DEFAULT_ACCESS_ROLE", "NO_ASSIGNMENTS", "SYNC_ALL_ENABLED", "PRINCIPAL_NOT_FOUND"):
        assert "C(%s)" % code in description, code
        assert code in source.split("def run(")[0].split("RETURN = ")[1], code

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entra_app_assignment module end to end (argument spec, check mode, diff, failures) with an in-memory Graph."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.plugins.modules import entra_app_assignment
from ansible_collections.entrascim.cloudflare.tests.unit.utils import fake_assignments
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import FakeClock
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import run_module as run_main
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import use_fake_graph


@pytest.fixture
def graph(monkeypatch):
    return use_fake_graph(monkeypatch, fake_assignments.FakeAssignmentsGraph(), FakeClock())


def run_module(capsys, **args):
    defaults = {"service_principal_id": fake_assignments.SP_ID,
                "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.e30.never-printed-token"}
    return run_main(entra_app_assignment.main, capsys, args, defaults=defaults, never=("never-printed-token",))


def test_assigns_with_diff_then_is_idempotent(graph, capsys):
    admins = graph.group("Cloudflare Admins")
    ann = graph.user("ann@example.com", "Ann")
    principals = [{"type": "group", "display_name": "Cloudflare Admins"}, {"type": "user", "user_principal_name": "ann@example.com"}]
    result = run_module(capsys, principals=principals, _ansible_diff=True)
    assert result["changed"] is True
    assert sorted(a["principal_id"] for a in result["assignments"]) == sorted([admins["id"], ann["id"]])
    assert result["diff"]["before"] == {"principals": []}
    assert result["diff"]["after"]["principals"] == ["group Cloudflare Admins (%s) as User" % admins["id"],
                                                     "user Ann (%s) as User" % ann["id"]]
    assert result["app_role"]["display_name"] == "User"
    result = run_module(capsys, principals=principals)
    assert result["changed"] is False and "diff" not in result


def test_check_mode_writes_nothing(graph, capsys):
    graph.group("Admins")
    result = run_module(capsys, principals=[{"type": "group", "display_name": "Admins"}], _ansible_check_mode=True)
    assert result["changed"] is True and result["added"][0]["id"] is None
    assert graph.assignments == [] and fake_assignments.writes(graph) == []


def test_absent_warns_about_missing_principals(graph, capsys):
    result = run_module(capsys, principals=[{"type": "user", "user_principal_name": "gone@example.com"}], state="absent")
    assert result["changed"] is False
    assert result["skipped_principals"] == ["user 'gone@example.com' matches no user"]
    assert "gone@example.com" in json.dumps(result["warnings"])


def test_identifiers_are_mutually_exclusive(graph, capsys):
    result = run_module(capsys, principals=[{"type": "group", "id": "x", "display_name": "Admins"}])
    assert result["failed"] is True and "mutually exclusive" in result["msg"]
    result = run_module(capsys, principals=[{"type": "group"}])
    assert result["failed"] is True and "one of the following is required" in result["msg"]
    assert graph.calls == []


def test_user_by_display_name_is_refused_before_any_call(graph, capsys):
    result = run_module(capsys, principals=[{"type": "user", "display_name": "Ann"}])
    assert result["failed"] is True and "a user is named by user_principal_name" in result["msg"]
    assert graph.calls == []


def test_unknown_group_is_named(graph, capsys):
    result = run_module(capsys, principals=[{"type": "group", "display_name": "Nobody"}])
    assert result["failed"] is True
    assert result["msg"].startswith("Cannot resolve principals: group 'Nobody' matches no group. Nothing was assigned: check the names")
    assert result["unresolved"] == ["group 'Nobody' matches no group"]


def test_unknown_role_lists_the_roles(graph, capsys):
    graph.group("Admins")
    result = run_module(capsys, principals=[{"type": "group", "display_name": "Admins"}], app_role="Admin")
    assert result["failed"] is True and "msiam_access" in result["msg"]


def test_permission_error_names_both_permissions(graph, capsys):
    admins = graph.group("Admins")
    graph.post_errors[admins["id"]] = GraphError("Insufficient privileges to complete the operation.", status=403,
                                                 code="Authorization_RequestDenied", request_id="rid-9")
    result = run_module(capsys, principals=[{"type": "group", "id": admins["id"]}])
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to assign app role to group Admins: Authorization_RequestDenied:")
    assert "AppRoleAssignment.ReadWrite.All and Application.Read.All" in result["msg"]
    assert result.get("changed") is not True


def test_partial_failure_reports_changed(graph, capsys):
    ok, bad = graph.group("Ok"), graph.group("Bad")
    graph.post_errors[bad["id"]] = GraphError("Broken group", status=400, code="Request_BadRequest", request_id="rid-7")
    result = run_module(capsys, principals=[{"type": "group", "id": ok["id"]}, {"type": "group", "id": bad["id"]}])
    assert result["failed"] is True and result["changed"] is True
    assert result["msg"] == "Failed to assign app role to group Bad: Request_BadRequest: Broken group (request-id rid-7)"
    assert [a["principal_display_name"] for a in result["added"]] == ["Ok"]

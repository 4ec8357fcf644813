# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entra_app module end to end (argument spec, check mode, diff, failures) with an in-memory Graph."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.plugins.modules import entra_app
from ansible_collections.entrascim.cloudflare.tests.unit.utils import fake_apps
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import FakeClock
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import MODULE_ARGS, use_fake_graph
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import run_module as run_main


@pytest.fixture
def graph(monkeypatch):
    return use_fake_graph(monkeypatch, fake_apps.FakeAppsGraph(), FakeClock())


def run_module(capsys, **args):
    return run_main(entra_app.main, capsys, args, defaults=MODULE_ARGS)


def test_creates_with_diff(graph, capsys):
    result = run_module(capsys, display_name="Cloudflare SCIM - Prod", _ansible_diff=True)
    assert result["changed"] is True
    app = next(iter(graph.apps.values()))
    assert result["application"]["id"] == app["id"]
    assert result["application"]["application_template_id"] == fake_apps.TEMPLATE
    assert result["diff"]["before"]["state"] == "absent" and result["diff"]["after"]["application_id"] == app["id"]
    assert len(result["progress"]) == 3


def test_rerun_is_unchanged_and_has_no_diff_key_without_diff_mode(graph, capsys):
    graph.add_app("Prod")
    result = run_module(capsys, display_name="Prod")
    assert result["changed"] is False
    assert "diff" not in result and "progress" not in result
    assert graph.writes == []


def test_check_mode_writes_nothing(graph, capsys):
    result = run_module(capsys, display_name="Prod", _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True
    assert result["application"]["id"] is None
    assert graph.writes == []


def test_template_defaults_to_the_clouds_non_gallery_template(graph, capsys):
    run_module(capsys, display_name="Prod", cloud="usgovernment", wait=False)
    assert graph.calls[0][2]["$filter"].endswith("applicationTemplateId eq '4602d0b4-76bb-404b-bca9-2652e1a39c6d'")
    assert [call[1] for call in graph.calls if call[0] == "POST"] == ["/applicationTemplates/4602d0b4-76bb-404b-bca9-2652e1a39c6d/instantiate"]


def test_explicit_template_wins(graph, capsys):
    run_module(capsys, display_name="Prod", template_id=fake_apps.OTHER_TEMPLATE, _ansible_check_mode=True)
    assert graph.calls[0][2]["$filter"].endswith("applicationTemplateId eq '%s'" % fake_apps.OTHER_TEMPLATE)


def test_duplicates_fail_with_their_ids(graph, capsys):
    first, second = graph.add_app("Prod"), graph.add_app("Prod")
    result = run_module(capsys, display_name="Prod")
    assert result["failed"] is True
    assert first["id"] in result["msg"] and second["id"] in result["msg"] and "app_id" in result["msg"]
    assert len(result["duplicates"]) == 2


def test_absent(graph, capsys):
    app = graph.add_app("Prod")
    result = run_module(capsys, display_name="Prod", state="absent", _ansible_diff=True)
    assert result["changed"] is True and not graph.apps
    assert result["diff"]["before"]["application_id"] == app["id"] and result["diff"]["after"]["state"] == "absent"
    result = run_module(capsys, display_name="Prod", state="absent")
    assert result["changed"] is False


def test_needs_a_name_or_an_app_id(graph, capsys):
    result = run_module(capsys, state="present")
    assert result["failed"] is True
    assert "one of the following is required: display_name, app_id" in result["msg"]
    assert graph.calls == []


def test_permission_errors_name_the_permission(graph, capsys):
    graph.fail_on[("GET", "/applications")] = GraphError("Insufficient privileges to complete the operation.", status=403,
                                                         code="Authorization_RequestDenied", request_id="rid-1")
    result = run_module(capsys, display_name="Prod")
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to list applications: Authorization_RequestDenied: Insufficient privileges")
    assert "(request-id rid-1)" in result["msg"] and "Application.Read.All" in result["msg"]
    assert result["status"] == 403

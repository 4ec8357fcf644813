# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entra_app module end to end (argument spec, check mode, diff, failures) with an in-memory Graph."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import importlib.util
import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.entrascim.cloudflare.plugins.module_utils import _entra_module
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.plugins.modules import entra_app

SECRET = "app-secret-value-never-printed-7Qx9"


def _load_fakes():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils", "test_apps.py")
    spec = importlib.util.spec_from_file_location("entra_app_fakes", path)
    fakes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fakes)
    return fakes


FAKES = _load_fakes()


@pytest.fixture
def graph(monkeypatch):
    fake = FAKES.FakeGraph()
    clock = FAKES.Clock()

    def build(self):
        self._client = fake
        self.sleep = clock.sleep
        self.clock = clock

    monkeypatch.setattr(_entra_module.EntraModule, "_build_client", build)
    return fake


def run_module(capsys, **args):
    args.setdefault("tenant_id", "00000000-0000-4000-8000-0000000000aa")
    args.setdefault("client_id", "00000000-0000-4000-8000-0000000000bb")
    args.setdefault("client_secret", SECRET)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            entra_app.main()
    out = capsys.readouterr().out
    assert SECRET not in out
    return json.loads(out)


def test_creates_with_diff(graph, capsys):
    result = run_module(capsys, display_name="Cloudflare SCIM - Prod", _ansible_diff=True)
    assert result["changed"] is True
    app = next(iter(graph.apps.values()))
    assert result["application"]["id"] == app["id"]
    assert result["application"]["application_template_id"] == FAKES.TEMPLATE
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
    run_module(capsys, display_name="Prod", template_id=FAKES.OTHER_TEMPLATE, _ansible_check_mode=True)
    assert graph.calls[0][2]["$filter"].endswith("applicationTemplateId eq '%s'" % FAKES.OTHER_TEMPLATE)


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


def test_documentation_attributes():
    import yaml
    doc = yaml.safe_load(entra_app.DOCUMENTATION)
    assert doc["attributes"]["check_mode"]["support"] == "full"
    assert doc["attributes"]["diff_mode"]["support"] == "full"
    assert doc["attributes"]["action_group"]["membership"] == ["entrascim.cloudflare.entra"]

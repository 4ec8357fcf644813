# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entra_sync_job_info module end to end with an in-memory Graph: read-only, loop-friendly results."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import importlib.util
import json
import os

import pytest
import yaml

from ansible.module_utils.testing import patch_module_args

from ansible_collections.entrascim.cloudflare.plugins.module_utils import _entra_module
from ansible_collections.entrascim.cloudflare.plugins.modules import entra_sync_job_info

SECRET = "graph-client-secret-never-printed-4Kd8"


def load_fakes():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils", "test_sync.py")
    spec = importlib.util.spec_from_file_location("entra_sync_fakes", path)
    fakes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fakes)
    return fakes


FAKES = load_fakes()


@pytest.fixture
def graph(monkeypatch):
    fake = FAKES.FakeSyncGraph()

    def build(self):
        self._client = fake

    monkeypatch.setattr(_entra_module.EntraModule, "_build_client", build)
    return fake


def warning_texts(result):
    """Warnings as text (ansible-core 2.19+ returns structured warning summaries)."""
    return [json.dumps(warning) for warning in result.get("warnings", [])]


def run_module(capsys, **args):
    args.setdefault("tenant_id", "00000000-0000-4000-8000-0000000000aa")
    args.setdefault("client_id", "00000000-0000-4000-8000-0000000000bb")
    args.setdefault("client_secret", SECRET)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            entra_sync_job_info.main()
    out = capsys.readouterr().out
    assert SECRET not in out
    return json.loads(out)


def test_by_display_name_with_logs(graph, capsys):
    job = graph.add_job(schedule="Active", code="Active", execution=FAKES.execution("EntryLevelErrors"))
    graph.logs = [FAKES.log(job["id"], "2025-06-02T10:0%d:00Z" % minute) for minute in range(3)]
    result = run_module(capsys, display_name="Cloudflare SCIM - Prod", provisioning_logs=2, _ansible_check_mode=True)
    assert result["changed"] is False and result["service_principal_id"] == FAKES.SP_ID
    assert result["jobs"][0]["provisioning_on"] is True and result["jobs"][0]["last_cycle"]["finished"] is True
    assert [entry["time"] for entry in result["provisioning_failures"]] == ["2025-06-02T10:02:00Z", "2025-06-02T10:01:00Z"]
    query = [params for method, path, params in graph.calls if path == "servicePrincipals"][0]["$filter"]
    assert query.endswith("applicationTemplateId eq '8adf8e6e-67b2-4cf2-a259-e3dc5476c621'")
    assert graph.writes == []


def test_cloud_picks_the_template(graph, capsys):
    run_module(capsys, display_name="Cloudflare SCIM - Prod", cloud="china")
    query = [params for method, path, params in graph.calls if path == "servicePrincipals"][0]["$filter"]
    assert query.endswith("applicationTemplateId eq '5a532e38-1581-4918-9658-008dc27c1d68'")


def test_app_without_job_is_an_empty_list(graph, capsys):
    result = run_module(capsys, service_principal_id=FAKES.SP_ID)
    assert result["jobs"] == [] and result["provisioning_failures"] == []
    assert not any("not found" in warning for warning in warning_texts(result))


def test_missing_app_warns(graph, capsys):
    result = run_module(capsys, display_name="No such app")
    assert result["jobs"] == [] and result["service_principal_id"] is None
    assert any("No such app" in warning for warning in warning_texts(result))


@pytest.mark.parametrize("args,message", [
    ({}, "one of the following is required: service_principal_id, display_name"),
    ({"service_principal_id": "x", "display_name": "y"}, "parameters are mutually exclusive"),
    ({"service_principal_id": "x", "provisioning_logs": -1}, "provisioning_logs must be 0 or more"),
])
def test_bad_options(graph, capsys, args, message):
    result = run_module(capsys, **args)
    assert result["failed"] is True and message in result["msg"]
    assert graph.calls == []


def test_documentation_attributes():
    doc = yaml.safe_load(entra_sync_job_info.DOCUMENTATION)
    assert doc["attributes"]["check_mode"]["support"] == "full"
    assert doc["attributes"]["diff_mode"]["support"] == "none"
    assert doc["attributes"]["action_group"]["membership"] == ["entrascim.cloudflare.entra"]

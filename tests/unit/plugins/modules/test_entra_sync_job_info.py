# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entra_sync_job_info module end to end with an in-memory Graph: read-only, loop-friendly results."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import pytest

from ansible_collections.entrascim.cloudflare.plugins.modules import entra_sync_job_info
from ansible_collections.entrascim.cloudflare.tests.unit.utils import fake_sync
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import MODULE_ARGS, use_fake_graph, warning_texts
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import run_module as run_main


@pytest.fixture
def graph(monkeypatch):
    return use_fake_graph(monkeypatch, fake_sync.FakeSyncGraph())


def run_module(capsys, **args):
    return run_main(entra_sync_job_info.main, capsys, args, defaults=MODULE_ARGS)


def test_by_display_name_with_logs(graph, capsys):
    job = graph.add_job(schedule="Active", code="Active", execution=fake_sync.execution("EntryLevelErrors"))
    graph.logs = [fake_sync.log(job["id"], "2025-06-02T10:0%d:00Z" % minute) for minute in range(3)]
    result = run_module(capsys, display_name="Cloudflare SCIM - Prod", provisioning_logs=2, _ansible_check_mode=True)
    assert result["changed"] is False and result["service_principal_id"] == fake_sync.SP_ID
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
    result = run_module(capsys, service_principal_id=fake_sync.SP_ID)
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

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entra_sync_job module end to end (argument spec, check mode, diff, warnings, failures) with an in-memory Graph."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.plugins.modules import entra_sync_job
from ansible_collections.entrascim.cloudflare.tests.unit.utils import fake_sync
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import FakeClock
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import MODULE_ARGS, use_fake_graph, warning_texts
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import run_module as run_main


@pytest.fixture
def graph(monkeypatch):
    fake = fake_sync.FakeSyncGraph()
    fake.clock = FakeClock()
    return use_fake_graph(monkeypatch, fake, fake.clock)


def run_module(capsys, **args):
    return run_main(entra_sync_job.main, capsys, args, defaults=dict(MODULE_ARGS, service_principal_id=fake_sync.SP_ID))


def test_started_creates_and_starts_with_diff(graph, capsys):
    result = run_module(capsys, state="started", _ansible_diff=True)
    job = fake_sync.only_job(graph)
    assert result["changed"] is True and result["actions"] == ["create", "start"]
    assert result["job"]["id"] == job["id"] and result["job"]["schedule"]["state"] == "Active"
    assert result["diff"] == {"before": {}, "after": {"id": job["id"], "template_id": "scim", "schedule_state": "Active",
                                                      "status_code": "NotRun", "quarantine_reason": None}}


def test_rerun_is_unchanged_and_never_starts_a_running_job(graph, capsys):
    graph.add_job(schedule="Active", code="Active", execution=fake_sync.execution())
    result = run_module(capsys, state="started")
    assert result["changed"] is False and "diff" not in result and "progress" not in result
    assert graph.writes == []


def test_check_mode_writes_nothing(graph, capsys):
    result = run_module(capsys, state="started", _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True and result["job"]["id"] is None
    assert result["diff"]["after"]["schedule_state"] == "Active"
    assert graph.writes == [] and graph.jobs == {}


def test_quarantine_is_a_warning_and_recovered_on_request(graph, capsys):
    graph.add_job(schedule="Active", code="Quarantine", quarantine=fake_sync.QUARANTINE)
    result = run_module(capsys, state="started")
    assert result["changed"] is False
    assert any("EncounteredQuarantineException" in warning for warning in warning_texts(result))
    assert result["job"]["status"]["quarantine"]["reason"] == "EncounteredQuarantineException"
    result = run_module(capsys, state="started", recover_quarantine=True)
    assert result["changed"] is True and result["actions"] == ["restart"]


def test_initial_cycle_quarantine_fails_with_the_job(graph, capsys):
    graph.add_job()

    def quarantine(job):
        if job["schedule"]["state"] == "Active":
            job["status"].update(code="Quarantine", quarantine=fake_sync.QUARANTINE)

    graph.on_get_job = quarantine
    result = run_module(capsys, state="started", wait="initial_cycle", poll_interval=5)
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to wait for the first provisioning cycle: Quarantine: ")
    assert result["job"]["status"]["code"] == "Quarantine"


def test_absent(graph, capsys):
    graph.add_job()
    assert run_module(capsys, state="absent")["changed"] is True
    result = run_module(capsys, state="absent")
    assert result["changed"] is False and result["job"] is None


def test_restarted_with_scope(graph, capsys):
    graph.add_job(schedule="Active", code="Active")
    result = run_module(capsys, state="restarted", reset_scope=["Watermark", "Escrows"])
    assert result["changed"] is True
    assert [body for method, path, body in graph.calls if path.endswith("/restart")] == [{"criteria": {"resetScope": "Watermark, Escrows"}}]


@pytest.mark.parametrize("args,message", [
    ({"poll_interval": 2}, "poll_interval must be at least 5"),
    ({"state": "present", "wait": "started"}, "wait=started needs state=started or state=restarted"),
    ({"reset_scope": ["ConnectorDataStore"]}, "value of reset_scope must be one or more of"),
])
def test_bad_options_fail_before_any_call(graph, capsys, args, message):
    result = run_module(capsys, **args)
    assert result["failed"] is True and message in result["msg"]
    assert graph.calls == []


def test_duplicate_jobs_fail_with_their_ids(graph, capsys):
    first, second = graph.add_job(), graph.add_job()
    result = run_module(capsys, state="present")
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to find the synchronization job: DuplicateSynchronizationJobs:")
    assert sorted(result["job_ids"]) == sorted([first["id"], second["id"]])


def test_permission_errors_name_the_permission(graph, capsys):
    graph.fail[("POST", "/start")] = [GraphError("Insufficient privileges to complete the operation.", status=403,
                                                 code="Authorization_RequestDenied", request_id="rid-7")] * 400
    graph.add_job()
    result = run_module(capsys, state="started", wait_timeout=5)
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to start synchronization job: Authorization_RequestDenied:")
    assert "Synchronization.ReadWrite.All" in result["msg"] and "rid-7" in result["msg"]
    assert result["status"] == 403

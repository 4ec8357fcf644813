# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decision logic of entra_sync_job / entra_sync_secrets / entra_sync_job_info (module_utils/_sync.py) against a small
in-memory Graph that records every call."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import hashlib
import json
import re

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._consistency import ConsistencyTimeout
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.plugins.module_utils import _secrets
from ansible_collections.entrascim.cloudflare.plugins.module_utils._service_principals import MultipleServicePrincipals
from ansible_collections.entrascim.cloudflare.plugins.module_utils._job_info import (
    RateLimiter, job_info, job_result, provisioning_failures, sync_job_info,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils._secrets import (
    ensure_secrets, plan_secrets, read_fingerprint, token_fingerprint, write_fingerprint,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils._sync import (
    SyncError, SyncService, ensure_job, plan_job, predict_job, restart_body,
)
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import FakeClock
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import graph_error
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_sync import (
    APP_ID,
    BASE,
    NEW_TOKEN,
    QUARANTINE,
    SP_ID,
    TOKEN,
    WRITE_METHODS,
    FakeSyncGraph,
    execution,
    log,
    make_job,
    only_job,
)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def graph():
    return FakeSyncGraph()


def service_for(graph, clock, timeout=60, progress=None):
    return SyncService(graph, graph.sp["id"], timeout=timeout, sleep=clock.sleep, clock=clock, progress=progress)


# ---------------------------------------------------------------------------------------------- shapes
def test_job_result_shape_and_never_times():
    raw = make_job(schedule="Active", code="Active", execution=execution(error={"code": "X", "message": "m", "tenantActionable": False}))
    raw["status"]["synchronizedEntryCountByType"] = [{"key": "user to User", "value": 4}]
    job = job_result(raw)
    assert job["template_id"] == "scim" and job["schedule"] == {"state": "Active", "interval": "PT40M"}
    assert job["status"]["steady_state_first_achieved_time"] is None
    assert job["status"]["last_execution"]["time_ended"] == "2025-06-02T10:00:30Z"
    assert job["status"]["last_execution"]["error"] == {"code": "X", "message": "m", "tenant_actionable": False}
    assert job["status"]["synchronized_entry_count_by_type"] == [{"key": "user to User", "value": 4}]
    assert job_result(None) is None


def test_job_info_flags():
    running = job_info(make_job(schedule="Active", code="Active", execution=execution()))
    assert running["provisioning_on"] and running["healthy"] and not running["quarantined"]
    assert running["last_cycle"]["finished"] and running["last_cycle"]["succeeded"] and running["last_cycle"]["count_exported"] == 3
    new = job_info(make_job())
    assert not new["provisioning_on"] and not new["healthy"]
    assert new["last_cycle"] == {"ran": False, "finished": False, "succeeded": False, "state": None, "time_began": None,
                                 "time_ended": None, "count_exported": None, "count_escrowed": None, "error": None}
    quarantined = job_info(make_job(schedule="Active", code="Quarantine", quarantine=QUARANTINE, execution=execution("Failed")))
    assert quarantined["quarantined"] and not quarantined["healthy"]
    assert quarantined["quarantine_reason"] == "EncounteredQuarantineException"
    assert quarantined["status"]["quarantine"]["error"]["tenant_actionable"] is True
    failed = job_info(make_job(schedule="Active", code="Active", execution=execution("Failed")))
    assert not failed["healthy"]
    running_first_cycle = job_info(make_job(schedule="Active", code="NotRun", execution=execution(ended=None)))
    assert running_first_cycle["healthy"] and not running_first_cycle["last_cycle"]["finished"]


# ---------------------------------------------------------------------------------------------- plan
def _job(schedule, code, quarantine=None):
    return job_result(make_job(job_id="scim.1", schedule=schedule, code=code, quarantine=quarantine))


@pytest.mark.parametrize("state,job,expected", [
    ("absent", None, []),
    ("absent", ("Active", "Active"), ["delete"]),
    ("present", None, ["create"]),
    ("present", ("Disabled", "NotConfigured"), []),
    ("present", ("Paused", "Paused"), []),
    ("started", None, ["create", "start"]),
    ("started", ("Disabled", "NotConfigured"), ["start"]),
    ("started", ("Paused", "Paused"), ["start"]),
    ("started", ("Active", "NotRun"), []),
    ("started", ("Active", "Active"), []),
    ("paused", None, ["create"]),
    ("paused", ("Active", "Active"), ["pause"]),
    ("paused", ("Active", "Quarantine"), ["pause"]),
    ("paused", ("Paused", "Paused"), []),
    ("paused", ("Disabled", "NotConfigured"), []),
    ("restarted", None, ["create", "restart"]),
    ("restarted", ("Active", "Active"), ["restart"]),
    ("restarted", ("Paused", "Paused"), ["restart"]),
])
def test_plan_job(state, job, expected):
    current = _job(*job) if job else None
    actions, warnings = plan_job(state, current)
    assert actions == expected
    assert warnings == []


@pytest.mark.parametrize("state", ["present", "started"])
def test_quarantine_is_reported_and_only_recovered_on_request(state):
    job = _job("Active", "Quarantine", QUARANTINE)
    actions, warnings = plan_job(state, job)
    assert actions == []
    assert len(warnings) == 1 and "EncounteredQuarantineException" in warnings[0] and "recover_quarantine" in warnings[0]
    assert "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable" in warnings[0]
    actions, warnings = plan_job(state, job, recover_quarantine=True)
    assert actions == ["restart"] and warnings == []


def test_plan_rejects_unknown_state():
    with pytest.raises(ValueError):
        plan_job("running", None)


def test_predict_job():
    created = predict_job(None, ["create", "start"], "scim")
    assert created["id"] is None and created["schedule"]["state"] == "Active" and created["status"]["code"] == "NotRun"
    paused = predict_job(job_result(make_job(schedule="Active", code="Active", execution=execution())), ["pause"], "scim")
    assert paused["schedule"]["state"] == "Paused" and paused["status"]["code"] == "Paused"
    assert predict_job(_job("Active", "Active"), ["delete"], "scim") is None


def test_restart_body():
    assert restart_body([]) == {"criteria": {}}
    assert restart_body(None) == {"criteria": {}}
    assert restart_body(["Watermark", "Escrows"]) == {"criteria": {"resetScope": "Watermark, Escrows"}}
    with pytest.raises(ValueError):
        restart_body(["ConnectorDataStore"])


# ---------------------------------------------------------------------------------------------- ensure_job
def test_create_and_start_then_rerun_does_not_start_again(graph, clock):
    result = ensure_job(service_for(graph, clock), "started")
    job = only_job(graph)
    assert result["changed"] is True and result["actions"] == ["create", "start"]
    assert result["job"]["id"] == job["id"] and result["job"]["schedule"]["state"] == "Active"
    assert result["diff"]["before"] == {} and result["diff"]["after"]["schedule_state"] == "Active"
    posts = [path for method, path in graph.writes if method == "POST"]
    assert posts[0].endswith("/synchronization/jobs") and posts[1].endswith("/start")
    assert graph.calls[0][2] is None  # the job list carries no filter we did not mean
    graph.calls[:] = []
    again = ensure_job(service_for(graph, clock), "started")
    assert again["changed"] is False and again["actions"] == []
    assert graph.writes == []
    assert again["diff"]["before"] == again["diff"]["after"]


def test_running_job_is_never_started(graph, clock):
    graph.add_job(schedule="Active", code="NotRun")
    result = ensure_job(service_for(graph, clock), "started", wait="started", wait_timeout=30)
    assert result["changed"] is False
    assert not any(path.endswith("/start") for dummy, path in graph.writes)


def test_check_mode_predicts_and_writes_nothing(graph, clock):
    result = ensure_job(service_for(graph, clock), "started", check_mode=True, wait="initial_cycle")
    assert result["changed"] is True and result["actions"] == ["create", "start"]
    assert result["job"]["id"] is None and result["job"]["schedule"]["state"] == "Active"
    assert graph.writes == [] and graph.jobs == {}
    graph.add_job(schedule="Active", code="Active")
    result = ensure_job(service_for(graph, clock), "absent", check_mode=True)
    assert result["changed"] is True and result["job"] is None and result["diff"]["after"] == {}
    assert graph.writes == [] and len(graph.jobs) == 1


def test_pause_and_absent(graph, clock):
    job = graph.add_job(schedule="Active", code="Active", execution=execution())
    result = ensure_job(service_for(graph, clock), "paused")
    assert result["changed"] is True and result["job"]["schedule"]["state"] == "Paused"
    assert ensure_job(service_for(graph, clock), "paused")["changed"] is False
    result = ensure_job(service_for(graph, clock), "absent")
    assert result["changed"] is True and result["job"] is None and result["diff"]["before"]["id"] == job["id"]
    assert graph.jobs == {}
    graph.calls[:] = []
    result = ensure_job(service_for(graph, clock), "absent")
    assert result["changed"] is False and graph.writes == []


def test_delete_of_a_job_gone_meanwhile_is_fine(graph, clock):
    graph.add_job()
    graph.fail[("DELETE", "")] = [graph_error(404, "Request_ResourceNotFound")]
    assert ensure_job(service_for(graph, clock), "absent")["changed"] is True


def test_restart_sends_the_scope_and_recovers_quarantine(graph, clock):
    graph.add_job(schedule="Active", code="Quarantine", quarantine=QUARANTINE, execution=execution("Failed"))
    result = ensure_job(service_for(graph, clock), "started")
    assert result["changed"] is False and "recover_quarantine" in result["warnings"][0]
    assert result["job"]["status"]["quarantine"]["reason"] == "EncounteredQuarantineException"
    result = ensure_job(service_for(graph, clock), "started", recover_quarantine=True, reset_scope=["QuarantineState"])
    assert result["changed"] is True and result["actions"] == ["restart"]
    restart = [body for method, path, body in graph.calls if path.endswith("/restart")]
    assert restart == [{"criteria": {"resetScope": "QuarantineState"}}]
    assert result["job"]["status"]["code"] == "Active" and result["warnings"] == []


def test_restarted_always_changes(graph, clock):
    graph.add_job(schedule="Active", code="Active", execution=execution())
    for dummy in range(2):
        result = ensure_job(service_for(graph, clock), "restarted")
        assert result["changed"] is True
    assert [body for method, path, body in graph.calls if path.endswith("/restart")] == [{"criteria": {}}, {"criteria": {}}]


def test_sync_calls_ride_out_replication(graph, clock):
    unknown = GraphError('{"error":{"code":"UnknownError","message":"not ready"}}', status=400, code="UnknownError")
    graph.fail[("LIST", "/synchronization/jobs")] = [graph_error(403, "Authorization_RequestDenied"), graph_error(409, "Conflict"), unknown]
    graph.fail[("POST", "/start")] = [graph_error(404, "Request_ResourceNotFound")]
    progress = []
    result = ensure_job(service_for(graph, clock, progress=progress.append), "started")
    assert result["changed"] is True and len(graph.jobs) == 1
    assert clock.sleeps[:3] == [1.0, 2.0, 4.0]
    assert any("retrying list synchronization jobs" in line for line in progress)


def test_replication_gives_up_after_the_timeout(graph, clock):
    graph.fail[("LIST", "/synchronization/jobs")] = [graph_error(403, "Authorization_RequestDenied") for dummy in range(50)]
    with pytest.raises(ConsistencyTimeout) as info:
        ensure_job(service_for(graph, clock, timeout=20), "present")
    assert info.value.status == 403 and info.value.step == "list synchronization jobs"


def test_other_errors_are_not_retried(graph, clock):
    graph.fail[("POST", "/synchronization/jobs")] = [graph_error(400, "Request_BadRequest", "bad template")]
    with pytest.raises(GraphError) as info:
        ensure_job(service_for(graph, clock), "present")
    assert info.value.step == "create synchronization job" and clock.sleeps == []


def test_a_create_that_answered_an_error_but_created_is_not_repeated(graph, clock):
    graph.create_then_fail = [graph_error(409, "Conflict")]
    result = ensure_job(service_for(graph, clock), "present")
    assert len(graph.jobs) == 1 and result["job"]["id"] == only_job(graph)["id"]
    assert len([path for method, path in graph.writes if path.endswith("/synchronization/jobs")]) == 1


def test_duplicate_jobs_fail_listing_ids(graph, clock):
    first = graph.add_job()
    second = graph.add_job()
    with pytest.raises(SyncError) as info:
        ensure_job(service_for(graph, clock), "started")
    assert info.value.code == "DuplicateSynchronizationJobs"
    assert first["id"] in info.value.message and second["id"] in info.value.message
    assert sorted(info.value.extra["job_ids"]) == sorted([first["id"], second["id"]])
    assert graph.writes == []


def test_other_templates_are_ignored(graph, clock):
    graph.add_job(template="customappsso", job_id="customappsso.1")
    result = ensure_job(service_for(graph, clock), "present")
    assert result["actions"] == ["create"] and len(graph.jobs) == 2


def test_wait_validation():
    with pytest.raises(ValueError):
        ensure_job(None, "present", wait="started")
    with pytest.raises(ValueError):
        ensure_job(None, "started", wait="forever")


def test_wait_started_reads_consistently(graph, clock):
    result = ensure_job(service_for(graph, clock), "started", wait="started", wait_timeout=30)
    gets = [path for method, path, dummy in graph.calls if method == "GET" and "/jobs/" in path]
    assert result["job"]["schedule"]["state"] == "Active" and len(gets) >= 3


def test_wait_initial_cycle_waits_for_a_new_cycle(graph, clock):
    old = execution(cycle="old-cycle")
    graph.add_job(schedule="Paused", code="Paused", execution=old)
    reads = {"n": 0}

    def cycle(job):
        reads["n"] += 1
        if reads["n"] == 4:  # read 1 follows the start, reads 2 and 3 are polls that still see the old cycle
            job["status"]["lastExecution"] = execution(cycle="new-cycle", began="2025-06-02T11:00:00Z", ended="2025-06-02T11:00:20Z")

    graph.on_get_job = cycle
    progress = []
    result = ensure_job(service_for(graph, clock, progress=progress.append), "started", wait="initial_cycle", poll_interval=7)
    assert result["job"]["status"]["last_execution"]["time_began"] == "2025-06-02T11:00:00Z"
    assert clock.sleeps == [7, 7]
    assert any("first provisioning cycle" in line for line in progress)


def test_wait_initial_cycle_polls_no_faster_than_5_seconds(graph, clock):
    graph.add_job(schedule="Disabled", code="NotConfigured")
    reads = {"n": 0}

    def cycle(job):
        reads["n"] += 1
        if reads["n"] == 3:
            job["status"]["lastExecution"] = execution()

    graph.on_get_job = cycle
    ensure_job(service_for(graph, clock), "started", wait="initial_cycle", poll_interval=1)
    assert clock.sleeps == [5]


def test_wait_initial_cycle_is_immediate_for_a_job_that_already_ran(graph, clock):
    graph.add_job(schedule="Active", code="Active", execution=execution())
    result = ensure_job(service_for(graph, clock), "started", wait="initial_cycle")
    assert result["changed"] is False and clock.sleeps == []


def test_wait_initial_cycle_fails_on_quarantine(graph, clock):
    graph.add_job()

    def quarantine(job):
        if job["schedule"]["state"] == "Active":
            job["status"].update(code="Quarantine", quarantine=QUARANTINE)

    graph.on_get_job = quarantine
    with pytest.raises(SyncError) as info:
        ensure_job(service_for(graph, clock), "started", wait="initial_cycle")
    assert info.value.code == "Quarantine" and "EncounteredQuarantineException" in info.value.message
    assert info.value.extra["job"]["status"]["code"] == "Quarantine"


def test_wait_initial_cycle_times_out(graph, clock):
    graph.add_job()
    with pytest.raises(SyncError) as info:
        ensure_job(service_for(graph, clock), "started", wait="initial_cycle", wait_timeout=30, poll_interval=10)
    assert info.value.code == "Timeout" and "30 s" in info.value.message
    assert sum(clock.sleeps) <= 30


def test_failed_cycle_is_warned(graph, clock):
    graph.add_job()

    def fail(job):
        job["status"]["lastExecution"] = execution("EntryLevelErrors")

    graph.on_get_job = fail
    result = ensure_job(service_for(graph, clock), "started", wait="initial_cycle")
    assert any("EntryLevelErrors" in warning for warning in result["warnings"])


# ---------------------------------------------------------------------------------------------- fingerprint
def test_fingerprint_is_salted_and_not_the_token():
    value = token_fingerprint(SP_ID, TOKEN)
    assert re.match(r"^[0-9a-f]{64}$", value)
    assert value == hashlib.sha256(("%s:%s" % (SP_ID, TOKEN)).encode("utf-8")).hexdigest()
    assert value != token_fingerprint("another-sp", TOKEN) and value != token_fingerprint(SP_ID, NEW_TOKEN)
    assert TOKEN not in value


def test_fingerprint_in_notes_keeps_other_text():
    fp1 = token_fingerprint(SP_ID, TOKEN)
    fp2 = token_fingerprint(SP_ID, NEW_TOKEN)
    assert write_fingerprint(None, fp1) == _secrets.FINGERPRINT_PREFIX + fp1
    notes = write_fingerprint("Owner: identity team\nTicket: CHG-1", fp1)
    assert notes == "Owner: identity team\nTicket: CHG-1\n" + _secrets.FINGERPRINT_PREFIX + fp1
    assert read_fingerprint(notes) == fp1
    replaced = write_fingerprint(notes, fp2)
    assert replaced == "Owner: identity team\nTicket: CHG-1\n" + _secrets.FINGERPRINT_PREFIX + fp2
    middle = "a\n%s%s\nb" % (_secrets.FINGERPRINT_PREFIX, fp1)
    assert write_fingerprint(middle, fp2) == "a\n%s%s\nb" % (_secrets.FINGERPRINT_PREFIX, fp2)
    assert read_fingerprint("nothing here") is None
    assert read_fingerprint(_secrets.FINGERPRINT_PREFIX + "abc") is None


# ---------------------------------------------------------------------------------------------- plan_secrets
def test_plan_secrets_first_time_writes_everything():
    plan = plan_secrets(SP_ID, {}, "keep me", BASE, TOKEN, sync_all=False)
    assert plan["changed_keys"] == ["BaseAddress", "SecretToken", "SyncAll"]
    assert plan["values"] == {"BaseAddress": BASE, "SecretToken": TOKEN, "SyncAll": "false"}
    assert plan["notes"] == "keep me\n" + _secrets.FINGERPRINT_PREFIX + token_fingerprint(SP_ID, TOKEN)
    assert plan["before"]["secret_token_saved"] is False and plan["after"]["secret_token_saved"] is True
    assert TOKEN not in json.dumps([plan["before"], plan["after"]])


def _saved(token=TOKEN, base=BASE, **extra):
    current = {"BaseAddress": base, "SecretToken": "*", "SyncAll": "false"}
    current.update(extra)
    notes = _secrets.FINGERPRINT_PREFIX + token_fingerprint(SP_ID, token) if token else None
    return current, notes


def test_plan_secrets_same_token_is_unchanged():
    current, notes = _saved()
    plan = plan_secrets(SP_ID, current, notes, BASE, TOKEN, sync_all=False)
    assert plan["changed_keys"] == [] and plan["values"] == {} and plan["notes"] is None
    assert plan["before"] == plan["after"]


def test_plan_secrets_rotated_token():
    current, notes = _saved()
    plan = plan_secrets(SP_ID, current, notes, BASE, NEW_TOKEN, sync_all=False)
    assert plan["changed_keys"] == ["SecretToken"]
    assert plan["values"]["SecretToken"] == NEW_TOKEN and plan["values"]["BaseAddress"] == BASE
    assert read_fingerprint(plan["notes"]) == token_fingerprint(SP_ID, NEW_TOKEN)
    assert plan["before"]["secret_token_fingerprint"] != plan["after"]["secret_token_fingerprint"]


def test_plan_secrets_without_fingerprint_writes_the_token():
    current, dummy = _saved()
    plan = plan_secrets(SP_ID, current, "manual setup", BASE, TOKEN, sync_all=False)
    assert plan["changed_keys"] == ["SecretToken"] and plan["notes"].startswith("manual setup\n")


def test_plan_secrets_base_address_drift_rewrites_all_keys_together():
    current, notes = _saved(base="https://api.cloudflare.com/client/v4/accounts/ffff/scim/v2")
    plan = plan_secrets(SP_ID, current, notes, BASE, TOKEN, sync_all=False)
    assert plan["changed_keys"] == ["BaseAddress"]
    assert plan["values"] == {"BaseAddress": BASE, "SecretToken": TOKEN, "SyncAll": "false"}
    assert plan["notes"] is None


def test_plan_secrets_on_create_and_always():
    current, notes = _saved(token="some-other-token-set-by-hand")
    plan = plan_secrets(SP_ID, current, notes, BASE, TOKEN, update_secret_token="on_create")
    assert plan["changed_keys"] == [] and plan["values"] == {}
    plan = plan_secrets(SP_ID, dict(current, BaseAddress="https://old.example/scim"), notes, BASE, TOKEN, update_secret_token="on_create")
    assert plan["changed_keys"] == ["BaseAddress"] and "SecretToken" not in plan["values"] and plan["notes"] is None
    plan = plan_secrets(SP_ID, {}, None, BASE, TOKEN, update_secret_token="on_create")
    assert "SecretToken" in plan["changed_keys"]
    current, notes = _saved()
    plan = plan_secrets(SP_ID, current, notes, BASE, TOKEN, update_secret_token="always")
    assert plan["changed_keys"] == ["SecretToken"] and plan["notes"] is None
    with pytest.raises(ValueError):
        plan_secrets(SP_ID, current, notes, BASE, TOKEN, update_secret_token="sometimes")


def test_plan_secrets_sync_all_and_notifications():
    current, notes = _saved(SyncNotificationSettings='{"Enabled":false,"DeleteThresholdEnabled":true,"DeleteThresholdValue":500}')
    plan = plan_secrets(SP_ID, current, notes, BASE, TOKEN, sync_all=True, notification_email="Ops@Example.com")
    assert plan["changed_keys"] == ["SyncAll", "SyncNotificationSettings"]
    settings = json.loads(plan["values"]["SyncNotificationSettings"])
    assert settings == {"Enabled": True, "Recipients": "Ops@Example.com", "DeleteThresholdEnabled": True, "DeleteThresholdValue": 500}
    assert plan["after"]["notification_email"] == "Ops@Example.com" and plan["after"]["sync_all"] is True
    saved = dict(current, SyncAll="True", SyncNotificationSettings=plan["values"]["SyncNotificationSettings"])
    assert plan_secrets(SP_ID, saved, notes, BASE, TOKEN, sync_all=True, notification_email="ops@example.com")["changed_keys"] == []
    assert plan_secrets(SP_ID, saved, notes, BASE, TOKEN, sync_all=None)["changed_keys"] == []
    off = plan_secrets(SP_ID, saved, notes, BASE, TOKEN, sync_all=True, notification_email="")
    assert off["changed_keys"] == ["SyncNotificationSettings"]
    assert json.loads(off["values"]["SyncNotificationSettings"])["Enabled"] is False


def test_plan_secrets_notes_too_long():
    with pytest.raises(SyncError) as info:
        plan_secrets(SP_ID, {}, "x" * 1000, BASE, TOKEN)
    assert info.value.code == "NotesTooLong"


# ---------------------------------------------------------------------------------------------- ensure_secrets
def test_secrets_validate_then_one_put_then_fingerprint(graph, clock):
    job = graph.add_job()
    graph.sp["notes"] = "Owner: identity team"
    result = ensure_secrets(service_for(graph, clock), BASE, TOKEN, sync_all=False, notification_email="ops@example.com")
    assert result["changed"] is True and result["validated"] is True and result["job_id"] == job["id"]
    assert result["changed_keys"] == ["BaseAddress", "SecretToken", "SyncAll", "SyncNotificationSettings"]
    writes = [(method, path.rsplit("/", 1)[1]) for method, path, dummy in graph.calls if method in WRITE_METHODS]
    assert writes == [("POST", "validateCredentials"), ("PUT", "secrets"), ("PATCH", SP_ID)]
    assert graph.secrets["SecretToken"] == TOKEN and graph.secrets["BaseAddress"] == BASE
    assert graph.sp["notes"] == "Owner: identity team\n" + _secrets.FINGERPRINT_PREFIX + token_fingerprint(SP_ID, TOKEN)
    assert TOKEN not in json.dumps(result)
    graph.calls[:] = []
    again = ensure_secrets(service_for(graph, clock), BASE, TOKEN, sync_all=False, notification_email="ops@example.com")
    assert again["changed"] is False and again["validated"] is False and again["changed_keys"] == []
    assert [call for call in graph.calls if call[0] in WRITE_METHODS] == []


def test_rejected_token_leaves_the_saved_one(graph, clock):
    graph.add_job()
    ensure_secrets(service_for(graph, clock), BASE, TOKEN)
    saved = dict(graph.secrets)
    notes = graph.sp["notes"]
    graph.calls[:] = []
    with pytest.raises(GraphError) as info:
        ensure_secrets(service_for(graph, clock), BASE, "rejected-token-value-000")
    assert info.value.code == "CredentialValidationUnavailable" and info.value.step.startswith("validate credentials")
    assert graph.writes == [] and graph.secrets == saved and graph.sp["notes"] == notes
    assert clock.sleeps == []  # a rejection is not replication lag


def test_secrets_check_mode_validates_but_writes_nothing(graph, clock):
    graph.add_job()
    result = ensure_secrets(service_for(graph, clock), BASE, TOKEN, check_mode=True)
    assert result["changed"] is True and result["validated"] is True
    assert graph.writes == [] and graph.secrets == {} and graph.sp["notes"] is None
    assert any(path.endswith("/validateCredentials") for dummy, path, dummy2 in graph.calls)
    with pytest.raises(GraphError):
        ensure_secrets(service_for(graph, clock), BASE, "rejected-token-value-000", check_mode=True)


def test_secrets_without_a_job(graph, clock):
    with pytest.raises(SyncError) as info:
        ensure_secrets(service_for(graph, clock), BASE, TOKEN)
    assert info.value.code == "NoSynchronizationJob" and graph.writes == []
    result = ensure_secrets(service_for(graph, clock), BASE, TOKEN, check_mode=True)
    assert result["changed"] is True and result["validated"] is False and result["warnings"]
    result = ensure_secrets(service_for(graph, clock), BASE, TOKEN, validate=False)
    assert result["changed"] is True and graph.secrets["SecretToken"] == TOKEN


def test_secrets_use_the_given_job_id(graph, clock):
    graph.add_job(job_id="scim.given")
    ensure_secrets(service_for(graph, clock), BASE, TOKEN, job_id="scim.given")
    assert not any(method == "LIST" for method, dummy, dummy2 in graph.calls)
    assert any(path.endswith("scim.given/validateCredentials") for dummy, path, dummy2 in graph.calls)


def test_secrets_reject_bad_base_address(graph, clock):
    for bad in ("http://api.cloudflare.com/client/v4/accounts/x/scim/v2", "api.cloudflare.com/scim", "https:///nohost", ""):
        with pytest.raises(ValueError):
            ensure_secrets(service_for(graph, clock), bad, TOKEN)
    with pytest.raises(ValueError):
        ensure_secrets(service_for(graph, clock), BASE, "")
    assert graph.calls == []


def test_secrets_ride_out_replication(graph, clock):
    graph.add_job()
    # The first 404 answers the read in the $batch, the second the read made again on its own, which waits and retries.
    graph.fail[("GET", "/synchronization/secrets")] = [graph_error(404, "Request_ResourceNotFound"), graph_error(404, "Request_ResourceNotFound")]
    graph.fail[("PUT", "/synchronization/secrets")] = [graph_error(409, "Conflict")]
    result = ensure_secrets(service_for(graph, clock), BASE, TOKEN)
    assert result["changed"] is True and graph.secrets["SecretToken"] == TOKEN and len(clock.sleeps) == 2


def test_secrets_and_notes_are_read_in_one_batch(graph, clock):
    graph.add_job()
    ensure_secrets(service_for(graph, clock), BASE, TOKEN)
    graph.calls[:] = []
    batches = []
    original = graph.batch
    graph.batch = lambda requests: batches.append([item["url"] for item in requests]) or original(requests)
    result = ensure_secrets(service_for(graph, clock), BASE, TOKEN)
    assert result["changed"] is False
    assert batches == [["/servicePrincipals/%s?$select=id,notes" % SP_ID, "/servicePrincipals/%s/synchronization/secrets" % SP_ID]]
    assert [(method, path) for method, path, dummy in graph.calls] == [
        ("GET", "servicePrincipals/%s" % SP_ID), ("GET", "servicePrincipals/%s/synchronization/secrets" % SP_ID)]


# ---------------------------------------------------------------------------------------------- logs and info
def test_rate_limiter(clock):
    limiter = RateLimiter(limit=5, window=10, sleep=clock.sleep, clock=clock)
    calls = []
    for dummy in range(5):
        limiter.acquire()
        calls.append(clock.now)
        clock.now += 1
    assert clock.sleeps == []
    for dummy in range(12):
        limiter.acquire()
        calls.append(clock.now)
    assert clock.sleeps[0] == 5
    for index in range(len(calls) - 5):
        assert calls[index + 5] - calls[index] >= 10  # never 6 calls within 10 seconds
    assert calls[-1] - calls[0] <= 31  # and no slower than needed (17 calls: the 16th is due 30 s after the 1st)


def test_provisioning_failures_newest_first_paged_and_paced(graph, clock):
    job_id = "scim.o'brien"
    graph.logs = [log(job_id, "2025-06-02T10:0%d:00Z" % minute) for minute in range(7)]
    graph.logs.append(log(job_id, "2025-06-02T10:09:00Z", status="success"))
    graph.logs.append(log("scim.other", "2025-06-02T10:09:30Z"))
    limiter = RateLimiter(limit=2, window=10, sleep=clock.sleep, clock=clock)
    entries = provisioning_failures(graph, job_id, 5, limiter=limiter)
    assert [entry["time"] for entry in entries] == ["2025-06-02T10:0%d:00Z" % minute for minute in (6, 5, 4, 3, 2)]
    assert entries[0] == {"id": entries[0]["id"], "job_id": job_id, "cycle_id": "c1", "time": "2025-06-02T10:06:00Z", "action": "create",
                          "status": "failure", "error_code": "SystemForCrossDomainIdentityManagementBadRequest",
                          "reason": "userName must be an e-mail",
                          "source_identity": {"id": "u1", "display_name": "alice@example.com", "identity_type": "User"},
                          "target_identity": {"id": "", "display_name": "alice@example.com",
                                              "identity_type": "urn:ietf:params:scim:schemas:core:2.0:User"}}
    params = graph.calls[0][2]
    assert params["$filter"] == "jobId eq 'scim.o''brien' and provisioningStatusInfo/status eq 'failure'"
    assert params["$orderby"] == "activityDateTime desc"
    assert len(graph.calls) == 3 and clock.sleeps == [10]
    assert provisioning_failures(graph, job_id, 0) == []


def test_info_by_display_name(graph):
    job = graph.add_job(schedule="Active", code="Active", execution=execution())
    graph.logs = [log(job["id"], "2025-06-02T10:00:00Z")]
    result = sync_job_info(graph, display_name="Cloudflare SCIM - Prod", application_template_id=graph.sp["applicationTemplateId"],
                           provisioning_logs=3, limiter=RateLimiter(sleep=lambda s: None))
    assert result["changed"] is False and result["service_principal_id"] == SP_ID
    assert result["service_principal"] == {"id": SP_ID, "app_id": APP_ID, "display_name": "Cloudflare SCIM - Prod",
                                           "managed": False, "cloudflare_account_id": None}
    assert [item["id"] for item in result["jobs"]] == [job["id"]] and result["jobs"][0]["healthy"]
    assert len(result["provisioning_failures"]) == 1 and result["warnings"] == []
    query = [params for method, path, params in graph.calls if path == "servicePrincipals"][0]["$filter"]
    assert query == "displayName eq 'Cloudflare SCIM - Prod' and applicationTemplateId eq '8adf8e6e-67b2-4cf2-a259-e3dc5476c621'"
    assert graph.writes == []


def test_info_app_without_job_and_missing_app(graph):
    result = sync_job_info(graph, service_principal_id=SP_ID)
    assert result["jobs"] == [] and result["service_principal_id"] == SP_ID and result["warnings"] == []
    result = sync_job_info(graph, service_principal_id="00000000-0000-0000-0000-000000000000")
    assert result["jobs"] == [] and result["service_principal"] is None and "not found" in result["warnings"][0]
    result = sync_job_info(graph, display_name="Nobody's app")
    assert result["jobs"] == [] and "Nobody's app" in result["warnings"][0]


def test_info_duplicate_names_and_template_filter(graph):
    graph.sps.append(dict(graph.sp, id="b750f6cf-2319-464a-bcc3-456926736a92"))
    with pytest.raises(MultipleServicePrincipals) as info:
        sync_job_info(graph, display_name="Cloudflare SCIM - Prod")
    assert info.value.code == "MultipleServicePrincipals" and "b750f6cf-2319-464a-bcc3-456926736a92" in info.value.message
    assert info.value.extra["service_principal_ids"] == [SP_ID, "b750f6cf-2319-464a-bcc3-456926736a92"]
    graph.sps.pop()
    graph.add_job()
    graph.add_job(template="other", job_id="other.1")
    assert len(sync_job_info(graph, service_principal_id=SP_ID)["jobs"]) == 2
    assert [job["template_id"] for job in sync_job_info(graph, service_principal_id=SP_ID, template_id="SCIM")["jobs"]] == ["scim"]

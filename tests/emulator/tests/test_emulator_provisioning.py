"""Provisioning cycles: what reaches Cloudflare, provisioning-log entries, quarantine, deprovisioning (sync.py)."""

import json

import pytest

from tests.emulator.harness import DEFAULT_CLOUDFLARE_ACCOUNTS
from tests.emulator.tests.clients import Scim

ALICE = "a1b2c3d4-0001-4000-8000-000000000001"
BOB = "a1b2c3d4-0002-4000-8000-000000000002"
DAVE = "a1b2c3d4-0004-4000-8000-000000000004"
FRANK = "a1b2c3d4-0006-4000-8000-000000000006"
ADMINS = "b1c2d3e4-0001-4000-8000-000000000001"
ENGINEERS = "b1c2d3e4-0002-4000-8000-000000000002"
CF_GROUP = "b1c2d3e4-0004-4000-8000-000000000004"


def _setup(graph, emulator, account, principals, start=True, query=""):
    _app, sp = graph.new_app()
    job = graph.new_job(sp["id"])
    base = emulator.cloudflare_base_address(account["account_id"]) + query
    response = graph.call("PUT", "/servicePrincipals/%s/synchronization/secrets" % sp["id"],
                          {"value": [{"key": "BaseAddress", "value": base}, {"key": "SecretToken", "value": account["token"]}]})
    assert response.status_code == 204
    for principal in principals:
        graph.assign(sp["id"], principal)
    if start:
        assert graph.action(sp["id"], job["id"], "start").status_code == 204
    return sp, job


def _scim(emulator, account):
    return Scim(emulator, account["account_id"], account["token"])


def _logs(graph, job_id):
    path = graph.filter_path("auditLogs/provisioning", "jobId eq '%s'" % job_id)
    response = graph.get(path)
    assert response.status_code == 200, response.text
    return response.json()["value"]


@pytest.fixture(autouse=True)
def _no_reports_throttle(faults):
    faults({"reports_throttle": {"limit": 0}})


def test_assigned_users_and_direct_group_members_are_pushed(graph, emulator, account):
    sp, job = _setup(graph, emulator, account, [ENGINEERS, FRANK])
    [summary] = emulator.run_cycle(sp["id"])["jobs"]
    assert summary["result"] == "Succeeded"
    scim = _scim(emulator, account)
    users = scim.users()
    # carol is a direct member; erin is only in the nested Contractors group (not expanded); frank is disabled in Entra.
    assert set(users) == {"carol@contoso.onmicrosoft.com", "frank@contoso.onmicrosoft.com"}
    assert users["frank@contoso.onmicrosoft.com"]["active"] is False
    groups = scim.groups()
    assert [m["value"] for m in groups["Cloudflare Engineers"]["members"]] == [users["carol@contoso.onmicrosoft.com"]["id"]]
    status = graph.job(sp["id"], job["id"])["status"]
    assert status["lastSuccessfulExecutionWithExports"]["countExported"] == 3
    # A second cycle without changes exports nothing and keeps the steady state.
    emulator.run_cycle(sp["id"])
    status2 = graph.job(sp["id"], job["id"])["status"]
    assert status2["lastExecution"]["countExported"] == 0 and status2["lastExecution"]["state"] == "Succeeded"
    assert status2["steadyStateFirstAchievedTime"] == status["steadyStateFirstAchievedTime"]
    assert status2["lastSuccessfulExecutionWithExports"]["activityIdentifier"] == status["lastExecution"]["activityIdentifier"]


def test_upn_mail_mismatch_and_cf_group_are_logged_failures(graph, emulator, account):
    sp, job = _setup(graph, emulator, account, [DAVE, CF_GROUP, ALICE])
    [summary] = emulator.run_cycle(sp["id"])["jobs"]
    assert summary["result"] == "EntryLevelErrors" and summary["escrowed"] == 2
    failures = {e["sourceIdentity"]["displayName"]: e for e in _logs(graph, job["id"]) if e["provisioningStatusInfo"]["status"] == "failure"}
    assert set(failures) == {"Dave Diaz", "CF Platform Team"}
    dave = failures["Dave Diaz"]["provisioningStatusInfo"]["errorInformation"]
    assert dave["errorCode"] == "SystemForCrossDomainIdentityManagementBadRequest" and "case-sensitive" in dave["reason"]
    assert "CF" in failures["CF Platform Team"]["provisioningStatusInfo"]["errorInformation"]["reason"]
    entry = failures["Dave Diaz"]
    assert entry["provisioningAction"] == "create" and entry["jobId"] == job["id"] and entry["servicePrincipal"]["id"] == sp["id"]
    assert [step["provisioningStepType"] for step in entry["provisioningSteps"]] == ["import", "scoping", "matching", "export"]
    status = graph.job(sp["id"], job["id"])["status"]
    assert status["lastExecution"]["state"] == "EntryLevelErrors" and status["lastExecution"]["countEscrowed"] == 2
    # Escrowed entries are retried on the next cycle (and fail again).
    emulator.run_cycle(sp["id"])
    assert graph.job(sp["id"], job["id"])["status"]["lastExecution"]["countEscrowed"] == 2


def test_rejected_token_quarantines_and_start_recovers(graph, emulator, account):
    sp, job = _setup(graph, emulator, account, [ALICE])
    emulator.mutate("revoke_cloudflare_token", account_id=account["account_id"], token=account["token"])
    [summary] = emulator.run_cycle(sp["id"])["jobs"]
    assert summary["result"] == "Quarantine"
    current = graph.job(sp["id"], job["id"])
    assert current["schedule"]["state"] == "Active" and current["status"]["code"] == "Quarantine"
    quarantine = current["status"]["quarantine"]
    assert quarantine["reason"] == "EncounteredQuarantineException"
    assert quarantine["error"]["code"] == "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable"
    assert quarantine["error"]["tenantActionable"] is True and quarantine["seriesCount"] == 1
    assert current["status"]["lastExecution"]["state"] == "Failed"
    # validateCredentials with the saved token now fails too.
    bad = graph.action(sp["id"], job["id"], "validateCredentials", {"useSavedCredentials": True})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "CredentialValidationUnavailable"
    emulator.run_cycle(sp["id"])
    assert graph.job(sp["id"], job["id"])["status"]["quarantine"]["seriesCount"] == 2
    # A new valid token + start clears the quarantine; the next cycle succeeds.
    emulator.mutate("add_cloudflare_token", account_id=account["account_id"], token=account["token"] + "-new")
    graph.call("PUT", "/servicePrincipals/%s/synchronization/secrets" % sp["id"], {"value": [{"key": "SecretToken", "value": account["token"] + "-new"}]})
    assert graph.action(sp["id"], job["id"], "start").status_code == 204
    assert graph.job(sp["id"], job["id"])["status"]["quarantine"] is None
    [summary] = emulator.run_cycle(sp["id"])["jobs"]
    assert summary["result"] == "Succeeded" and graph.job(sp["id"], job["id"])["status"]["code"] == "Active"


def test_token_without_scim_permission_quarantines(graph, emulator):
    account = {"account_id": DEFAULT_CLOUDFLARE_ACCOUNTS[2]["account_id"], "token": "cf-token-without-scim-permission-03"}
    sp, job = _setup(graph, emulator, account, [ALICE])
    emulator.run_cycle(sp["id"])
    assert graph.job(sp["id"], job["id"])["status"]["code"] == "Quarantine"


def test_base_address_elsewhere_fails_then_quarantines(graph, emulator, account):
    sp, job = _setup(graph, emulator, account, [ALICE])
    graph.call("PUT", "/servicePrincipals/%s/synchronization/secrets" % sp["id"],
               {"value": [{"key": "BaseAddress", "value": "https://api.cloudflare.com/client/v4/accounts/%s/scim/v2" % account["account_id"]}]})
    for expected in ("Failed", "Failed", "Quarantine"):
        [summary] = emulator.run_cycle(sp["id"])["jobs"]
        assert summary["result"] == expected
    status = graph.job(sp["id"], job["id"])["status"]
    assert status["countSuccessiveCompleteFailures"] == 3
    assert status["quarantine"]["reason"] == "EncounteredTotalEscrowThreshold"
    assert status["lastExecution"]["error"]["code"] == "SystemForCrossDomainIdentityManagementServiceUnavailable"
    assert _scim(emulator, account).users() == {}


def test_removing_an_assignment_deprovisions_on_the_next_cycle(graph, emulator, account):
    sp, job = _setup(graph, emulator, account, [ALICE, ADMINS])
    emulator.run_cycle(sp["id"])
    scim = _scim(emulator, account)
    assert scim.users()["alice@contoso.onmicrosoft.com"]["active"] is True
    emulator.mutate("remove_assignment", sp_id=sp["id"], principal_id=ALICE)
    emulator.run_cycle(sp["id"])
    # alice stays in scope through the Cloudflare Admins group.
    assert scim.users()["alice@contoso.onmicrosoft.com"]["active"] is True
    emulator.mutate("remove_assignment", sp_id=sp["id"], principal_id=ADMINS)
    emulator.run_cycle(sp["id"])
    users = scim.users()
    assert users["alice@contoso.onmicrosoft.com"]["active"] is False and users["bob@contoso.onmicrosoft.com"]["active"] is False
    assert "Cloudflare Admins" not in scim.groups()
    actions = {(e["provisioningAction"], e["sourceIdentity"]["displayName"]) for e in _logs(graph, job["id"])}
    assert {("disable", "Alice Anders"), ("disable", "Bob Brown"), ("delete", "Cloudflare Admins")} <= actions


def test_pause_stops_cycles_and_start_resumes(graph, emulator, account):
    sp, job = _setup(graph, emulator, account, [ALICE])
    assert graph.action(sp["id"], job["id"], "pause").status_code == 204
    assert emulator.run_cycle(sp["id"])["jobs"] == []
    assert _scim(emulator, account).users() == {}
    graph.action(sp["id"], job["id"], "start")
    emulator.run_cycle(sp["id"])
    assert "alice@contoso.onmicrosoft.com" in _scim(emulator, account).users()


def test_not_started_job_does_not_provision(graph, emulator, account):
    sp, job = _setup(graph, emulator, account, [ALICE], start=False)
    assert emulator.run_cycle(sp["id"])["jobs"] == []
    assert graph.job(sp["id"], job["id"])["status"]["code"] == "NotConfigured"


def test_changes_in_entra_flow_to_cloudflare(graph, emulator, account):
    sp, _job = _setup(graph, emulator, account, [ADMINS], query="?aadOptscim062020")
    emulator.run_cycle(sp["id"])
    scim = _scim(emulator, account)
    emulator.mutate("set_user", user=BOB, changes={"surname": "Brownstone", "accountEnabled": False})
    try:
        emulator.run_cycle(sp["id"])
        bob = scim.users()["bob@contoso.onmicrosoft.com"]
        assert bob["name"]["familyName"] == "Brownstone" and bob["active"] is False
        assert [m["value"] for m in scim.groups()["Cloudflare Admins"]["members"]] == [scim.users()["alice@contoso.onmicrosoft.com"]["id"]]
    finally:
        emulator.mutate("set_user", user=BOB, changes={"surname": "Brown", "accountEnabled": True})
    emulator.run_cycle(sp["id"])
    assert len(scim.groups()["Cloudflare Admins"]["members"]) == 2


def test_sync_all_provisions_everyone(graph, emulator, account):
    sp, _job = _setup(graph, emulator, account, [])
    graph.call("PUT", "/servicePrincipals/%s/synchronization/secrets" % sp["id"], {"value": [{"key": "SyncAll", "value": "True"}]})
    emulator.run_cycle(sp["id"])
    users = _scim(emulator, account).users()
    assert {"alice@contoso.onmicrosoft.com", "erin@contoso.onmicrosoft.com"} <= set(users)


def test_restart_with_connector_reset_rematches_instead_of_duplicating(graph, emulator, account):
    sp, job = _setup(graph, emulator, account, [ALICE])
    emulator.run_cycle(sp["id"])
    graph.action(sp["id"], job["id"], "restart", {"criteria": {"resetScope": "Full"}})
    [summary] = emulator.run_cycle(sp["id"])["jobs"]
    assert summary["result"] == "Succeeded" and summary["exported"] == 1
    assert list(_scim(emulator, account).users()) == ["alice@contoso.onmicrosoft.com"]
    update = _logs(graph, job["id"])[0]
    assert update["provisioningAction"] == "update"


def test_admin_quarantine_and_state_dump(graph, emulator, account):
    sp, job = _setup(graph, emulator, account, [ALICE])
    emulator.mutate("quarantine_job", sp_id=sp["id"])
    status = graph.job(sp["id"], job["id"])["status"]
    assert status["code"] == "Quarantine" and status["quarantine"]["reason"] == "QuarantinedOnDemand"
    state = emulator.state()
    assert any(j["id"] == job["id"] and j["servicePrincipalId"] == sp["id"] for j in state["jobs"])
    dumped_account = next(a for a in state["cloudflare_accounts"] if a["account_id"] == account["account_id"])
    assert dumped_account["tokens"][0]["fingerprint"].startswith("sha256:")
    assert account["token"] not in json.dumps(state)

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""entra_sync_job, entra_sync_secrets and entra_sync_job_info against the emulator.

The enterprise apps are created with plain Graph calls (no module of this collection). End states are checked in the
emulator's state dump (job schedule and status, saved secrets as fingerprints, the service principal's notes) and
request log (what was written, in which order), not only in Ansible's output. The ``playbook`` fixture fails any run
whose output shows a secret; the results each playbook records are scanned too. One run is at ``-vvv --diff``.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import hashlib
import json
import time

import pytest

from tests.emulator import harness

ACCOUNT = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab01"
TOKEN = "cf-sync-scim-token-first-3Hq8Zr5Lw1"
ROTATED = "cf-sync-scim-token-rotated-9Vd2Kx7Mp4"
RECOVERY = "cf-sync-scim-token-recovery-6Tb1Nc8Gs3"
NEVER_ISSUED = "cf-sync-scim-token-never-issued-2Pj5Wy"
REALISTIC_ACCOUNT = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab02"
REALISTIC_TOKEN = "cf-sync-scim-token-realistic-8Ue4Fa0Ro6"
ALICE = "a1b2c3d4-0001-4000-8000-000000000001"  # alice@contoso.onmicrosoft.com in the default seed
FINGERPRINT_LINE = "entrascim.cloudflare:scim-token-sha256:"
HOST = "acct01"
NOTIFY = "provisioning-alerts@example.com"
SEED = {"cloudflare_accounts": [
    {"account_id": ACCOUNT, "tokens": [{"value": TOKEN}]},
    {"account_id": REALISTIC_ACCOUNT, "tokens": [{"value": REALISTIC_TOKEN}]},
]}


def emulator_fingerprint(token):
    """How the emulator's state dump shows a saved secret."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def salted_fingerprint(sp_id, token):
    """The fingerprint entra_sync_secrets keeps in the service principal's notes."""
    return hashlib.sha256(("%s:%s" % (sp_id, token)).encode("utf-8")).hexdigest()


class Graph(harness.GraphAdmin):
    """Plain Graph calls against the emulator for the test setup; rides out injected 429/503 and replication lag."""

    def request(self, method, path, body=None, params=None, retry_statuses=(429, 503), timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            response = super(Graph, self).request(method, path, body, params)
            if response.status_code not in retry_statuses or time.monotonic() > deadline:
                return response
            time.sleep(float(response.headers.get("Retry-After") or 1))

    def create_app(self, name):
        """Instantiate the non-gallery template; find what a lying 404 created; wait until the SP reads back."""
        response = self.request("POST", "applicationTemplates/%s/instantiate" % harness.NON_GALLERY_TEMPLATE_ID, {"displayName": name})
        if response.status_code == 201:
            sp_id = response.json()["servicePrincipal"]["id"]
        else:
            assert response.status_code == 404, response.text[:300]
            sp_id = None
            deadline = time.monotonic() + 60
            while sp_id is None and time.monotonic() < deadline:
                found = self.request("GET", "servicePrincipals", params={"$filter": "displayName eq '%s'" % name}).json()["value"]
                sp_id = found[0]["id"] if found else None
                time.sleep(0 if sp_id else 0.5)
            assert sp_id, "instantiate answered 404 and created nothing"
        read = self.request("GET", "servicePrincipals/%s" % sp_id, retry_statuses=(404, 429, 503))
        assert read.status_code == 200, read.text[:300]
        return sp_id

    def assign(self, sp_id, principal_id):
        response = self.request("POST", "servicePrincipals/%s/appRoleAssignedTo" % sp_id,
                                {"principalId": principal_id, "resourceId": sp_id, "appRoleId": harness.USER_ROLE_ID})
        assert response.status_code == 201, response.text[:300]


@pytest.fixture(scope="module")
def tenant(emulator, secrets):
    for label, value in (("sync token", TOKEN), ("sync rotated token", ROTATED), ("sync recovery token", RECOVERY),
                         ("sync never issued token", NEVER_ISSUED), ("sync realistic token", REALISTIC_TOKEN)):
        secrets.add(label, value)
    emulator.seed(SEED)
    return Graph(emulator)


@pytest.fixture
def run(playbook, secrets, tmp_path):
    """run(playbook name, sp_id, **options) -> (PlaybookResult, the results the playbook recorded)."""
    results = tmp_path / "sync-results.json"

    def runner(name, sp_id, check=False, diff=False, verbosity=0, expect_rc=0, **extra):
        if results.exists():
            results.unlink()
        variables = {"sync_sp_id": sp_id, "sync_results": str(results)}
        variables.update(extra)
        outcome = playbook(name, hosts=(HOST,), extra_vars=variables, check=check, diff=diff, verbosity=verbosity, expect_rc=expect_rc)
        text = results.read_text()
        secrets.assert_clean(text, "the results recorded by %s" % name)
        return outcome, json.loads(text)

    return runner


def jobs_of(state, sp_id):
    return [job for job in state["jobs"] if job["servicePrincipalId"] == sp_id]


def only_job(state, sp_id):
    jobs = jobs_of(state, sp_id)
    assert len(jobs) == 1, "expected exactly one job on %s, found %d" % (sp_id, len(jobs))
    return jobs[0]


def secrets_of(state, sp_id):
    return dict((item["key"], item["value"]) for item in state["secrets"].get(sp_id, []))


def notes_of(state, sp_id):
    return [sp for sp in state["service_principals"] if sp["id"] == sp_id][0]["notes"] or ""


def entries(emulator):
    return [entry for entry in emulator.requests_log()["entries"] if not entry["operation"].startswith("token")]


def writes(emulator):
    return [(entry["method"], entry["operation"]) for entry in entries(emulator) if entry["write"]]


def wait_for(condition, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for %s" % what
        time.sleep(0.25)


def test_lifecycle(emulator, tenant, run):
    sp_id = tenant.create_app("Cloudflare SCIM sync lifecycle")
    tenant.assign(sp_id, ALICE)
    base = emulator.cloudflare_base_address(ACCOUNT)
    converge = dict(sync_base_address=base, sync_token=TOKEN, sync_notification_email=NOTIFY)

    # Check mode on a fresh app: predicts the changes, writes nothing (request log), creates no job.
    emulator.reset_log()
    outcome, res = run("sync_converge.yml", sp_id, check=True, diff=True, **converge)
    assert outcome.changed == 3
    assert res["job_present"]["job"]["id"] is None and res["job_started"]["actions"] == ["create", "start"]
    assert res["secrets"]["changed_keys"] == ["BaseAddress", "SecretToken", "SyncAll", "SyncNotificationSettings"]
    assert res["secrets"]["validated"] is False
    assert writes(emulator) == []
    state = emulator.state()
    assert jobs_of(state, sp_id) == [] and secrets_of(state, sp_id) == {} and notes_of(state, sp_id) == ""

    # Create: job, credentials tested with the NEW values before the one PUT, fingerprint, provisioning on.
    emulator.reset_log()
    outcome, res = run("sync_converge.yml", sp_id, sync_wait_started=True, **converge)
    assert outcome.changed == 3
    assert res["secrets"]["validated"] is True and res["secrets"]["job_id"] == res["job_present"]["job"]["id"]
    assert res["job_started"]["job"]["schedule"]["state"] == "Active" and res["job_started"]["progress"]  # wait: started
    order = [entry["operation"] for entry in entries(emulator) if entry["operation"].startswith("sync.") and entry["method"] != "GET"]
    assert order == ["sync.jobs.create", "sync.jobs.validateCredentials", "sync.secrets.put", "sync.jobs.start"]
    state = emulator.state()
    job = only_job(state, sp_id)
    assert job["id"] == res["info"]["jobs"][0]["id"] and job["schedule"]["state"] == "Active"
    saved = secrets_of(state, sp_id)
    assert saved["BaseAddress"] == base and saved["SecretToken"] == emulator_fingerprint(TOKEN) and saved["SyncAll"] == "false"
    assert json.loads(saved["SyncNotificationSettings"])["Recipients"] == NOTIFY
    assert notes_of(state, sp_id) == FINGERPRINT_LINE + salted_fingerprint(sp_id, TOKEN)

    # Re-run: nothing changes, nothing is written, start is never called on the running job.
    emulator.reset_log()
    outcome, res = run("sync_converge.yml", sp_id, **converge)
    assert outcome.changed == 0 and res["secrets"]["changed_keys"] == []
    assert writes(emulator) == []

    # Drift: provisioning paused and the Tenant URL changed in the portal. Repaired: URL rewritten, job resumed.
    emulator.mutate("pause_job", sp_id=sp_id)
    emulator.mutate("set_secret", sp_id=sp_id, key="BaseAddress", value="https://scim.example.invalid/scim/v2")
    emulator.reset_log()
    outcome, res = run("sync_converge.yml", sp_id, **converge)
    assert outcome.changed == 2 and res["secrets"]["changed_keys"] == ["BaseAddress"]
    assert writes(emulator) == [("PUT", "sync.secrets.put"), ("POST", "sync.jobs.start")]
    state = emulator.state()
    assert secrets_of(state, sp_id)["BaseAddress"] == base and only_job(state, sp_id)["schedule"]["state"] == "Active"
    assert secrets_of(state, sp_id)["SecretToken"] == emulator_fingerprint(TOKEN)

    # Drift: the job was deleted. Re-created (never twice) and started; the saved secrets were kept.
    emulator.mutate("delete_job", sp_id=sp_id)
    emulator.reset_log()
    outcome, res = run("sync_converge.yml", sp_id, **converge)
    assert outcome.changed == 2 and res["secrets"]["changed"] is False
    assert writes(emulator) == [("POST", "sync.jobs.create"), ("POST", "sync.jobs.start")]
    job = only_job(emulator.state(), sp_id)
    assert job["schedule"]["state"] == "Active"

    # Failed provisioning shows up in entra_sync_job_info (provisioning logs, newest first).
    emulator.mutate("set_secret", sp_id=sp_id, key="BaseAddress", value="https://scim.example.invalid/scim/v2")
    wait_for(lambda: [entry for entry in emulator.state()["provisioning_logs"]
                      if entry["jobId"] == job["id"] and entry["provisioningStatusInfo"]["status"] == "failure"], "a failed cycle")
    emulator.mutate("pause_job", sp_id=sp_id)
    outcome, res = run("sync_job.yml", sp_id, sync_state="paused", sync_logs=3)
    assert outcome.changed == 0
    failures = res["info"]["provisioning_failures"]
    assert 1 <= len(failures) <= 3 and all(entry["job_id"] == job["id"] and entry["status"] == "failure" for entry in failures)
    assert failures[0]["source_identity"]["id"] == ALICE and failures[0]["error_code"]
    assert [entry["time"] for entry in failures] == sorted((entry["time"] for entry in failures), reverse=True)
    assert res["info"]["jobs"][0]["provisioning_on"] is False

    # A token Cloudflare rejects fails the task and never replaces the saved one (nor the fingerprint).
    emulator.reset_log()
    outcome, res = run("sync_converge.yml", sp_id, expect_rc=2, **dict(converge, sync_token=NEVER_ISSUED))
    assert "CredentialValidationUnavailable" in outcome.output and outcome.failed == 1
    assert res["secrets"]["failed"] is True and res["secrets"]["msg"].startswith("Failed to validate credentials")
    assert ("PUT", "sync.secrets.put") not in writes(emulator)
    state = emulator.state()
    assert secrets_of(state, sp_id)["SecretToken"] == emulator_fingerprint(TOKEN)
    assert notes_of(state, sp_id) == FINGERPRINT_LINE + salted_fingerprint(sp_id, TOKEN)

    # Rotation at -vvv --diff (the fixture scans the output for every token): only the token (and the drifted
    # URL) are written, the fingerprint follows, the paused job is started again.
    emulator.mutate("add_cloudflare_token", account_id=ACCOUNT, token=ROTATED)
    outcome, res = run("sync_converge.yml", sp_id, diff=True, verbosity=3, **dict(converge, sync_token=ROTATED))
    assert outcome.changed == 2 and res["secrets"]["changed_keys"] == ["BaseAddress", "SecretToken"]
    assert "secret_token_fingerprint" in outcome.output
    state = emulator.state()
    assert secrets_of(state, sp_id)["SecretToken"] == emulator_fingerprint(ROTATED)
    assert notes_of(state, sp_id) == FINGERPRINT_LINE + salted_fingerprint(sp_id, ROTATED)

    # Quarantine (Cloudflare revoked the token): reported, not touched without recover_quarantine; a new working
    # token then lifts it through the converge playbook (recover_quarantine when the secrets changed).
    emulator.mutate("revoke_cloudflare_token", account_id=ACCOUNT, token=ROTATED)
    wait_for(lambda: only_job(emulator.state(), sp_id)["status"]["code"] == "Quarantine", "the quarantine")
    emulator.reset_log()
    outcome, res = run("sync_job.yml", sp_id, sync_state="started", sync_repeat=True)
    assert outcome.changed == 0 and writes(emulator) == []
    assert "in quarantine" in outcome.output and "recover_quarantine" in outcome.output
    assert res["info"]["jobs"][0]["quarantined"] is True and res["info"]["jobs"][0]["quarantine_reason"]
    emulator.mutate("add_cloudflare_token", account_id=ACCOUNT, token=RECOVERY)
    emulator.reset_log()
    outcome, res = run("sync_converge.yml", sp_id, **dict(converge, sync_token=RECOVERY))
    # The real service retries a quarantined job at a reduced rate (the emulator: every 4 cycle intervals); on a
    # busy machine that retry can run with the newly saved token between the PUT and the job task and lift the
    # quarantine itself. Then nothing is left to restart; otherwise the module restarts it, never "start".
    if res["job_started"]["actions"]:
        assert outcome.changed == 2 and res["job_started"]["actions"] == ["restart"]
        assert ("POST", "sync.jobs.restart") in writes(emulator)
    else:
        assert outcome.changed == 1 and res["job_started"]["job"]["status"]["code"] != "Quarantine"
    assert ("POST", "sync.jobs.start") not in writes(emulator)
    assert only_job(emulator.state(), sp_id)["status"]["code"] != "Quarantine"

    # Restart and wait for the cycle (poll_interval 5 s): it ends with the recovered token and the user arrived.
    outcome, res = run("sync_job.yml", sp_id, sync_state="restarted", sync_wait="initial_cycle", sync_reset_scope=["Watermark"])
    assert outcome.changed == 1
    cycle = res["info"]["jobs"][0]["last_cycle"]
    assert cycle["finished"] is True and cycle["state"] == "Succeeded"
    assert res["job"]["job"]["status"]["last_execution"]["time_ended"]
    account = [item for item in emulator.state()["cloudflare_accounts"] if item["account_id"] == ACCOUNT][0]
    assert "alice@contoso.onmicrosoft.com" in {user["userName"] for user in account["users"]}

    # Absent: deleted once, then nothing to do; the info module returns an empty list for an app without a job.
    outcome, res = run("sync_job.yml", sp_id, sync_state="absent", sync_repeat=True)
    assert outcome.changed == 1 and res["job"]["changed"] is True and res["job_again"]["changed"] is False
    assert res["info"]["jobs"] == [] and res["info"]["service_principal_id"] == sp_id
    assert jobs_of(emulator.state(), sp_id) == []


def test_converges_under_realistic_faults(emulator, tenant, run):
    emulator.set_faults("realistic")
    try:
        sp_id = tenant.create_app("Cloudflare SCIM sync realistic")
        converge = dict(sync_base_address=emulator.cloudflare_base_address(REALISTIC_ACCOUNT), sync_token=REALISTIC_TOKEN)
        emulator.reset_log()
        outcome, res = run("sync_converge.yml", sp_id, sync_wait_started=True, **converge)
        assert outcome.changed == 3 and res["secrets"]["validated"] is True
        statuses = [entry["status"] for entry in entries(emulator)]
        assert any(status in (400, 403, 404, 409, 429, 503) for status in statuses), "no fault was injected"
        outcome, res = run("sync_converge.yml", sp_id, **converge)
        assert outcome.changed == 0
    finally:
        emulator.set_faults("none")
    state = emulator.state()
    assert only_job(state, sp_id)["schedule"]["state"] == "Active"
    assert secrets_of(state, sp_id)["SecretToken"] == emulator_fingerprint(REALISTIC_TOKEN)

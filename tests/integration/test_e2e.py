# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""End to end: the collection's own playbooks over 10 Cloudflare accounts under the `realistic` fault profile.

provision -> idempotent re-run -> drift on five accounts (paused job, deleted job, wrong BaseAddress, removed
assignment, rotated token) -> repaired -> deprovision refused without confirmation -> deprovision with it.
Every end state is read from the emulator, not from Ansible's output; the playbook fixture scans every output
(including -vvv --diff) for every secret value.
"""

from __future__ import absolute_import, division, print_function

import hashlib
import os

import pytest

from tests.emulator import harness

PLAYBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "playbooks")
ACCOUNTS = 10
GROUP = "E2E Cloudflare Users"
MEMBERS = ["e2e.ann@contoso.com", "e2e.ben@contoso.com"]


def account_id(index):
    return "%032x" % (0xe2e000 + index)


def token(index, generation=0):
    return "e2e-cf-token-%02d-gen%d-Qm7Tz" % (index, generation)


def fingerprint(value):
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


def app_name(host):
    return "Cloudflare SCIM - %s" % host


@pytest.fixture(scope="module")
def fleet(emulator, secrets):
    users = [{"userPrincipalName": upn, "mail": upn, "displayName": upn.split("@", maxsplit=1)[0], "givenName": "E2E",
              "surname": upn.split("@", maxsplit=1)[0], "accountEnabled": True} for upn in MEMBERS]
    emulator.seed({
        "users": users,
        "groups": [{"displayName": GROUP, "members": MEMBERS}],
        "cloudflare_accounts": [{"account_id": account_id(i), "tokens": [{"value": token(i), "scim_permission": True}]}
                                for i in range(ACCOUNTS)],
    })
    for i in range(ACCOUNTS):
        secrets.add("e2e token %d" % i, token(i))
        secrets.add("e2e rotated token %d" % i, token(i, 1))
    emulator.set_faults("realistic")
    hosts = dict(("e2e-%02d" % i, {
        "cloudflare_scim_account_id": account_id(i),
        "cloudflare_scim_token": token(i),
        "cloudflare_scim_assignments": [{"type": "group", "display_name": GROUP}],
    }) for i in range(ACCOUNTS))
    yield hosts
    emulator.set_faults("none")


def run(playbook, fleet, emulator, name="provision", **options):
    extra = harness.role_vars(emulator)
    extra.update(options.pop("extra_vars", {}))
    # By path, as from a project checkout; "fqcn:" runs the playbook as a collection playbook (entrascim.cloudflare.<name>).
    target = "entrascim.cloudflare." + name[5:] if name.startswith("fqcn:") else os.path.join(PLAYBOOKS, name + ".yml")
    return playbook(target, hosts=fleet, extra_vars=extra, **options)


def view(emulator):
    """Per account: apps, the job, secrets and assignments, from the emulator's state."""
    state = emulator.state()
    result = {}
    for host in ["e2e-%02d" % i for i in range(ACCOUNTS)]:
        apps = [app for app in state["applications"] if app["displayName"] == app_name(host)]
        sps = [sp for sp in state["service_principals"] if sp["displayName"] == app_name(host)]
        sp_id = sps[0]["id"] if len(sps) == 1 else None
        jobs = [job for job in state["jobs"] if job.get("servicePrincipalId") == sp_id]
        secrets = dict((item["key"], item["value"]) for item in state["secrets"].get(sp_id, [])) if sp_id else {}
        result[host] = {"apps": len(apps), "sps": len(sps), "jobs": jobs, "secrets": secrets,
                        "assignments": state["assignments"].get(sp_id, []) if sp_id else [], "sp_id": sp_id}
    return result


def assert_converged(emulator, tokens):
    for index, (host, acct) in enumerate(sorted(view(emulator).items())):
        assert acct["apps"] == 1 and acct["sps"] == 1, "%s: %d apps, %d service principals" % (host, acct["apps"], acct["sps"])
        assert len(acct["jobs"]) == 1, "%s: %d jobs" % (host, len(acct["jobs"]))
        job = acct["jobs"][0]
        assert job["schedule"]["state"] == "Active", "%s: job schedule %s" % (host, job["schedule"]["state"])
        assert job["status"]["code"] != "Quarantine", "%s: job quarantined" % host
        assert acct["secrets"]["BaseAddress"] == "%s/accounts/%s/scim/v2" % (emulator.cloudflare_api_endpoint, account_id(index))
        assert acct["secrets"]["SecretToken"] == fingerprint(tokens[index]), "%s: saved token is not the expected one" % host
        assert [a["principalDisplayName"] for a in acct["assignments"]] == [GROUP], host


def test_fleet_lifecycle(emulator, fleet, playbook):
    tokens = [token(i) for i in range(ACCOUNTS)]

    first = run(playbook, fleet, emulator, verbosity=3, diff=True)
    assert first.failed == 0 and first.changed > 0
    assert_converged(emulator, tokens)

    emulator.reset_log()
    again = run(playbook, fleet, emulator)
    assert again.failed == 0 and again.changed == 0, again.output[-3000:]
    assert emulator.requests_log()["counts"]["writes"] == 0

    # Drift on five accounts, behind the collection's back.
    accounts = view(emulator)
    emulator.mutate("pause_job", sp_id=accounts["e2e-00"]["sp_id"])
    emulator.mutate("delete_job", sp_id=accounts["e2e-01"]["sp_id"])
    emulator.mutate("set_secret", sp_id=accounts["e2e-02"]["sp_id"], key="BaseAddress",
                    value="https://scim.example.invalid/accounts/%s/scim/v2" % account_id(2))
    group_id = accounts["e2e-03"]["assignments"][0]["principalId"]
    emulator.mutate("remove_assignment", sp_id=accounts["e2e-03"]["sp_id"], principal_id=group_id)
    emulator.mutate("add_cloudflare_token", account_id=account_id(4), token=token(4, 1), scim_permission=True)
    emulator.mutate("revoke_cloudflare_token", account_id=account_id(4), token=token(4))
    emulator.run_cycle(accounts["e2e-04"]["sp_id"])
    assert view(emulator)["e2e-04"]["jobs"][0]["status"]["code"] == "Quarantine"
    tokens[4] = token(4, 1)
    fleet["e2e-04"]["cloudflare_scim_token"] = tokens[4]

    repair = run(playbook, fleet, emulator, diff=True)
    assert repair.failed == 0
    assert sorted(host for host, recap in repair.recap.items() if recap["changed"]) == ["e2e-00", "e2e-01", "e2e-02", "e2e-03", "e2e-04"]
    assert_converged(emulator, tokens)

    refused = run(playbook, fleet, emulator, name="fqcn:deprovision", expect_rc=2)
    assert refused.failed == ACCOUNTS
    assert "cloudflare_scim_confirm_removal=true" in refused.output
    assert_converged(emulator, tokens)

    removed = run(playbook, fleet, emulator, name="fqcn:deprovision", extra_vars={"cloudflare_scim_confirm_removal": True})
    assert removed.failed == 0
    for host, acct in view(emulator).items():
        assert acct["apps"] == 0 and acct["sps"] == 0 and not acct["jobs"], host

# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration tests of cloudflare_scim_check and entra_scim_preflight against the emulator.

The setup uses plain Graph calls (no module of this collection) to build three enterprise apps: one provisioned
into an emulated Cloudflare account (job started, a cycle run), one with every preflight trap, one without
assignments. One playbook run (at -vvv with --diff, scanned for secrets by the harness) then checks them, and the
emulator's state and request log prove that nothing was written and that the users really arrived.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import pytest

from tests.emulator import harness

ACCOUNT = "feedfacefeedfacefeedfacefeed0005"
TOKEN = "cf-verify-scim-token-7Yh3Kp9Qw2Lz"
REVOKED_TOKEN = "cf-verify-revoked-token-4Mx8Rt1Vb6Nc"
NO_PERMISSION_TOKEN = "cf-verify-token-without-scim-2Gd5Hs"
DOMAIN = "contoso.onmicrosoft.com"
VIRTUAL_ENTRA_GROUP = "CF-%s - Administrator" % ACCOUNT
VIRTUAL_CLOUDFLARE_GROUP = "CF-%s - Administrator Read Only" % ACCOUNT
DEFAULT_ACCESS_ROLE_ID = "00000000-0000-0000-0000-000000000000"


def upn(name):
    return "%s@%s" % (name, DOMAIN)


def _user(number, name, mail=True, enabled=True, principal_name=None):
    principal_name = principal_name or upn(name)
    return {"id": "c0ffee00-00%02d-4000-8000-0000000000%02d" % (number, number), "userPrincipalName": principal_name,
            "mail": upn(name) if mail else None, "givenName": name, "surname": "Verify", "accountEnabled": enabled}


SEED = {
    "users": [
        _user(1, "v-ok1"), _user(2, "v-ok2"), _user(3, "v-late"),
        _user(4, "v-case", principal_name=upn("V-Case")),
        _user(5, "v-nomail", mail=False), _user(6, "v-disabled", enabled=False), _user(7, "v-default"),
    ],
    "groups": [
        {"displayName": "Verify Provisioned", "members": [upn("v-ok2")]},
        {"displayName": "Verify Nested", "members": [upn("v-ok1")]},
        {"displayName": "Verify Engineers", "members": [upn("v-nomail"), "Verify Nested"]},
        {"displayName": "CF Verify Team", "members": [upn("v-ok1")]},
        {"displayName": VIRTUAL_ENTRA_GROUP, "members": []},
    ],
    "cloudflare_accounts": [{
        "account_id": ACCOUNT,
        "tokens": [{"value": TOKEN}, {"value": REVOKED_TOKEN}, {"value": NO_PERMISSION_TOKEN, "scim_permission": False}],
        "groups": [{"displayName": VIRTUAL_CLOUDFLARE_GROUP}],
    }],
}
EXPECTED_TRAP_CODES = sorted(["UPN_MAIL_MISMATCH", "USER_DISABLED", "DEFAULT_ACCESS_ROLE", "NESTED_GROUP", "MAIL_MISSING",
                              "GROUP_NAME_RESERVED_CF", "DEPRECATED_VIRTUAL_GROUP"])


class Graph(harness.GraphAdmin):
    """The test setup: apps made, assigned and provisioned as an administrator would."""

    def create_app(self, name):
        created = self.call("POST", "applicationTemplates/%s/instantiate" % harness.NON_GALLERY_TEMPLATE_ID, {"displayName": name})
        return created["servicePrincipal"]["id"]

    def provision(self, sp_id, base_address, token):
        job = self.call("POST", "servicePrincipals/%s/synchronization/jobs" % sp_id, {"templateId": "scim"})
        self.call("PUT", "servicePrincipals/%s/synchronization/secrets" % sp_id, {"value": [
            {"key": "BaseAddress", "value": base_address}, {"key": "SecretToken", "value": token}, {"key": "SyncAll", "value": "false"}]})
        self.call("POST", "servicePrincipals/%s/synchronization/jobs/%s/start" % (sp_id, job["id"]))
        return job["id"]


def cloudflare_account(state):
    return [account for account in state["cloudflare_accounts"] if account["account_id"] == ACCOUNT][0]


@pytest.fixture(scope="module")
def tenant(emulator, secrets):
    secrets.add("verify token", TOKEN)
    secrets.add("verify revoked token", REVOKED_TOKEN)
    secrets.add("verify token without permission", NO_PERMISSION_TOKEN)
    ids = emulator.seed(SEED)
    users, groups = ids["users"], ids["groups"]
    graph = Graph(emulator)

    provisioned = graph.create_app("Verify SCIM - Provisioned")
    graph.assign(provisioned, users[upn("v-ok1")])
    graph.assign(provisioned, groups["Verify Provisioned"])
    graph.provision(provisioned, emulator.cloudflare_base_address(ACCOUNT), TOKEN)
    emulator.run_cycle(provisioned)
    graph.assign(provisioned, users[upn("v-late")])  # arrives with a later cycle: the check waits for it

    traps = graph.create_app("Verify SCIM - Traps")
    graph.assign(traps, users[upn("V-Case")])
    graph.assign(traps, users[upn("v-disabled")])
    graph.assign(traps, users[upn("v-default")], role=DEFAULT_ACCESS_ROLE_ID)
    for name in ("Verify Engineers", "CF Verify Team", VIRTUAL_ENTRA_GROUP):
        graph.assign(traps, groups[name])

    empty = graph.create_app("Verify SCIM - Empty")
    emulator.mutate("revoke_cloudflare_token", account_id=ACCOUNT, token=REVOKED_TOKEN)
    return {"provisioned": provisioned, "traps": traps, "empty": empty}


def entra_view(state):
    """What the read-only modules must never change (Cloudflare users change through provisioning cycles)."""
    return {key: state[key] for key in ("applications", "service_principals", "assignments", "secrets", "users", "groups")}


def test_cycle_provisioned_the_assigned_users(emulator, tenant):
    del tenant
    account = cloudflare_account(emulator.state())
    names = {user["userName"] for user in account["users"]}
    assert {upn("v-ok1"), upn("v-ok2")} <= names
    assert "Verify Provisioned" in {group["displayName"] for group in account["groups"]}
    revoked = [token for token in account["tokens"] if token["revoked"]]
    assert len(revoked) == 1 and TOKEN not in str(account["tokens"])


def test_checks_report_arrivals_traps_and_bad_tokens_without_writing(emulator, tenant, playbook):
    before = entra_view(emulator.state())
    emulator.reset_log()
    extra = {"verify": {
        "account_id": ACCOUNT, "token": TOKEN, "revoked_token": REVOKED_TOKEN, "no_permission_token": NO_PERMISSION_TOKEN,
        "expected_users": [upn("v-ok1"), upn("v-ok2"), upn("v-late")], "expected_groups": ["Verify Provisioned"],
        "cloudflare_virtual_group": VIRTUAL_CLOUDFLARE_GROUP, "provisioned_sp": tenant["provisioned"], "traps_sp": tenant["traps"],
        "empty_sp": tenant["empty"], "expected_trap_codes": EXPECTED_TRAP_CODES,
    }}
    result = playbook("verify_checks.yml", extra_vars=extra, verbosity=3, diff=True)
    assert result.failed == 0 and result.changed == 0
    assert result.recap["localhost"]["ok"] == 18  # every task ran
    # The users really are in Cloudflare (the late one came with a background cycle while the check waited).
    names = {user["userName"] for user in cloudflare_account(emulator.state())["users"]}
    assert upn("v-late") in names
    # Read-only: no write reached Graph or Cloudflare, and the Entra side is unchanged.
    entries = [entry for entry in emulator.requests_log()["entries"] if not entry["operation"].startswith("token")]
    writes = [(e["method"], e["path"]) for e in entries if e["write"] or (e["method"] != "GET" and e["operation"] != "batch")]
    assert writes == []
    operations = {entry["operation"] for entry in entries}
    assert {"cloudflare.users.list", "cloudflare.groups.list", "cloudflare.ServiceProviderConfig"} <= operations
    assert {"servicePrincipals.get", "appRoleAssignedTo.list", "sync.secrets.get", "users.get", "groups.members"} <= operations
    assert all(entry.get("in_batch") for entry in entries if entry["operation"] == "users.get")
    assert entra_view(emulator.state()) == before
    # Cloudflare saw the revoked and the unprivileged token exactly once each, answered 401 and 403.
    statuses = sorted(entry["status"] for entry in entries if entry["operation"].startswith("cloudflare.") and entry["status"] >= 400)
    assert statuses == [401, 403]

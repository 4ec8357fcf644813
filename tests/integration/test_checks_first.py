# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 12 item 6: on a brand-new account, a mistake that can be found without writing leaves nothing behind.

provision.yml runs on fresh accounts (no app yet) with an unknown user, an ambiguous group, a token Cloudflare rejects,
and purge with an empty list; one good account runs in the same play. The emulator's request log must show no write
for the bad accounts (and no app of theirs may exist), while the good account is provisioned."""

from __future__ import absolute_import, division, print_function

import os

from tests.emulator import harness

PLAYBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "playbooks")
GROUP = "Checks First Users"
MEMBER = "checks.first@contoso.com"


def account_id(index):
    return "%032x" % (0xc4ec0000 + index)


def token(index):
    return "checks-first-cf-token-%d-Zq8" % index


def test_nothing_is_written_for_a_fresh_account_whose_inputs_are_wrong(emulator, playbook, secrets):
    emulator.seed({
        "users": [{"userPrincipalName": MEMBER, "mail": MEMBER, "displayName": "Checks First", "accountEnabled": True}],
        "groups": [{"displayName": GROUP, "members": [MEMBER]},
                   {"id": "c4ec0000-0000-4000-8000-000000000001", "displayName": "Checks First Twins", "members": []},
                   {"id": "c4ec0000-0000-4000-8000-000000000002", "displayName": "Checks First Twins", "members": []}],
        "cloudflare_accounts": [{"account_id": account_id(i), "tokens": [{"value": token(i), "scim_permission": True}]}
                                for i in range(5)],
    })
    for i in range(5):
        secrets.add("checks-first token %d" % i, token(i))
    group = [{"type": "group", "display_name": GROUP}]
    hosts = {
        "fresh-good": {"cloudflare_scim_account_id": account_id(0), "cloudflare_scim_token": token(0),
                       "cloudflare_scim_assignments": group},
        "fresh-unknown-user": {"cloudflare_scim_account_id": account_id(1), "cloudflare_scim_token": token(1),
                               "cloudflare_scim_assignments": group + [{"type": "user", "user_principal_name": "nobody.checks@contoso.com"}]},
        "fresh-ambiguous-group": {"cloudflare_scim_account_id": account_id(2), "cloudflare_scim_token": token(2),
                                  "cloudflare_scim_assignments": [{"type": "group", "display_name": "Checks First Twins"}]},
        "fresh-rejected-token": {"cloudflare_scim_account_id": account_id(3), "cloudflare_scim_token": "checks-first-never-issued-Lp4",
                                 "cloudflare_scim_assignments": group},
        "fresh-purge-empty": {"cloudflare_scim_account_id": account_id(4), "cloudflare_scim_token": token(4),
                              "cloudflare_scim_assignments": [], "cloudflare_scim_assignments_purge": True},
    }
    secrets.add("rejected token", "checks-first-never-issued-Lp4")
    extra = harness.role_vars(emulator)
    emulator.reset_log()
    result = playbook(os.path.join(PLAYBOOKS, "provision.yml"), hosts=hosts, extra_vars=extra, expect_rc=None)
    assert result.rc == 2, result.output[-3000:]
    bad = sorted(host for host in hosts if host != "fresh-good")
    assert sorted(host for host, counts in result.recap.items() if counts["failed"]) == bad, result.output[-3000:]

    state = emulator.state()
    names = set(app["displayName"] for app in state["applications"])
    assert "Cloudflare SCIM - fresh-good" in names
    for host in bad:
        assert "Cloudflare SCIM - %s" % host not in names, "%s: an app was created before the check that failed" % host
    entries = emulator.requests_log()["entries"]
    good_sp = next(sp["id"] for sp in state["service_principals"] if sp["displayName"] == "Cloudflare SCIM - fresh-good")
    instantiates = [entry for entry in entries if entry["write"] and entry["operation"] == "instantiate"]
    assert len(instantiates) == 1, "only the good account's app may be created: %s" % instantiates
    stray = [entry for entry in entries if entry["write"] and entry["operation"] != "instantiate" and good_sp not in entry["path"]]
    assert stray == [], "writes for the bad accounts: %s" % stray

    output = result.output
    assert "user 'nobody.checks@contoso.com' matches no user" in output
    assert "group 'Checks First Twins' matches 2 groups" in output
    assert "Try the token against the Cloudflare SCIM endpoint, before anything is written" in output
    assert "the SCIM token was rejected (HTTP 401)" in output
    assert "cloudflare_scim_assignments_purge=true with an empty cloudflare_scim_assignments" in output

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""entra_app and entra_app_assignment against the emulator: create, re-run, check mode, drift, faults, removal.

End states are checked in the emulator's state dump and request log, not only in Ansible's output; the
``playbook`` fixture fails any run whose output contains a secret (one run is at ``-vvv --diff``).
"""

from __future__ import absolute_import, division, print_function

import json
import os

import pytest

from tests.emulator import harness

ADMINS = "b1c2d3e4-0001-4000-8000-000000000001"  # "Cloudflare Admins" in the default seed
ENGINEERS = "b1c2d3e4-0002-4000-8000-000000000002"  # "Cloudflare Engineers"
ALICE = "a1b2c3d4-0001-4000-8000-000000000001"  # alice@contoso.onmicrosoft.com
USER_ROLE = harness.USER_ROLE_ID
CALLBACKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "callback_plugins")
PRINCIPALS = [
    {"type": "group", "display_name": "Cloudflare Admins"},
    {"type": "user", "user_principal_name": "alice@contoso.onmicrosoft.com"},
    {"type": "group", "id": ENGINEERS},
]


def apps_named(state, name):
    return [app for app in state["applications"] if app["displayName"] == name]


def sp_of(state, app):
    sps = [sp for sp in state["service_principals"] if sp["appId"] == app["appId"]]
    assert len(sps) == 1, "application %s should have exactly one service principal" % app["id"]
    return sps[0]


def assigned(state, sp):
    return set((a["principalId"], a["appRoleId"]) for a in state["assignments"].get(sp["id"], []))


def writes(emulator):
    return [(e["method"], e["path"], e["status"]) for e in emulator.requests_log()["entries"] if e["write"]]


def operations(emulator, operation):
    return [e for e in emulator.requests_log()["entries"] if e["operation"] == operation]


def test_lifecycle_create_rerun_drift_duplicate_purge_absent(emulator, playbook):
    prefix = "Cloudflare SCIM lifecycle"
    name = prefix + " localhost"
    extra = {"app_prefix": prefix, "app_principals": PRINCIPALS}

    emulator.reset_log()
    first = playbook("apps_present.yml", extra_vars=extra, diff=True, verbosity=3)
    assert first.changed == 2
    state = emulator.state()
    apps = apps_named(state, name)
    assert len(apps) == 1
    app, sp = apps[0], sp_of(state, apps[0])
    assert app["applicationTemplateId"] == harness.NON_GALLERY_TEMPLATE_ID
    assert assigned(state, sp) == {(ADMINS, USER_ROLE), (ALICE, USER_ROLE), (ENGINEERS, USER_ROLE)}
    assert len(operations(emulator, "instantiate")) == 1
    assert "group Cloudflare Admins (%s) as User" % ADMINS in first.output, "--diff shows the principals after"

    emulator.reset_log()
    second = playbook("apps_present.yml", extra_vars=extra)
    assert second.changed == 0
    assert writes(emulator) == []

    # Drift 1: someone removed an assignment in the portal; the next run puts it back, and only it.
    emulator.mutate("remove_assignment", sp_id=sp["id"], principal_id=ALICE)
    emulator.reset_log()
    third = playbook("apps_present.yml", extra_vars=extra, diff=True)
    assert third.changed == 1
    assert writes(emulator) == [("POST", "/v1.0/servicePrincipals/%s/appRoleAssignedTo" % sp["id"], 201)]
    assert (ALICE, USER_ROLE) in assigned(emulator.state(), sp)
    assert "user Alice Anders (%s) as User" % ALICE in third.output

    # Drift 2: a second app with the same name appeared; the run fails naming both and writes nothing.
    duplicate = emulator.mutate("create_duplicate_app", display_name=name)
    emulator.reset_log()
    fourth = playbook("apps_present.yml", extra_vars=extra, expect_rc=2)
    assert fourth.failed == 1
    assert app["id"] in fourth.output and duplicate["application_id"] in fourth.output
    assert "pin the one to manage with app_id" in fourth.output
    assert writes(emulator) == []
    assert len(apps_named(emulator.state(), name)) == 2

    # Pinning our app works; purge leaves only the listed group.
    pinned = dict(extra, app_pin=app["appId"], app_principals=[PRINCIPALS[0]], app_purge=True)
    fifth = playbook("apps_present.yml", extra_vars=pinned)
    assert fifth.changed == 1
    assert assigned(emulator.state(), sp) == {(ADMINS, USER_ROLE)}

    sixth = playbook("apps_present.yml", extra_vars=dict(pinned, app_assignment_state="absent", app_purge=False))
    assert sixth.changed == 1
    assert assigned(emulator.state(), sp) == set()

    # Removal of both apps by app_id: the duplicate made outside the collection carries no marker and is left alone
    # until delete_unmarked says so. Then removal again is a no-op.
    emulator.reset_log()
    seventh = playbook("apps_absent.yml", extra_vars={"app_prefix": prefix, "app_pins": [app["appId"], duplicate["app_id"]]})
    assert seventh.changed == 1, "one looped task (the marked app's item changed)"
    assert len(operations(emulator, "applications.delete")) == 1
    assert "has no entrascim.cloudflare marker" in seventh.output
    assert [a["id"] for a in apps_named(emulator.state(), name)] == [duplicate["application_id"]]
    seventh = playbook("apps_absent.yml", extra_vars={"app_prefix": prefix, "app_pins": [duplicate["app_id"]],
                                                      "app_delete_unmarked": True})
    assert seventh.changed == 1
    assert len(operations(emulator, "applications.delete")) == 2
    state = emulator.state()
    assert apps_named(state, name) == []
    assert not [s for s in state["service_principals"] if s["id"] in (sp["id"], duplicate["sp_id"])]
    emulator.reset_log()
    eighth = playbook("apps_absent.yml", extra_vars={"app_prefix": prefix})
    assert eighth.changed == 0
    assert writes(emulator) == []


def test_check_mode_on_a_fresh_name_writes_nothing(emulator, playbook):
    prefix = "Cloudflare SCIM check mode"
    emulator.reset_log()
    result = playbook("apps_present.yml", extra_vars={"app_prefix": prefix, "app_principals": PRINCIPALS}, check=True, diff=True)
    assert result.changed == 1, "the app would be created; assignments wait for a real service principal"
    assert writes(emulator) == []
    assert operations(emulator, "applications.list"), "check mode still looks the app up"
    assert apps_named(emulator.state(), prefix + " localhost") == []


def test_realistic_faults_converge_without_duplicates(emulator, playbook):
    prefix = "Cloudflare SCIM faults"
    hosts = ("account-a", "account-b", "account-c")
    extra = {"app_prefix": prefix, "app_principals": PRINCIPALS}
    # The realistic profile (429, 503, latency, replication lag), with every instantiate answering 404 although it
    # created the app, so that the recovery path is exercised on every host, not by chance.
    emulator.set_faults({"profile": "realistic", "instantiate_404_rate": 1.0})
    emulator.reset_log()
    try:
        first = playbook("apps_present.yml", hosts=hosts, extra_vars=extra)
        assert first.failed == 0
        assert first.changed == 2 * len(hosts)
        instantiations = operations(emulator, "instantiate")
        assert len(instantiations) == len(hosts), "one instantiate per host, never a second one"
        assert all(entry["status"] == 404 for entry in instantiations)
        state = emulator.state()
        for host in hosts:
            apps = apps_named(state, "%s %s" % (prefix, host))
            assert len(apps) == 1, "exactly one app for %s" % host
            assert assigned(state, sp_of(state, apps[0])) == {(ADMINS, USER_ROLE), (ALICE, USER_ROLE), (ENGINEERS, USER_ROLE)}
        second = playbook("apps_present.yml", hosts=hosts, extra_vars=extra)
        assert second.changed == 0 and second.failed == 0
        assert len(operations(emulator, "instantiate")) == len(hosts)
    finally:
        emulator.set_faults("none")
        playbook("apps_absent.yml", hosts=hosts, extra_vars={"app_prefix": prefix}, expect_rc=None)
    state = emulator.state()
    assert not [app for app in state["applications"] if app["displayName"].startswith(prefix)]


def _describe(apps, returned):
    """The apps, oldest first as settle_race orders them, with their creation time and which one entra_app returned."""
    ordered = sorted(apps, key=lambda app: (app["createdDateTime"], app["id"]))
    return "; ".join("%s (created %s%s)" % (app["id"], app["createdDateTime"], ", returned by entra_app" if app["id"] == returned else "")
                     for app in ordered)


@pytest.mark.parametrize("retry_after", [1, None], ids=["retry-after", "no-retry-after"])
@pytest.mark.parametrize("wait", [True, False], ids=["wait", "no-wait"])
def test_instantiate_that_acts_then_answers_503_is_settled_in_the_same_run(emulator, playbook, secrets, tmp_path, wait, retry_after):
    """The first instantiate creates the app and then answers 503; the transport retries the POST, which creates a
    second app. By the end of that same run exactly one app of the name is left, it is the one entra_app returned
    (and the assignments went to), and a second run changes nothing.

    settle_race keeps the oldest app by createdDateTime, then id. The emulator writes createdDateTime in whole seconds:
    with Retry-After (1 s) the retry's app is always a second younger; without it the transport backs off 0.5-1 s, so
    both apps can share a second and then the ids decide which one is "oldest"."""
    prefix = "Cloudflare SCIM 503 %s %s" % ("wait" if wait else "no-wait", "retry-after" if retry_after else "no-retry-after")
    name = prefix + " localhost"
    extra = {"app_prefix": prefix, "app_principals": PRINCIPALS, "app_wait": wait}
    dump = tmp_path / "results.jsonl"
    env = {"ANSIBLE_CALLBACK_PLUGINS": CALLBACKS, "ANSIBLE_CALLBACKS_ENABLED": "result_dump", "RESULT_DUMP_FILE": str(dump)}
    emulator.set_faults({"instantiate_503_after_create": 1, "instantiate_503_retry_after": retry_after})
    emulator.reset_log()
    try:
        first = playbook("apps_present.yml", extra_vars=extra, env=env)
        assert first.changed == 2
        statuses = [entry["status"] for entry in operations(emulator, "instantiate")]
        assert statuses == [503, 201], "the first instantiate acted and answered 503, the transport's retry created again"
        text = dump.read_text()
        secrets.assert_clean(text, "the task results of apps_present.yml")
        records = [json.loads(line) for line in text.splitlines()]
        results = [r["result"] for r in records if r["task"] == "Ensure the enterprise app exists" and r["outcome"] == "ok"]
        assert len(results) == 1
        returned = results[0]
        state = emulator.state()
        apps = apps_named(state, name)
        assert len(apps) == 1, "%d applications named '%s' at the end of the run that created them: %s" % (
            len(apps), name, _describe(apps, returned["application"]["id"]))
        survivor = apps[0]
        assert returned["application"]["id"] == survivor["id"], "entra_app returned the app that is left"
        sp = sp_of(state, survivor)
        assert returned["service_principal"]["id"] == sp["id"]
        assert assigned(state, sp) == {(ADMINS, USER_ROLE), (ALICE, USER_ROLE), (ENGINEERS, USER_ROLE)}

        emulator.reset_log()
        second = playbook("apps_present.yml", extra_vars=extra, expect_rc=None)
        assert second.rc == 0 and second.changed == 0, "second run: rc %d, changed %d\n%s" % (
            second.rc, second.changed, second.output[-3000:])
        assert writes(emulator) == []
    finally:
        emulator.set_faults("none")
        if apps_named(emulator.state(), name):
            emulator.mutate("delete_app", display_name=name)

# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The EXAMPLES of every module, run unchanged against the emulator.

The EXAMPLES string of each module in plugins/modules is read with ``ast`` (no import) and cut into its tasks; the
text of each task goes, unchanged, into generated playbooks (tests/integration/examples/play.yml around them:
``module_defaults`` for the Graph and Cloudflare connection, play ``vars`` for every variable the examples use).
The emulator starts with only the tenant and its clients, and tests/integration/examples/seed.json adds exactly the
users, groups and Cloudflare account the examples name.

The tasks run in the order a user runs them, in four stages (one ``ansible-playbook`` run each), with what a user
or the world does in between done through the emulator:

1. provision: the app, its job, the SCIM URL and token, the assignments, the preflight, turning provisioning on,
   the first cycle, the Cloudflare-side checks.
2. adopt: someone created a second app with the same name in the portal; the example pins the first one.
3. day 2: the Cloudflare token was revoked and the job went to quarantine; the job is read, the quarantine
   reported, a new token stored, provisioning resumed, paused and restarted.
4. remove: the destructive examples (unassign, purge, delete the job, delete another account's app).

Later stages begin with the (idempotent) app and job examples again, as a user's playbook does, because the other
examples use what they register. After each stage the emulator's state shows what the examples did.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import ast
import json
import os
import re
import textwrap
import urllib.parse

import pytest
import yaml

from tests.emulator import harness
from tests.emulator.state import fingerprint

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES_DIR = os.path.join(harness.COLLECTION_ROOT, "plugins", "modules")
PLAY_TEMPLATE = os.path.join(HERE, "examples", "play.yml")
SEED_PATH = os.path.join(HERE, "examples", "seed.json")

# Background cycles every 2 s: the first cycle runs while the start example waits for the job to read back as
# running, and a quarantined job is retried only every 8 s (4 cycle intervals).
CYCLE_INTERVAL = 2
ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
PRODUCTION = "Cloudflare SCIM - Production"
STAGING = "Cloudflare SCIM - Staging"
ENGINEERS_ID = "5f1c2a43-8d0e-4b1e-9c55-1d2f3a4b5c6d"
NOTIFICATION_EMAIL = "provisioning-alerts@example.com"

ENSURE_APP = ("entra_app", "Ensure the enterprise app of a Cloudflare account exists")
ENSURE_JOB = ("entra_sync_job", "Ensure the provisioning job exists (created disabled)")
STORE_SECRETS = ("entra_sync_secrets", "Test and store the Cloudflare SCIM URL and token")

PROVISION = [
    ENSURE_APP,
    ("entra_app", "Show the service principal ID used by the provisioning tasks"),
    ENSURE_JOB,
    STORE_SECRETS,
    ("entra_sync_secrets", "Show which keys were written (names only)"),
    ("entra_sync_secrets", "Store a token only if none is saved yet (tokens are rotated elsewhere)"),
    ("entra_app_assignment", "Assign two groups and a user to the Cloudflare app"),
    ("entra_scim_preflight", "Check the provisioning scope before turning provisioning on"),
    ("entra_scim_preflight", "Report every finding without failing"),
    ("entra_scim_preflight", "Show what to fix"),
    ("entra_sync_job", "Turn provisioning on and wait until the job reads back as running"),
    ("entra_sync_job_info", "Wait until the first provisioning cycle has finished (one line per try)"),
    ("cloudflare_scim_check", "Check that the SCIM token of the account works"),
    ("cloudflare_scim_check", "Wait until the first users and groups arrived in Cloudflare"),
    ("cloudflare_scim_check", "Only report (an audit that must not stop on a broken account)"),
    ("cloudflare_scim_check", "Show what needs attention"),
]
ADOPT = [
    ("entra_app", "Adopt one of two apps that have the same name"),
]
DAY2 = [
    ENSURE_APP,
    ENSURE_JOB,
    ("entra_sync_job_info", "Read the provisioning job of an app and its 10 most recent failures"),
    ("entra_sync_job_info", "Report a quarantine"),
    STORE_SECRETS,
    ("entra_sync_job", "Start provisioning, lifting a quarantine once a working token was saved"),
    ("entra_sync_job", "Turn provisioning off"),
    ("entra_sync_job", "Re-evaluate every user and group and wait for the cycle to finish"),
]
REMOVE = [
    ENSURE_APP,
    ("entra_app_assignment", "Unassign a user"),
    ("entra_app_assignment", "Make the listed groups the only assignments (remove everything else)"),
    ("entra_sync_job", "Delete the provisioning job"),
    ("entra_app", "Delete the enterprise app (with its provisioning job and assignments)"),
]
STAGES = [("provision", PROVISION), ("adopt", ADOPT), ("day2", DAY2), ("remove", REMOVE)]

TASK_START = re.compile(r"(?m)^(?=- )")


# ---------------------------------------------------------------------------------------------- the EXAMPLES
def module_examples(path):
    """The EXAMPLES string of a module file, read with ast (the module is not imported)."""
    with open(path, "r", encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(target, ast.Name) and target.id == "EXAMPLES" for target in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("%s has no EXAMPLES" % path)


def example_tasks(text, where):
    """``[(task name, task text)]``: the EXAMPLES cut at each top-level ``- `` line, every piece one whole task."""
    head, *pieces = TASK_START.split(text)
    assert yaml.safe_load(head) is None, "%s: text before the first task" % where
    tasks = []
    for piece in pieces:
        loaded = yaml.safe_load(piece)
        assert isinstance(loaded, list) and len(loaded) == 1 and isinstance(loaded[0], dict), "%s: cannot cut %r" % (where, piece[:60])
        tasks.append((loaded[0], piece))
    assert [task for task, _text in tasks] == yaml.safe_load(text), "%s: the pieces are not the EXAMPLES" % where
    return [(task["name"], piece) for task, piece in tasks]


def all_examples():
    """``{(module, task name): task text}`` of every module in plugins/modules."""
    examples = {}
    for filename in sorted(os.listdir(MODULES_DIR)):
        if not filename.endswith(".py") or filename.startswith("_"):
            continue
        module = filename[:-3]
        for name, text in example_tasks(module_examples(os.path.join(MODULES_DIR, filename)), module):
            assert (module, name) not in examples, "two EXAMPLES tasks of %s are named %r" % (module, name)
            examples[(module, name)] = text
    return examples


def write_playbook(directory, stage, steps, examples):
    """A playbook of play.yml's play with the EXAMPLES tasks of ``steps`` (their text unchanged) as its tasks."""
    with open(PLAY_TEMPLATE, "r", encoding="utf-8") as handle:
        play = yaml.safe_load(handle)[0]
    play.pop("tasks")
    play["name"] = "%s (stage %s)" % (play["name"], stage)
    text = "---\n" + yaml.safe_dump([play], sort_keys=False, default_flow_style=False, width=1000) + "  tasks:\n"
    for step in steps:
        text += textwrap.indent(examples[step].rstrip("\n") + "\n\n", "    ")
    path = os.path.join(directory, "examples_%s.yml" % stage)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


# ---------------------------------------------------------------------------------------------- emulator helpers
@pytest.fixture(scope="module")
def emulator(tmp_path_factory, secrets):
    """The emulator with only the tenant and its clients: seed.json adds exactly what the examples name."""
    base = dict((key, harness.DEFAULT_SEED[key]) for key in ("tenant_id", "tenant_domains", "clients"))
    emu = harness.Emulator(str(tmp_path_factory.mktemp("emulator")), seed=base, faults="none", cycle_interval=CYCLE_INTERVAL)
    with emu:
        secrets.add("client secret", harness.DEFAULT_CLIENT["client_secret"])
        yield emu


class View(object):
    """What one app looks like in a state dump of the emulator."""

    def __init__(self, state, display_name):
        self.state = state
        self.apps = [app for app in state["applications"] if app["displayName"] == display_name]
        app_ids = set(app["appId"] for app in self.apps)
        self.sps = [sp for sp in state["service_principals"] if sp["appId"] in app_ids]

    @property
    def sp_id(self):
        assert len(self.sps) == 1, "expected one service principal, found %d" % len(self.sps)
        return self.sps[0]["id"]

    def jobs(self, sp_id=None):
        return [job for job in self.state["jobs"] if job["servicePrincipalId"] == (sp_id or self.sp_id)]

    def job(self):
        jobs = self.jobs()
        assert len(jobs) == 1, "expected one synchronization job, found %d" % len(jobs)
        return jobs[0]

    def secrets(self):
        return dict((item["key"], item["value"]) for item in self.state["secrets"].get(self.sp_id, []))

    def assigned(self, sp_id=None):
        return sorted(item["principalId"] for item in self.state["assignments"].get(sp_id or self.sp_id, []))

    def cloudflare(self):
        account = [item for item in self.state["cloudflare_accounts"] if item["account_id"] == ACCOUNT][0]
        return (sorted(user["userName"] for user in account["users"]), sorted(group["displayName"] for group in account["groups"]))


def writes(emulator):
    """The operations of the state-changing requests since the last log reset, in order."""
    return [entry["operation"] for entry in emulator.requests_log()["entries"] if entry["write"]]


DEBUG_RESULT = re.compile(r"^ok: \[localhost\] => (\{\n.*?\n\})$", re.MULTILINE | re.DOTALL)


def debug_messages(output):
    """The messages the debug tasks printed (the default callback prints each result as JSON)."""
    return [json.loads(block).get("msg") for block in DEBUG_RESULT.findall(output)]


# ---------------------------------------------------------------------------------------------- tests
def test_every_example_task_is_in_a_stage():
    examples = all_examples()
    planned = [step for _stage, steps in STAGES for step in steps]
    assert set(planned) == set(examples), "EXAMPLES tasks not run: %s; planned tasks that are no EXAMPLES: %s" % (
        sorted(set(examples) - set(planned)), sorted(set(planned) - set(examples)))
    modules = set(module for module, _name in examples)
    assert modules == set(name[:-3] for name in os.listdir(MODULES_DIR) if name.endswith(".py") and not name.startswith("_"))


def test_examples_run_unchanged_against_the_emulator(emulator, playbook, secrets, tmp_path):  # pylint: disable=too-many-locals,too-many-statements
    examples = all_examples()
    with open(SEED_PATH, "r", encoding="utf-8") as handle:
        seed = json.load(handle)
    token, rotated_token = [item["value"] for item in seed["cloudflare_accounts"][0]["tokens"]]
    secrets.add("examples SCIM token", token)
    secrets.add("examples rotated SCIM token", rotated_token)
    ids = emulator.seed(seed)
    users, groups = ids["users"], ids["groups"]
    assert groups["Cloudflare Engineers"] == ENGINEERS_ID
    graph = harness.GraphAdmin(emulator)  # what happens outside the examples (the portal, an administrator)

    def run(stage, steps, **example_env):
        emulator.reset_log()
        result = playbook(write_playbook(str(tmp_path), stage, steps, examples), extra_vars={"example_env": example_env})
        assert result.failed == 0 and result.recap["localhost"]["ok"] >= 1, "stage %s:\n%s" % (stage, result.output[-6000:])
        return result

    # Made before by the collection (it carries the marker tag): the app of a staging account, with a provisioning job and
    # an assignment (the delete example's app).
    staging = emulator.mutate("create_duplicate_app", display_name=STAGING)
    tags = graph.call("GET", "servicePrincipals/%s?$select=tags" % staging["sp_id"]).get("tags") or []
    graph.call("PATCH", "servicePrincipals/%s" % staging["sp_id"], {"tags": tags + ["entrascim.cloudflare"]})
    graph.call("POST", "servicePrincipals/%s/synchronization/jobs" % staging["sp_id"], {"templateId": "scim"})
    graph.assign(staging["sp_id"], groups["Cloudflare Admins"])

    # 1. Provision: everything is created, provisioning runs and the users and groups arrive in Cloudflare.
    result = run("provision", PROVISION, cloudflare_scim_token=token)
    assert result.changed == 5  # app, job, secrets, assignments, start; the rest reads or reports
    assert result.total("skipped") == 1  # "Show what to fix": the preflight found nothing to fix in this tenant
    production = View(emulator.state(), PRODUCTION)
    assert len(production.apps) == 1
    sp_id = production.sp_id
    messages = debug_messages(result.output)
    assert sp_id in messages
    job = production.job()
    assert job["templateId"] == "scim" and job["schedule"]["state"] == "Active" and job["status"]["code"] == "Active"
    assert job["status"]["lastExecution"]["state"] == "Succeeded" and job["_starts_while_active"] == 0
    saved = production.secrets()
    assert saved["BaseAddress"] == emulator.cloudflare_base_address(ACCOUNT)
    assert saved["SecretToken"] == fingerprint(token) and saved["SyncAll"] == "false"
    assert NOTIFICATION_EMAIL in saved["SyncNotificationSettings"]
    assert sorted(saved) in [sorted(message) for message in messages if isinstance(message, list)]  # the changed keys
    assert production.assigned() == sorted([groups["Cloudflare Admins"], ENGINEERS_ID, users["ann@example.com"]])
    assert production.cloudflare() == (["alice@example.com", "ann@example.com", "bob@example.com"],
                                       ["Cloudflare Admins", "Cloudflare Engineers"])
    assert "token valid: True, users: 3, missing groups: [], deprecated groups: []" in messages

    # 2. Adopt: a second app with the same name was created in the portal; the example pins the first one.
    original = production.apps[0]
    duplicate = emulator.mutate("create_duplicate_app", display_name=PRODUCTION)
    result = run("adopt", ADOPT, production_app_id=original["appId"])
    assert result.changed == 0
    assert sorted(app["id"] for app in View(emulator.state(), PRODUCTION).apps) == sorted([original["id"], duplicate["application_id"]])
    queries = [urllib.parse.unquote(entry["query"] or "") for entry in emulator.requests_log()["entries"]]
    assert any(original["appId"] in query for query in queries)
    graph.call("DELETE", "applications/%s" % duplicate["application_id"])  # the extra app is removed by hand

    # 3. Day 2: the token was revoked in Cloudflare, so the next cycle quarantined the job.
    emulator.mutate("revoke_cloudflare_token", account_id=ACCOUNT, token=token)
    emulator.run_cycle(sp_id)
    job = View(emulator.state(), PRODUCTION).job()
    assert job["status"]["code"] == "Quarantine"
    reason = job["status"]["quarantine"]["reason"]
    result = run("day2", DAY2, cloudflare_scim_token=rotated_token)
    assert debug_messages(result.output) == ["Quarantined: %s" % reason] and result.total("skipped") == 0
    done = [op for op in writes(emulator) if op.startswith("sync.")]
    # The start example with recover_quarantine restarts the quarantined job, unless the emulator's own retry (every
    # 8 s) already ran a cycle with the new token and lifted the quarantine: then it leaves the running job alone.
    recovered = done[:2] == ["sync.secrets.put", "sync.jobs.restart"]
    assert done == ["sync.secrets.put"] + (["sync.jobs.restart"] if recovered else []) + ["sync.jobs.pause", "sync.jobs.restart"]
    assert result.changed == (4 if recovered else 3)  # new token, [quarantine lifted], paused, restarted
    day2 = View(emulator.state(), PRODUCTION)
    job = day2.job()
    assert job["schedule"]["state"] == "Active" and job["status"]["code"] == "Active" and job["status"]["quarantine"] is None
    assert job["_starts_while_active"] == 0 and "Watermark" in job["_last_reset_scope"]
    assert job["status"]["lastExecution"]["state"] == "Succeeded"
    assert day2.secrets()["SecretToken"] == fingerprint(rotated_token)

    # 4. Remove: an administrator had assigned bob directly; the destructive examples run last.
    graph.assign(sp_id, users["bob@example.com"])
    result = run("remove", REMOVE, cloudflare_scim_token=rotated_token)
    assert result.changed == 4  # bob unassigned, the rest purged, the job deleted, the staging app deleted
    after = View(emulator.state(), PRODUCTION)
    assert after.sp_id == sp_id and after.assigned() == [groups["Cloudflare Admins"]] and after.jobs() == []
    gone = View(after.state, STAGING)
    assert gone.apps == [] and gone.sps == [] and after.jobs(staging["sp_id"]) == [] and after.assigned(staging["sp_id"]) == []

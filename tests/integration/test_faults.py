# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fault suite: the collection's own playbooks against a hostile emulator (docs/resilience.md).

* provision under the ``harsh`` fault profile: no failed host, no duplicate app, no job without an app;
* ``ansible-playbook`` killed (the whole process group, SIGKILL) at seeded random points of fresh runs, then run again;
* a table of bad inputs, one inventory host per case in as few runs as possible: each fails naming the cause and
  what to do, writes nothing it should not, and the token saved before stays saved;
* two runs at the same time over the same accounts.

Every verdict comes from the emulator's state and request log, not from Ansible's output. ``SOAK=1`` (``make soak``)
selects the big variant: more accounts, more kill points, more concurrent runs.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import FakeGraph
from tests.emulator import harness

PLAYBOOKS = os.path.join(harness.COLLECTION_ROOT, "playbooks")
SOAK = os.environ.get("SOAK", "") not in ("", "0")
RNG_SEED = int(os.environ.get("FAULTS_SEED", "20241107"))
MAX_FORKS = 25

GROUP = "Faults Cloudflare Users"
MEMBERS = ["faults.ann@contoso.com", "faults.ben@contoso.com"]

# Sizes of the default suite and of the soak (make soak).
HARSH_ACCOUNTS = 40 if SOAK else 0  # at least one per bad-input case and control
KILL_POINTS = 12 if SOAK else 5
KILL_ACCOUNTS = 3 if SOAK else 1
RACE_ACCOUNTS = 20 if SOAK else 10
RACE_RUNS = 3 if SOAK else 2
# Accounts a race may leave with two apps (docs/resilience.md, "When a duplicate can stay": 1 to 4 of 10 in our runs,
# 6 of 20 in the soak); the runs themselves must settle at least the other half.
RACE_MAX_DUPLICATED = RACE_ACCOUNTS // 2

RECAP_PREFIX = "PLAY RECAP"


# ---------------------------------------------------------------------------------------------- fleet
def account_id(series, index):
    """A Cloudflare account id (32 hex digits) unique to a part of the suite (``series``) and an index."""
    return "fa17%04x%024x" % (series, index)


def token(account, generation=0):
    return "faults-cf-token-%s-g%d-Vk8Rw" % (account, generation)


def fingerprint(value):
    """How the emulator's state dump shows a saved SecretToken."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


def app_name(host):
    return "Cloudflare SCIM - %s" % host


class PlaybookRun(object):
    """One ``ansible-playbook`` process, started in its own session so that a kill takes every child with it."""

    def __init__(self, runner, name, cmd, env, output_path):
        self.runner = runner
        self.name = name
        self.output_path = output_path
        self._output = open(output_path, "w", encoding="utf-8")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(cmd, stdout=self._output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                                     env=env, start_new_session=True, universal_newlines=True)
        self.killed = False
        self.started = time.monotonic()

    def kill(self):
        """SIGKILL the whole process group (ansible-playbook, its forks and the modules they run)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.killed = True
        return self.wait(timeout=60)

    def poll(self):
        return self.proc.poll()

    def wait(self, timeout=600):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)
            pytest.fail("ansible-playbook %s did not finish within %d s" % (self.name, timeout))
        self._output.close()
        with open(self.output_path, "r", encoding="utf-8", errors="replace") as handle:
            output = handle.read()
        self.runner.secrets.assert_clean(output, "the output of %s" % self.name)
        result = Result(self.proc.returncode, output)
        result.elapsed = time.monotonic() - self.started
        print("%s: rc=%s in %.1f s%s" % (self.name, result.rc, result.elapsed, " (killed)" if self.killed else ""))
        return result


class Result(object):
    """Exit code, output and the PLAY RECAP of one run."""

    def __init__(self, rc, output):
        self.rc = rc
        self.output = output
        self.elapsed = None
        self.recap = {}
        in_recap = False
        for line in output.splitlines():
            if line.startswith(RECAP_PREFIX):
                in_recap = True
                continue
            if in_recap and " : ok=" in line:
                host, counters = line.split(" : ", 1)
                self.recap[host.strip()] = dict((key, int(value)) for key, value in
                                                (item.split("=", 1) for item in counters.split()))

    def failed_hosts(self):
        return sorted(host for host, counts in self.recap.items() if counts["failed"] or counts["unreachable"])

    def host_output(self, host):
        """The lines of the output about ``host`` (task results and the summary line), not those of a longer host name."""
        pattern = re.compile(r"(?<![\w-])%s(?![\w-])" % re.escape(host))
        return "\n".join(line for line in self.output.splitlines() if pattern.search(line))

    def tail(self, chars=6000):
        return self.output[-chars:]


class Runner(object):
    """Writes the inventory (one host per account, everything as host variables) and starts the playbooks."""

    def __init__(self, emulator, secrets, workdir):
        self.emulator = emulator
        self.secrets = secrets
        self.workdir = str(workdir)
        self.cache_dir = os.path.join(self.workdir, "token-cache")
        self.count = 0
        self.started = []

    def graph(self, **overrides):
        """The ``cloudflare_scim_graph`` dict (module_defaults of the Entra modules) for the default client."""
        graph = {
            "tenant_id": harness.DEFAULT_CLIENT["tenant_id"], "client_id": harness.DEFAULT_CLIENT["client_id"],
            "client_secret": harness.DEFAULT_CLIENT["client_secret"], "graph_endpoint": self.emulator.graph_endpoint,
            "authority_host": self.emulator.authority_host, "ca_path": self.emulator.ca_path, "token_cache_path": self.cache_dir,
        }
        graph.update(overrides)
        return dict((key, value) for key, value in graph.items() if value is not None)

    def host(self, account, account_token, **overrides):
        """Host variables of one account: its id, token, the assigned group, the emulator's endpoints."""
        variables = {
            "cloudflare_scim_account_id": account,
            "cloudflare_scim_token": account_token,
            "cloudflare_scim_assignments": [{"type": "group", "display_name": GROUP}],
            "cloudflare_scim_api_endpoint": self.emulator.cloudflare_api_endpoint,
            "cloudflare_scim_ca_path": self.emulator.ca_path,
            "cloudflare_scim_graph": self.graph(),
        }
        variables.update(overrides)
        return dict((key, value) for key, value in variables.items() if value is not None)

    def start(self, playbook, hosts, extra_vars=None):
        self.count += 1
        name = "%s-%02d" % (playbook, self.count)
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        inventory = os.path.join(self.workdir, "%s.inventory.json" % name)
        with open(inventory, "w", encoding="utf-8") as handle:
            json.dump({"cloudflare_accounts": {"hosts": dict((host, dict(local, **values)) for host, values in hosts.items())}}, handle)
        os.chmod(inventory, 0o600)
        cmd = ["ansible-playbook", "-i", inventory, os.path.join(PLAYBOOKS, playbook + ".yml")]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
                   ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_FORKS=str(min(MAX_FORKS, max(5, len(hosts)))))
        run = PlaybookRun(self, name, cmd, env, os.path.join(self.workdir, "%s.out" % name))
        self.started.append(run)
        return run

    def kill_leftovers(self):
        """Kill the process group of any run a failed test left behind."""
        for run in self.started:
            if run.poll() is None:
                run.kill()

    def run(self, playbook, hosts, extra_vars=None, timeout=600):
        return self.start(playbook, hosts, extra_vars).wait(timeout)


# ---------------------------------------------------------------------------------------------- the emulator's view
def view(state, hosts):
    """Per host: its apps, service principals, jobs, saved secrets and assignments, from the emulator's state."""
    result = {}
    for host in hosts:
        apps = [app for app in state["applications"] if app["displayName"].lower() == app_name(host).lower()]
        sps = [sp for sp in state["service_principals"] if sp["displayName"].lower() == app_name(host).lower()]
        sp_ids = [sp["id"] for sp in sps]
        jobs = [job for job in state["jobs"] if job.get("servicePrincipalId") in sp_ids]
        sp_id = sp_ids[0] if len(sp_ids) == 1 else None
        saved = dict((item["key"], item["value"]) for item in state["secrets"].get(sp_id, [])) if sp_id else {}
        result[host] = {"apps": apps, "sps": sps, "jobs": jobs, "secrets": saved, "sp_id": sp_id,
                        "assignments": sorted(a["principalDisplayName"] for a in state["assignments"].get(sp_id, [])) if sp_id else []}
    return result


def orphan_jobs(state):
    """Jobs whose service principal no longer exists."""
    sp_ids = set(sp["id"] for sp in state["service_principals"])
    return [job["id"] for job in state["jobs"] if job.get("servicePrincipalId") not in sp_ids]


def problems(emulator, hosts):
    """Everything that is not exactly one app, one SP, one started healthy job, the right secrets and the group."""
    state = emulator.state()
    found = []
    for host, acct in sorted(view(state, hosts).items()):
        account = hosts[host]["cloudflare_scim_account_id"]
        expected_token = hosts[host]["cloudflare_scim_token"]
        if len(acct["apps"]) != 1 or len(acct["sps"]) != 1:
            found.append("%s: %d apps, %d service principals" % (host, len(acct["apps"]), len(acct["sps"])))
            continue
        if len(acct["jobs"]) != 1:
            found.append("%s: %d jobs" % (host, len(acct["jobs"])))
            continue
        job = acct["jobs"][0]
        if job["schedule"]["state"] != "Active" or job["status"]["code"] == "Quarantine":
            found.append("%s: job schedule %s, status %s" % (host, job["schedule"]["state"], job["status"]["code"]))
        if acct["secrets"].get("BaseAddress") != emulator.cloudflare_base_address(account):
            found.append("%s: BaseAddress %s" % (host, acct["secrets"].get("BaseAddress")))
        if acct["secrets"].get("SecretToken") != fingerprint(expected_token):
            found.append("%s: the saved token is not the expected one" % host)
        if acct["assignments"] != [GROUP]:
            found.append("%s: assignments %s" % (host, acct["assignments"]))
    orphans = orphan_jobs(state)
    if orphans:
        found.append("jobs without an app: %s" % ", ".join(orphans))
    return found


def writes(emulator):
    """The write requests of the request log since the last reset: [(operation, path)]."""
    return [(entry["operation"], entry["path"]) for entry in emulator.requests_log()["entries"] if entry.get("write")]


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def runner(emulator, secrets, tmp_path_factory):
    users = [{"userPrincipalName": upn, "mail": upn, "displayName": upn.partition("@")[0], "givenName": "Faults",
              "surname": upn.partition("@")[0], "accountEnabled": True} for upn in MEMBERS]
    emulator.seed({"users": users, "groups": [{"displayName": GROUP, "members": MEMBERS}]})
    fault_runner = Runner(emulator, secrets, tmp_path_factory.mktemp("faults"))
    yield fault_runner
    fault_runner.kill_leftovers()


def fleet(runner, series, count, prefix, names=None):
    """``count`` new Cloudflare accounts seeded in the emulator, as inventory hosts ``<prefix>-NN`` (or ``<prefix>-<name>``)."""
    hosts = {}
    accounts = []
    for index in range(count):
        account = account_id(series, index)
        runner.secrets.add("faults token %s" % account, token(account))
        accounts.append({"account_id": account, "tokens": [{"value": token(account), "scim_permission": True}]})
        hosts["%s-%s" % (prefix, names[index] if names else "%02d" % index)] = runner.host(account, token(account))
    runner.emulator.seed({"cloudflare_accounts": accounts})
    return hosts


def fingerprint_state(emulator, hosts):
    """What must not change on a failed run: per host its app and SP ids, job ids and schedules, saved secrets and assignments."""
    result = {}
    for host, acct in view(emulator.state(), hosts).items():
        result[host] = {"apps": sorted(app["id"] for app in acct["apps"]), "sps": sorted(sp["id"] for sp in acct["sps"]),
                        "jobs": sorted((job["id"], job["schedule"]["state"]) for job in acct["jobs"]),
                        "secrets": acct["secrets"], "assignments": acct["assignments"]}
    return result


# ---------------------------------------------------------------------------------------------- bad inputs
# Each case is one inventory host whose account was provisioned under the harsh profile first; its variables are then
# changed as the case says and the run must fail it with a message naming the cause and what to do (every fragment
# must appear in the host's output), write nothing, and leave its app, job, saved token and assignments as they were.
BAD_CASES = [
    ("account-id", "malformed account id",
     {"cloudflare_scim_account_id": "acme-prod-account"},
     ["acme-prod-account' is not a Cloudflare account id", "32 hexadecimal", "Manage Account > Configurations"]),
    ("http-url", "http BaseAddress",
     {"cloudflare_scim_api_endpoint": "http://127.0.0.1:9/client/v4"},
     ["cloudflare_scim_api_endpoint 'http://127.0.0.1:9/client/v4' is not an https URL", "set an https:// URL"]),
    ("bad-token", "token Cloudflare rejects",
     {"cloudflare_scim_token": "faults-cf-token-never-issued-Hs3Lq"},
     ["Try the token against the Cloudflare SCIM endpoint, before anything is written", "HTTP 401",
      "SCIM Provisioning > Edit"]),
    ("no-scim", "token without SCIM permission",
     {"cloudflare_scim_token": "@no-scim"},
     ["Try the token against the Cloudflare SCIM endpoint, before anything is written", "HTTP 403",
      "SCIM Provisioning permission"]),
    ("wrong-secret", "wrong client secret",
     {"cloudflare_scim_graph": {"client_secret": "faults-wrong-client-secret-Pq9"}},
     ["AADSTS7000215", "Check client_secret"]),
    ("no-permission", "missing Graph permission",
     {"cloudflare_scim_graph": "@restricted"},
     ["Authorization_RequestDenied", "Synchronization.ReadWrite.All"]),
    ("expired-cert", "expired certificate",
     {"cloudflare_scim_graph": "@expired"},
     ["expired on", "register a new one on the app registration"]),
    ("unknown-group", "unknown group",
     {"cloudflare_scim_assignments": [{"type": "group", "display_name": "Faults No Such Group"}]},
     ["group 'Faults No Such Group' matches no group", "Nothing was assigned", "or give the id"]),
    ("unknown-user", "unknown user",
     {"cloudflare_scim_assignments": [{"type": "user", "user_principal_name": "nobody.faults@contoso.com"}]},
     ["user 'nobody.faults@contoso.com' matches no user", "Nothing was assigned", "or give the id"]),
    ("ambiguous-group", "ambiguous group name",
     {"cloudflare_scim_assignments": [{"type": "group", "display_name": "Faults Twin Group"}]},
     ["group 'Faults Twin Group' matches 2 groups", "name it by id"]),
    ("duplicate-app", "duplicate apps with the same name",
     {},
     ["Found 2 applications named 'Cloudflare SCIM - bad-duplicate-app'", "delete the extra ones", "keep the oldest"]),
    ("cf-group", "CF-prefixed group",
     {"cloudflare_scim_assignments": [{"type": "group", "display_name": "CF Faults Team"}]},
     ["group(s) 'CF Faults Team' start with", "a prefix Cloudflare reserves", "rename the group"]),
    ("no-account", "missing required role variable",
     {"cloudflare_scim_account_id": None},
     ["missing required arguments: cloudflare_scim_account_id"]),
    ("no-token", "missing token for state present",
     {"cloudflare_scim_token": None},
     ["cloudflare_scim_token is required with cloudflare_scim_state=present", "SCIM Provisioning permission"]),
    ("unreachable", "unreachable login endpoint",
     {"cloudflare_scim_graph": "@unreachable"},
     ["Could not reach the token endpoint", "Could not connect to 127.0.0.1:", "Connection refused", "Check graph_endpoint"]),
    ("wrong-ca", "TLS failure (wrong CA)",
     {"cloudflare_scim_graph": "@wrong-ca"},
     ["TLS verification failed for 127.0.0.1:", "certificate", "Set ca_path to the CA bundle"]),
]
if SOAK:  # a Graph endpoint that refuses connections: the transport backs off 6 times first (about 25 s)
    BAD_CASES.append(("unreachable-graph", "unreachable Graph endpoint", {"cloudflare_scim_graph": "@unreachable-graph"},
                      ["Could not connect to 127.0.0.1:", "Connection refused", "gave up after 6 attempts", "Check graph_endpoint"]))
BAD_CONTROLS = 1  # hosts in the same runs whose variables do not change: they must stay ok and unchanged
RESTRICTED_CLIENT = {"client_id": "fa175e11-0000-4000-8000-00000000000d", "client_secret": "faults-restricted-secret-Wm2"}
EXPIRED_CLIENT_ID = "fa175e11-0000-4000-8000-00000000000e"


def free_port():
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def expired_certificate(workdir):
    """A PEM file (key + certificate) whose certificate expired yesterday, and the certificate alone for the seed."""
    import datetime  # pylint: disable=import-outside-toplevel
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes, serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import rsa  # pylint: disable=import-outside-toplevel
    from cryptography.x509.oid import NameOID  # pylint: disable=import-outside-toplevel

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, u"faults expired client")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    path = os.path.join(workdir, "expired-client.pem")
    with open(path, "w", encoding="ascii") as handle:
        handle.write(key_pem + cert_pem)
    os.chmod(path, 0o600)
    return path, cert_pem


def bad_input_setup(runner):
    """Seed what the cases need and return ``{marker: value}`` for the ``@...`` placeholders of BAD_CASES."""
    emulator = runner.emulator
    cert_path, cert_pem = expired_certificate(runner.workdir)
    wrong_ca = os.path.join(runner.workdir, "wrong-ca.pem")
    with open(wrong_ca, "w", encoding="ascii") as handle:
        handle.write(harness.make_client_certificate(common_name="faults unrelated CA")[0])
    emulator.seed({
        "clients": [dict(RESTRICTED_CLIENT, display_name="faults: can read apps only",
                         permissions=["Application.Read.All", "Directory.Read.All"]),
                    {"client_id": EXPIRED_CLIENT_ID, "certificate_pem": cert_pem, "display_name": "faults: expired certificate",
                     "permissions": ["Application.ReadWrite.All", "Synchronization.ReadWrite.All", "AppRoleAssignment.ReadWrite.All",
                                     "Directory.Read.All"]}],
        "groups": [{"id": "fa17c0de-0000-4000-8000-000000000001", "displayName": "Faults Twin Group", "members": MEMBERS[:1]},
                   {"id": "fa17c0de-0000-4000-8000-000000000002", "displayName": "Faults Twin Group", "members": MEMBERS[1:]},
                   {"displayName": "CF Faults Team", "members": MEMBERS}],
    })
    runner.secrets.add("restricted client secret", RESTRICTED_CLIENT["client_secret"])
    return {
        "@restricted": runner.graph(client_id=RESTRICTED_CLIENT["client_id"], client_secret=RESTRICTED_CLIENT["client_secret"]),
        "@expired": runner.graph(client_id=EXPIRED_CLIENT_ID, client_secret=None, client_certificate_path=cert_path),
        "@unreachable": runner.graph(authority_host="https://127.0.0.1:%d" % free_port()),
        "@unreachable-graph": runner.graph(graph_endpoint="https://127.0.0.1:%d" % free_port()),
        "@wrong-ca": runner.graph(ca_path=wrong_ca),
    }


def bad_variant(runner, name, good, changes, markers):
    """The host variables of one case: its good variables with the case's changes (None removes a variable)."""
    variables = dict(good)
    for key, value in changes.items():
        if value is None:
            variables.pop(key, None)
        elif isinstance(value, str) and value in markers:
            variables[key] = markers[value]
        elif key == "cloudflare_scim_graph":
            variables[key] = dict(good[key], **value)
        else:
            variables[key] = value
    if name == "no-scim":
        variables["cloudflare_scim_token"] = markers["@no-scim"][good["cloudflare_scim_account_id"]]
    return variables


# ---------------------------------------------------------------------------------------------- harsh
@pytest.fixture(scope="module")
def harsh_fleet(emulator, runner):
    """Accounts provisioned in one fresh run under the ``harsh`` profile: the bad-input hosts (their accounts must have a
    working token saved before the bad run) and the controls."""
    names = [case[0] for case in BAD_CASES] + ["control-%d" % index for index in range(BAD_CONTROLS)]
    names += ["extra-%02d" % index for index in range(max(0, HARSH_ACCOUNTS - len(names)))]
    hosts = fleet(runner, 1, len(names), "bad", names=names)
    emulator.set_faults("harsh")
    try:
        result = runner.run("provision", hosts)
    finally:
        emulator.set_faults("none")
    return hosts, result


def test_provision_under_harsh_faults(emulator, harsh_fleet):
    hosts, result = harsh_fleet
    assert result.rc == 0 and not result.failed_hosts(), result.tail()
    assert problems(emulator, hosts) == []


def test_bad_inputs_fail_clearly_and_write_nothing(emulator, runner, harsh_fleet):
    hosts, harsh = harsh_fleet
    assert harsh.rc == 0, "the accounts of the bad-input table could not be provisioned first"
    markers = bad_input_setup(runner)
    markers["@no-scim"] = {}
    for name, dummy, dummy, dummy in BAD_CASES:
        account = hosts["bad-" + name]["cloudflare_scim_account_id"]
        markers["@no-scim"][account] = "faults-cf-no-scim-%s-Tb5" % account
        emulator.seed({"cloudflare_accounts": [{"account_id": account, "tokens": [
            {"value": markers["@no-scim"][account], "scim_permission": False}]}]})
        runner.secrets.add("no-scim token %s" % account, markers["@no-scim"][account])
    runner.secrets.add("rejected token", "faults-cf-token-never-issued-Hs3Lq")
    runner.secrets.add("wrong client secret", "faults-wrong-client-secret-Pq9")
    emulator.mutate("create_duplicate_app", display_name=app_name("bad-duplicate-app"))
    bad_hosts = dict((host, values) for host, values in hosts.items() if host.startswith("bad-control-"))
    for name, dummy, changes, dummy in BAD_CASES:
        bad_hosts["bad-" + name] = bad_variant(runner, name, hosts["bad-" + name], changes, markers)
    before = fingerprint_state(emulator, hosts)
    emulator.reset_log()

    result = runner.run("provision", bad_hosts)
    deprovision_hosts = {"bad-control-0": hosts["bad-control-0"]}
    refused = runner.run("deprovision", deprovision_hosts)

    assert writes(emulator) == []
    assert fingerprint_state(emulator, hosts) == before
    controls = ["bad-control-%d" % index for index in range(BAD_CONTROLS)]
    assert all(result.recap[host]["ok"] > 5 for host in controls), result.tail()
    expected_failed = sorted("bad-" + case[0] for case in BAD_CASES)
    assert result.failed_hosts() == expected_failed, result.tail()
    assert all(result.recap[host]["changed"] == 0 for host in controls), result.tail()
    missing = []
    for name, what, dummy, fragments in BAD_CASES:
        text = result.host_output("bad-" + name)
        absent = [fragment for fragment in fragments if fragment not in text]
        if absent:
            missing.append("%s (%s): %s not in:\n%s" % (name, what, absent, text[-1500:]))
    assert not missing, "\n\n".join(missing)
    assert refused.failed_hosts() == ["bad-control-0"]
    for fragment in ("Refusing to delete the Entra application 'Cloudflare SCIM - bad-control-0'",
                     "set cloudflare_scim_confirm_removal=true", "Nothing was changed"):
        assert fragment in refused.host_output("bad-control-0"), refused.tail()


# ---------------------------------------------------------------------------------------------- kills
def kill_plan(rng, rounds, accounts_per_round):
    """Seeded kill points: mostly "after N write requests" (spread over the writes of a fresh account), some "after a delay"."""
    fresh_writes = 6 * accounts_per_round  # instantiate, job, secrets, fingerprint, assignment, start
    delays = max(1, rounds // 4)
    targets = sorted(rng.sample(range(1, fresh_writes), min(rounds - delays, fresh_writes - 1)))
    plan = [("writes", target) for target in targets]
    plan += [("delay", round(rng.uniform(2.0, 12.0), 1)) for dummy in range(rounds - len(plan))]
    rng.shuffle(plan)
    return plan


def kill_at(emulator, run, kind, target, timeout=300):
    """Kill ``run`` once the emulator logged ``target`` writes (or ``target`` seconds passed); return what was killed when."""
    deadline = time.monotonic() + timeout
    while run.poll() is None and time.monotonic() < deadline:
        elapsed = time.monotonic() - run.started
        count = emulator.requests_log()["counts"]["writes"]
        if (kind == "writes" and count >= target) or (kind == "delay" and elapsed >= target):
            run.kill()
            return {"kind": kind, "target": target, "writes": count, "seconds": round(elapsed, 1)}
        time.sleep(0.15)
    pytest.fail("%s ended (rc %s) before its kill point %s=%s" % (run.name, run.poll(), kind, target))
    return None


def quiesce(emulator, timeout=10):
    """Wait until the emulator logs no new request for half a second: requests a killed run had in flight still land
    (and are logged) after the kill, and must not count towards the next run's kill point."""
    deadline = time.monotonic() + timeout
    last = emulator.requests_log()["counts"]["total"]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = emulator.requests_log()["counts"]["total"]
        if current == last:
            return
        last = current


def test_killed_runs_converge_on_rerun(emulator, runner):
    """Each round starts a fresh run for new accounts and kills it at its kill point, then re-runs those accounts right
    away (within the replication lag of what the killed run created): the re-run converges, with no duplicates. A last
    run over every account changes nothing.

    (A re-run that is killed too, after its own ``instantiate`` and before its app is listed, can leave two apps; the
    next run then names both and which to keep: docs/resilience.md, "What happens when a run is killed".)
    """
    rng = random.Random(RNG_SEED)
    plan = kill_plan(rng, KILL_POINTS, KILL_ACCOUNTS)
    everyone = {}
    kills = []
    emulator.set_faults("harsh" if SOAK else "realistic")
    try:
        for index, (kind, target) in enumerate(plan):
            fresh = fleet(runner, 0x100 + index, KILL_ACCOUNTS, "kill%02d" % index)
            everyone.update(fresh)
            quiesce(emulator)
            emulator.reset_log()
            kills.append(kill_at(emulator, runner.start("provision", fresh), kind, target))
            quiesce(emulator)
            rerun = runner.run("provision", fresh)
            assert rerun.rc == 0 and not rerun.failed_hosts(), "re-run after kill %s:\n%s" % (kills[-1], rerun.tail())
            assert problems(emulator, fresh) == [], "re-run after kill %s" % kills[-1]
        print("kill points: %s" % kills)
        emulator.reset_log()
        final = runner.run("provision", everyone)
    finally:
        emulator.set_faults("none")
    assert final.rc == 0 and not final.failed_hosts(), final.tail()
    assert all(final.recap[host]["changed"] == 0 for host in everyone), final.tail()
    assert problems(emulator, everyone) == []
    assert len(set((kind, target) for kind, target in plan)) == len(plan) >= 5


# ---------------------------------------------------------------------------------------------- races
def delete_application(emulator, app):
    """DELETE /applications/{id} as an administrator would, to clean up a duplicate."""
    response = harness.GraphAdmin(emulator).request("DELETE", "applications/%s" % app["id"])
    assert response.status_code == 204, response.text


def test_concurrent_runs_over_the_same_accounts(emulator, runner):
    """RACE_RUNS ansible-playbook runs start together over the same new accounts (realistic faults: 2 s replication lag).

    Apps and jobs made twice are settled by the runs themselves (the oldest app, the job with the smallest id). When an
    ``instantiate`` that answered 404 cannot tell its app from the other run's, a duplicate can stay (on at most
    RACE_MAX_DUPLICATED accounts; the runs settle all the others): the next run then fails that account naming every app
    and which one to keep, and changes nothing else.
    """
    hosts = fleet(runner, 0x200, RACE_ACCOUNTS, "race")
    emulator.set_faults("realistic")
    try:
        runs = [runner.start("provision", hosts) for dummy in range(RACE_RUNS)]
        results = [run.wait() for run in runs]
    finally:
        emulator.set_faults("none")
    accounts = view(emulator.state(), hosts)
    duplicated = sorted(host for host, acct in accounts.items() if len(acct["apps"]) > 1)
    print("race: failed hosts per run %s; accounts left with several apps: %s" % ([r.failed_hosts() for r in results], duplicated))
    clean = dict((host, values) for host, values in hosts.items() if host not in duplicated)
    assert len(duplicated) <= RACE_MAX_DUPLICATED and len(clean) >= len(hosts) - RACE_MAX_DUPLICATED, \
        "%d of %d accounts were left with several apps (at most %d may be)" % (len(duplicated), len(hosts), RACE_MAX_DUPLICATED)
    assert problems(emulator, clean) == []
    assert all(len(acct["jobs"]) <= 1 for host, acct in accounts.items() if host not in duplicated)

    emulator.reset_log()
    nxt = runner.run("provision", hosts)
    assert nxt.failed_hosts() == duplicated, nxt.tail()
    assert all(nxt.recap[host]["changed"] == 0 for host in clean), nxt.tail()
    assert writes(emulator) == []
    for host in duplicated:
        text = nxt.host_output(host)
        assert "Found %d applications named '%s'" % (len(accounts[host]["apps"]), app_name(host)) in text, text
        assert all(app["id"] in text for app in accounts[host]["apps"]) and "keep the oldest" in text, text

    # The cleanup the message asks for (keep the oldest), then one more run converges every account.
    for host in duplicated:
        for app in sorted(accounts[host]["apps"], key=lambda item: (item["createdDateTime"], item["id"]))[1:]:
            delete_application(emulator, app)
    if duplicated:
        again = runner.run("provision", dict((host, hosts[host]) for host in duplicated))
        assert again.rc == 0 and not again.failed_hosts(), again.tail()
    assert problems(emulator, hosts) == []


# ---------------------------------------------------------------------------------------------- the settling rules, step by step
# The runs above meet races and kills at random points; these replay the decisive moments deterministically against a
# small in-memory Graph (no emulator, no Ansible): which app or job a run keeps, what it deletes, when a 403 fails at once.
TEMPLATE = harness.NON_GALLERY_TEMPLATE_ID


class RaceGraph(FakeGraph):
    """Applications, service principals and jobs in memory; ``on_instantiate`` lets "another run" act meanwhile.

    Its ``$batch`` (entra_app's lookup) answers each list read as the plain list would be (tests/unit/utils/fake_graph.py).
    """

    def __init__(self):
        super(RaceGraph, self).__init__()
        self.apps = {}
        self.sps = {}
        self.jobs = {}
        self.clock = 1000
        self.on_instantiate = None
        self.instantiate_404 = False
        self.fail_sync = []

    def add_app(self, name, created=None):
        self.clock += 1
        app = {"id": "app-%04d" % self.clock, "appId": "appid-%04d" % self.clock, "displayName": name,
               "applicationTemplateId": TEMPLATE, "createdDateTime": created or "2026-11-30T00:%02d:%02dZ" % divmod(self.clock % 3600, 60)}
        self.apps[app["id"]] = app
        self.sps["sp-" + app["id"]] = {"id": "sp-" + app["id"], "appId": app["appId"], "displayName": name, "appRoles": [], "notes": None}
        return app

    def list(self, path, params=None, **dummy):
        self.calls.append(("LIST", path))
        query = (params or {}).get("$filter", "")
        if path == "/applications":
            return [dict(app) for app in self.apps.values() if "'%s'" % app["displayName"] in query or "'%s'" % app["appId"] in query]
        if path == "/servicePrincipals":
            return [dict(sp) for sp in self.sps.values() if "'%s'" % sp["appId"] in query or "'%s'" % sp["displayName"] in query]
        if path.endswith("/synchronization/jobs"):
            if self.fail_sync:
                raise self.fail_sync.pop(0)
            return [dict(job) for job in self.jobs.values()]
        raise AssertionError(path)

    def get(self, path, params=None, **dummy):
        self.calls.append(("GET", path))
        kind, object_id = path.strip("/").split("/")[:2]
        if kind == "applicationTemplates":
            return {"id": object_id, "displayName": "Non-gallery"}
        found = {"applications": self.apps, "servicePrincipals": self.sps}[kind].get(object_id)
        if "/synchronization/jobs/" in path:
            found = self.jobs.get(path.rsplit("/", 1)[1])
        if found is None:
            raise GraphError("Resource '%s' does not exist" % object_id, status=404, code="Request_ResourceNotFound")
        return dict(found)

    def post(self, path, body=None, **dummy):
        self.calls.append(("POST", path))
        if path.endswith("/instantiate"):
            app = self.add_app(body["displayName"])
            if self.on_instantiate is not None:
                self.on_instantiate()
            if self.instantiate_404:
                raise GraphError("not found", status=404, code="Request_ResourceNotFound", date=app["createdDateTime"][:19])
            return {"application": dict(app), "servicePrincipal": dict(self.sps["sp-" + app["id"]])}
        job = {"id": "scim.%s" % body.get("mark", "b0"), "templateId": "scim", "schedule": {"state": "Disabled"}, "status": {}}
        self.jobs[job["id"]] = job
        if self.on_instantiate is not None:
            self.on_instantiate()
        return dict(job)

    def patch(self, path, body, **dummy):
        """entra_app tags the service principal it created or adopted (its marker)."""
        self.calls.append(("PATCH", path))
        self.sps[path.rsplit("/", 1)[1]]["tags"] = list(body["tags"])

    def delete(self, path, **dummy):
        self.calls.append(("DELETE", path))
        object_id = path.rsplit("/", 1)[1]
        if self.apps.pop(object_id, None) is None and self.jobs.pop(object_id, None) is None:
            raise GraphError("gone", status=404, code="Request_ResourceNotFound")
        self.sps.pop("sp-" + object_id, None)


def settle(graph, name="Cloudflare SCIM - race"):
    from ansible_collections.entrascim.cloudflare.plugins.module_utils._app_service import AppService  # pylint: disable=import-outside-toplevel
    from ansible_collections.entrascim.cloudflare.plugins.module_utils._apps import ensure_app  # pylint: disable=import-outside-toplevel
    service = AppService(graph, wait_timeout=60, interval=0.01, sleep=lambda seconds: None)
    return ensure_app(service, "present", name, TEMPLATE)


def test_rule_a_run_whose_app_is_newer_deletes_its_own_and_adopts_the_oldest():
    graph = RaceGraph()
    graph.on_instantiate = lambda: graph.add_app("Cloudflare SCIM - race", created="2026-11-30T00:00:00Z")  # the other run's, older
    result = settle(graph)
    older = list(graph.apps.values())
    assert len(older) == 1 and result["application"]["id"] == older[0]["id"]
    assert result["service_principal"]["id"] == "sp-" + older[0]["id"]
    assert [call for call in graph.calls if call[0] == "DELETE"] == [("DELETE", "/applications/app-1001")]
    assert "adopted the oldest" in result["warnings"][0]


def test_rule_a_run_whose_app_is_the_oldest_keeps_it_and_never_deletes_another_runs():
    graph = RaceGraph()
    graph.on_instantiate = lambda: graph.add_app("Cloudflare SCIM - race", created="2026-11-30T01:00:00Z")  # the other run's, newer
    result = settle(graph)
    assert result["application"]["id"] == "app-1001" and len(graph.apps) == 2
    assert not [call for call in graph.calls if call[0] == "DELETE"] and result["warnings"] == []


def test_rule_a_404_instantiate_finds_its_app_by_creation_time_and_still_yields_to_an_older_one():
    graph = RaceGraph()
    killed = graph.add_app("Cloudflare SCIM - race", created="2026-11-30T00:00:00Z")  # made by a run killed a while ago...
    graph.apps.pop(killed["id"])  # ...and not listed yet when this run looked
    graph.on_instantiate = lambda: graph.apps.setdefault(killed["id"], killed)
    graph.instantiate_404 = True
    result = settle(graph)
    assert result["application"]["id"] == killed["id"] and list(graph.apps) == [killed["id"]]
    assert "adopted the oldest" in result["warnings"][0]


def test_rule_an_ambiguous_404_instantiate_goes_on_with_the_oldest_and_deletes_nothing():
    graph = RaceGraph()
    graph.instantiate_404 = True
    graph.on_instantiate = lambda: graph.add_app("Cloudflare SCIM - race")  # the other run's, created the same second
    result = settle(graph)
    assert result["application"]["id"] == min(graph.apps) and len(graph.apps) == 2
    assert not [call for call in graph.calls if call[0] == "DELETE"]
    assert "cannot tell which one it created" in result["warnings"][0]


def test_rule_jobs_every_run_keeps_the_smallest_id():
    from ansible_collections.entrascim.cloudflare.plugins.module_utils._sync import SyncService  # pylint: disable=import-outside-toplevel
    for ours, theirs, kept in (("b5", "a1", "scim.a1"), ("a1", "b5", "scim.a1")):
        graph = RaceGraph()
        graph.on_instantiate = lambda mark=theirs: graph.jobs.setdefault("scim." + mark, {"id": "scim." + mark, "templateId": "scim"})
        service = SyncService(graph, "sp-x", timeout=30, sleep=lambda seconds: None)
        original = graph.post
        graph.post = lambda path, body=None, mark=ours, **kw: original(path, dict(body or {}, mark=mark), **kw)
        job = service.create_job("scim")
        assert job["id"] == kept and list(graph.jobs) == [kept], (ours, theirs)
        assert service.notices and "kept %s" % kept in service.notices[0]


def test_rule_a_403_fails_at_once_on_a_service_principal_configured_before():
    from ansible_collections.entrascim.cloudflare.plugins.module_utils._secrets import FINGERPRINT_PREFIX  # pylint: disable=import-outside-toplevel
    from ansible_collections.entrascim.cloudflare.plugins.module_utils._sync import SyncService  # pylint: disable=import-outside-toplevel
    denied = GraphError("Insufficient privileges to complete the operation.", status=403, code="Authorization_RequestDenied")
    for notes, lists in ((FINGERPRINT_PREFIX + "ab" * 32, 1), (None, 4)):
        graph = RaceGraph()
        graph.sps["sp-x"] = {"id": "sp-x", "appId": "appid-x", "notes": notes}
        graph.fail_sync = [denied, denied, denied]
        service = SyncService(graph, "sp-x", timeout=60, sleep=lambda seconds: None)
        if notes:
            with pytest.raises(GraphError) as caught:
                service.list_jobs()
            assert caught.value.status == 403
        else:
            assert service.list_jobs() == []  # a new service principal: the 403s were replication lag
        assert len([call for call in graph.calls if call[0] == "LIST"]) == lists

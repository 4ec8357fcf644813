# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration test harness: start the emulator, run playbooks against it, scan every output for secrets.

Each test gets an ``emulator`` (tests/emulator/harness.py) and a ``playbook`` runner. The runner writes an
inventory of local hosts, passes the emulator's endpoints and the Graph credentials as extra vars (the test
playbooks feed them to ``module_defaults: group/entrascim.cloudflare.entra``), runs ``ansible-playbook``,
parses the PLAY RECAP, and fails the test when any known secret value appears in the output.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import subprocess
import sys

import pytest

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if COLLECTION_ROOT not in sys.path:
    sys.path.insert(0, COLLECTION_ROOT)

from tests.emulator import harness  # noqa: E402  pylint: disable=wrong-import-position

TARGETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "targets")
RECAP_RE = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                      r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)")


class PlaybookResult(object):
    """The outcome of one ansible-playbook run."""

    def __init__(self, rc, output):
        self.rc = rc
        self.output = output
        self.recap = {}
        for line in output.splitlines():
            match = RECAP_RE.match(line.strip())
            if match:
                values = match.groupdict()
                host = values.pop("host")
                self.recap[host] = dict((key, int(value)) for key, value in values.items())

    def total(self, key):
        return sum(host[key] for host in self.recap.values())

    @property
    def changed(self):
        return self.total("changed")

    @property
    def failed(self):
        return self.total("failed") + self.total("unreachable")


class SecretScanner(object):
    """Remembers every secret a test used and finds them in text without ever printing them."""

    def __init__(self):
        self._secrets = {}

    def add(self, label, value):
        if value and len(value) >= 6:
            self._secrets[label] = value

    def leaks(self, text):
        return sorted(label for label, value in self._secrets.items() if value in text)

    def assert_clean(self, text, where):
        found = self.leaks(text)
        assert not found, "secret value(s) %s found in %s" % (", ".join(found), where)


@pytest.fixture(scope="session")
def secrets():
    return SecretScanner()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory, secrets):
    workdir = tmp_path_factory.mktemp("emulator")
    emu = harness.Emulator(str(workdir), faults="none", cycle_interval=1)
    with emu:
        secrets.add("client secret", harness.DEFAULT_CLIENT["client_secret"])
        for index, account in enumerate(harness.DEFAULT_SEED.get("cloudflare_accounts", [])):
            for token in account.get("tokens", []):
                secrets.add("cloudflare token %d" % index, token["value"])
        yield emu


@pytest.fixture
def playbook(emulator, secrets, tmp_path):
    """Run a playbook against the emulator: playbook(name, **options).

    ``name`` is a file in tests/integration/targets, an absolute path, or a collection playbook
    (``entrascim.cloudflare.provision``); ``hosts`` a list of inventory hosts (group
    ``cloudflare_accounts``, local connection) or a dict of host name to host variables.
    """
    cache_dir = tmp_path / "token-cache"

    def run(name, hosts=("localhost",), extra_vars=None, check=False, diff=False, verbosity=0, env=None,
            expect_rc=0):
        inventory = tmp_path / "inventory.json"
        host_vars = hosts if isinstance(hosts, dict) else dict((host, {}) for host in hosts)
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        inventory.write_text(json.dumps({"cloudflare_accounts": {
            "hosts": dict((host, dict(local, **(values or {}))) for host, values in host_vars.items())}}))
        os.chmod(str(inventory), 0o600)
        variables = {
            "emu": {
                "tenant_id": harness.DEFAULT_CLIENT["tenant_id"],
                "client_id": harness.DEFAULT_CLIENT["client_id"],
                "client_secret": harness.DEFAULT_CLIENT["client_secret"],
                "graph_endpoint": emulator.graph_endpoint,
                "authority_host": emulator.authority_host,
                "cloudflare_api_endpoint": emulator.cloudflare_api_endpoint,
                "ca_path": emulator.ca_path,
                "token_cache_path": str(cache_dir),
            },
        }
        variables.update(extra_vars or {})
        vars_file = tmp_path / "vars.json"
        vars_file.write_text(json.dumps(variables))
        os.chmod(str(vars_file), 0o600)
        target = name if name.startswith("entrascim.cloudflare.") else os.path.join(TARGETS, name)
        cmd = ["ansible-playbook", "-i", str(inventory), "-e", "@%s" % vars_file, target]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        run_env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
                       ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
        run_env.update(env or {})
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=run_env, check=False,
                              universal_newlines=True, timeout=900)
        result = PlaybookResult(proc.returncode, proc.stdout)
        secrets.assert_clean(proc.stdout, "the output of %s" % name)
        if expect_rc is not None and proc.returncode != expect_rc:
            pytest.fail("ansible-playbook %s exited %d (expected %d):\n%s" % (name, proc.returncode, expect_rc, proc.stdout[-6000:]))
        return result

    return run

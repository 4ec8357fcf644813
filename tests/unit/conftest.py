# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures of the unit tests: a throw-away PKI, real local HTTPS servers, a fake clock,
a hermetic environment, and a check that no secret value ever reaches the captured output."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_servers import ConnectProxy, FakeMicrosoft
from ansible_collections.entrascim.cloudflare.tests.unit.utils.pki import TestPKI

TENANT_ID = "contoso-tenant"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "Cl1ent~Secret.Value-For-Tests-0123456789abcdef"
MI_CLIENT_ID = "99999999-8888-7777-6666-555555555555"

# Every secret value a test used; checked against the captured output after each test.
SECRET_VALUES = set([CLIENT_SECRET])

_ENV_TO_CLEAR = (
    "AZURE_TENANT_ID", "AZURE_TENANT", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_AUTHORITY_HOST",
    "AZURE_CLOUD_ENVIRONMENT", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT",
    "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
    "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
)


def collections_root():
    """The directory that contains ``ansible_collections`` (for PYTHONPATH of child processes)."""
    path = os.path.dirname(os.path.abspath(__file__))
    while os.path.basename(path) != "ansible_collections":
        parent = os.path.dirname(path)
        if parent == path:
            raise RuntimeError("tests must run from a staged .../ansible_collections/entrascim/cloudflare tree")
        path = parent
    return os.path.dirname(path)


class FakeClock:
    """Injected ``sleep``/``clock``/``now``: sleeping advances the clock and is recorded, instantly."""

    def __init__(self, start=1000.0):
        self.now_value = start
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now_value += seconds

    def clock(self):
        return self.now_value

    def advance(self, seconds):
        self.now_value += seconds


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return TestPKI(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch, tmp_path, pki):
    """No credential, proxy or identity variables leak in; the cache lives in the test's tmp dir;
    REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE point at a bundle WITHOUT our CA (ca_path must win)."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.other_bundle_path)
    monkeypatch.setenv("CURL_CA_BUNDLE", pki.other_bundle_path)


@pytest.fixture
def fake_ms(pki):
    server = FakeMicrosoft(pki, tenant=TENANT_ID)
    server.register_app(CLIENT_ID, secret=CLIENT_SECRET, certificate=pki.client_cert)
    with server:
        yield server
    SECRET_VALUES.update(server.issued)
    SECRET_VALUES.add(server.msi_header)


@pytest.fixture
def proxy():
    with ConnectProxy() as running:
        yield running


@pytest.fixture
def fake_clock():
    return FakeClock()


@pytest.fixture(autouse=True)
def no_secret_in_output(capfd, pki):
    """Fail any test whose stdout/stderr shows a secret (client secret, key password, issued token)."""
    yield
    SECRET_VALUES.add(pki.client_password)
    out, err = capfd.readouterr()
    sys.stdout.write(out)
    sys.stderr.write(err)
    leaked = [s for s in SECRET_VALUES if s and (s in out or s in err)]
    assert not leaked, "secret values appeared in the test output"


def run_python(code, env=None, timeout=60):
    """Run ``code`` in a fresh Python process with the staged collection importable; return the last JSON line."""
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env["PYTHONPATH"] = collections_root()
    proc = subprocess.run([sys.executable, "-c", code], env=child_env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, "child failed (rc %s): %s" % (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    for secret in SECRET_VALUES:
        assert secret not in proc.stdout and secret not in proc.stderr
    return json.loads(lines[-1])


@pytest.fixture
def fake_az(tmp_path, monkeypatch):
    """A fake ``az`` on PATH that logs its arguments and prints a token document (or fails on request)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    log = tmp_path / "az-args.json"
    token = "az-cli-token-" + os.urandom(12).hex()
    SECRET_VALUES.add(token)
    script = bindir / "az"
    script.write_text(
        "#!%s\n"
        "import json, os, sys, time\n"
        "with open(%r, 'a') as handle:\n"
        "    handle.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if os.environ.get('FAKE_AZ_FAIL'):\n"
        "    sys.stderr.write(\"ERROR: Please run 'az login' to setup account.\\n\")\n"
        "    sys.exit(1)\n"
        "now = int(time.time())\n"
        "print(json.dumps({'accessToken': %r, 'expiresOn': time.strftime('%%Y-%%m-%%d %%H:%%M:%%S.000000'),\n"
        "                  'expires_on': now + 3600, 'tenant': 'contoso-tenant', 'tokenType': 'Bearer'}, indent=2))\n"
        % (sys.executable, str(log), token)
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "%s%s%s" % (bindir, os.pathsep, os.environ.get("PATH", "")))

    class FakeAz:
        path = str(script)

        def __init__(self):
            self.token = token

        @staticmethod
        def calls():
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines()]

    return FakeAz()

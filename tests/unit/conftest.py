# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures of the unit tests: a throw-away PKI, real local HTTPS servers, a fake clock,
a hermetic environment, and a report hook that fails a test when a secret value reaches its
captured output or failure text."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import os
import sys

import pytest

from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import (
    CLIENT_ID, CLIENT_SECRET, SECRET_VALUES, TENANT_ID, FakeClock,
)
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_servers import ConnectProxy, FakeMicrosoft
from ansible_collections.entrascim.cloudflare.tests.unit.utils.pki import TestPKI

_ENV_TO_CLEAR = (
    "AZURE_TENANT_ID", "AZURE_TENANT", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_AUTHORITY_HOST",
    "AZURE_CLOUD_ENVIRONMENT", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT",
    "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
    "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
)


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
    SECRET_VALUES.add(pki.client_password)
    server = FakeMicrosoft(pki, tenant=TENANT_ID, secret_sink=SECRET_VALUES)
    server.register_app(CLIENT_ID, secret=CLIENT_SECRET, certificate=pki.client_cert)
    with server:
        yield server


@pytest.fixture
def proxy():
    with ConnectProxy() as running:
        yield running


@pytest.fixture
def fake_clock():
    return FakeClock()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Fail any test phase whose captured stdout/stderr/log shows a registered secret (client secret,
    key password, issued tokens), and redact secrets from failure reports (test sources hold literals)."""
    outcome = yield
    report = outcome.get_result()
    secrets_now = sorted((s for s in list(SECRET_VALUES) if s), key=len, reverse=True)
    own = [content for name, content in report.sections if name.endswith(report.when)]  # later phases repeat earlier sections
    leaked = any(secret in content for content in own for secret in secrets_now)
    if report.longrepr is not None:
        text = str(report.longrepr)
        if any(secret in text for secret in secrets_now):
            for secret in secrets_now:
                text = text.replace(secret, "<redacted secret>")
            report.longrepr = text
    if leaked:
        report.sections = [(name, "<output withheld: it contained a secret value>") for name, dummy in report.sections]
        report.outcome = "failed"
        report.longrepr = "a secret value (client secret, key password or access token) appeared in the captured output of %s" % item.nodeid


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
        "if os.environ.get('FAKE_AZ_HANG'):\n"
        "    time.sleep(int(os.environ['FAKE_AZ_HANG']))\n"
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

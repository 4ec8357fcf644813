# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Auth methods against a real local token endpoint / managed identity endpoint / fake Azure CLI, and the token cache."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
import shutil
import time

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils import _auth, _clouds
from ansible_collections.entrascim.cloudflare.plugins.module_utils._auth import (
    AccessTokenAuth, AzureCliAuth, ClientCertificateAuth, ClientSecretAuth, ManagedIdentityAuth, TokenCacheFile,
    default_cache_dir, resolve_cloud, select_auth,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils._auth_tokens import run_with_deadline
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import AuthError
from ansible_collections.entrascim.cloudflare.plugins.module_utils._transport import Transport
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import (
    CLIENT_ID, CLIENT_SECRET, MI_CLIENT_ID, SECRET_VALUES, TENANT_ID, collections_root, run_python,
)


def transport_for(pki):
    return Transport(ca_path=pki.ca_path, timeout=10)


def secret_auth(server, pki, cache_dir=None, secret=CLIENT_SECRET, client_id=CLIENT_ID):
    return ClientSecretAuth(TENANT_ID, client_id, secret, server.base_url, server.graph_endpoint, transport_for(pki), cache_dir=cache_dir)


def run_command(args, timeout=None):
    """What EntraModule's command runner does, for tests outside a module."""
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def b64url(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def fake_jwt(**claims):
    token = "%s.%s.%s" % (b64url({"alg": "RS256", "typ": "JWT"}), b64url(claims), "c2lnbmF0dXJl")
    SECRET_VALUES.add(token)
    return token


# -- client secret ---------------------------------------------------------------------------

def test_client_secret_gets_a_token_through_our_tls_session(fake_ms, pki):
    auth = secret_auth(fake_ms, pki)
    token = auth.get_token()
    assert token in fake_ms.issued
    assert auth.get_token() == token  # kept in memory
    assert fake_ms.token_requests == 1
    form = fake_ms.recorded("POST", "/%s/oauth2/v2.0/token" % TENANT_ID)[0].form()
    assert form["client_id"] == CLIENT_ID
    assert form["scope"] == fake_ms.graph_endpoint + "/.default"
    assert form["grant_type"] == "client_credentials"
    # msal read the OpenID configuration of our authority (instance discovery off for a non-Microsoft host)
    assert fake_ms.recorded("GET", "/%s/v2.0/.well-known/openid-configuration" % TENANT_ID)
    assert auth.instance_discovery is False


def test_wrong_client_secret_is_reported_with_the_aadsts_text_and_never_echoed(fake_ms, pki):
    wrong = "Wrong-Secret-Value-0987654321-abcdef"
    SECRET_VALUES.add(wrong)
    with pytest.raises(AuthError) as info:
        secret_auth(fake_ms, pki, secret=wrong).get_token()
    text = str(info.value)
    assert "AADSTS7000215" in text
    assert "use the secret's value" in text
    assert info.value.code == "invalid_client"
    assert wrong not in text and CLIENT_SECRET not in text


def test_unknown_application_hint(fake_ms, pki):
    with pytest.raises(AuthError) as info:
        secret_auth(fake_ms, pki, client_id="00000000-0000-0000-0000-00000000dead").get_token()
    assert "AADSTS700016" in str(info.value)
    assert "Check client_id, tenant_id and cloud" in str(info.value)


def test_unreachable_token_endpoint(pki):
    auth = ClientSecretAuth(TENANT_ID, CLIENT_ID, CLIENT_SECRET, "https://127.0.0.1:1", "https://127.0.0.1:1", transport_for(pki))
    with pytest.raises(AuthError) as info:
        auth.get_token()
    assert info.value.code == "ConnectionError"
    assert "Could not reach the token endpoint" in str(info.value)


def test_token_requests_honour_ca_path_and_fail_clearly_without_it(fake_ms, pki):
    """REQUESTS_CA_BUNDLE (set by hermetic_env) lacks our CA: without ca_path the token request fails TLS."""
    auth = ClientSecretAuth(TENANT_ID, CLIENT_ID, CLIENT_SECRET, fake_ms.base_url, fake_ms.graph_endpoint, Transport(timeout=10))
    with pytest.raises(AuthError) as info:
        auth.get_token()
    assert info.value.code == "TLSError"
    assert "ca_path" in str(info.value)
    assert secret_auth(fake_ms, pki).get_token() in fake_ms.issued


def test_token_requests_go_through_the_environment_proxy(fake_ms, pki, proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    assert secret_auth(fake_ms, pki).get_token() in fake_ms.issued
    assert proxy.tunnels and set(proxy.tunnels) == set(["127.0.0.1:%d" % fake_ms.port])


# -- certificate -----------------------------------------------------------------------------

def test_certificate_sends_a_signed_assertion_the_server_verifies(fake_ms, pki):
    auth = ClientCertificateAuth(TENANT_ID, CLIENT_ID, pki.client_pem_path, fake_ms.base_url, fake_ms.graph_endpoint, transport_for(pki))
    assert auth.get_token() in fake_ms.issued
    header = fake_ms.last_assertion_header
    assert header["alg"] == "PS256"
    expected = base64.urlsafe_b64encode(pki.thumbprint_sha256(pki.client_cert)).rstrip(b"=").decode()
    assert header["x5t#S256"].rstrip("=") == expected
    form = fake_ms.recorded("POST", "/%s/oauth2/v2.0/token" % TENANT_ID)[-1].form()
    assert "client_secret" not in form


def test_encrypted_certificate_key_with_password(fake_ms, pki):
    auth = ClientCertificateAuth(TENANT_ID, CLIENT_ID, pki.client_encrypted_pem_path, fake_ms.base_url, fake_ms.graph_endpoint,
                                 transport_for(pki), certificate_password=pki.client_password)
    assert auth.get_token() in fake_ms.issued


def test_a_certificate_the_app_does_not_know_is_refused(fake_ms, pki):
    auth = ClientCertificateAuth(TENANT_ID, CLIENT_ID, pki.rogue_pem_path, fake_ms.base_url, fake_ms.graph_endpoint, transport_for(pki))
    with pytest.raises(AuthError) as info:
        auth.get_token()
    assert "AADSTS700027" in str(info.value)
    assert "x5t#S256 does not match" in str(info.value)
    assert not fake_ms.issued


@pytest.mark.parametrize("path_attr, password, expected", [
    ("client_encrypted_pem_path", "Not-The-Right-Password-1234", "wrong client_certificate_password"),
    ("client_encrypted_pem_path", None, "is encrypted: set client_certificate_password"),
    ("client_pem_path", "Unneeded-Password-5678", "is not encrypted"),
    ("expired_pem_path", None, "expired on"),
    ("ca_path", None, "must be a PEM file holding both the private key and the certificate"),
    ("missing", None, "Cannot read client_certificate_path"),
])
def test_certificate_file_problems_are_explained_without_the_password(fake_ms, pki, path_attr, password, expected):
    if password:
        SECRET_VALUES.add(password)
    path = getattr(pki, path_attr, os.path.join(pki.directory, "does-not-exist.pem"))
    auth = ClientCertificateAuth(TENANT_ID, CLIENT_ID, path, fake_ms.base_url, fake_ms.graph_endpoint, transport_for(pki),
                                 certificate_password=password)
    with pytest.raises(AuthError) as info:
        auth.get_token()
    assert expected in str(info.value)
    assert fake_ms.token_requests == 0
    if password:
        assert password not in str(info.value)


def test_certificate_without_matching_key(tmp_path, pki):
    mixed = tmp_path / "mixed.pem"
    with open(pki.rogue_pem_path, "rb") as rogue, open(pki.client_pem_path, "rb") as client:
        key_only = rogue.read().split(b"-----BEGIN CERTIFICATE-----")[0]
        cert_only = b"-----BEGIN CERTIFICATE-----" + client.read().split(b"-----BEGIN CERTIFICATE-----")[1].split(b"-----BEGIN PRIVATE KEY")[0]
    mixed.write_bytes(key_only + cert_only)
    with pytest.raises(AuthError) as info:
        _auth.load_certificate_credential(str(mixed))
    assert "no certificate matching its private key" in str(info.value)


# -- managed identity -------------------------------------------------------------------------

def _msi_env(monkeypatch, server):
    monkeypatch.setenv("IDENTITY_ENDPOINT", server.base_url + "/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", server.msi_header)


def test_system_assigned_managed_identity(fake_ms, pki, monkeypatch):
    _msi_env(monkeypatch, fake_ms)
    auth = ManagedIdentityAuth(fake_ms.graph_endpoint, transport_for(pki))
    assert auth.get_token() in fake_ms.issued
    request = fake_ms.recorded("GET", "/msi/token")[0]
    assert request.query["resource"] == [fake_ms.graph_endpoint]
    assert "client_id" not in request.query
    assert fake_ms.issued[auth.get_token()] == "system-assigned"


def test_user_assigned_managed_identity_with_cache(fake_ms, pki, monkeypatch, tmp_path):
    _msi_env(monkeypatch, fake_ms)
    cache_dir = str(tmp_path / "cache")
    token = ManagedIdentityAuth(fake_ms.graph_endpoint, transport_for(pki), client_id=MI_CLIENT_ID, cache_dir=cache_dir).get_token()
    assert fake_ms.issued[token] == MI_CLIENT_ID
    again = ManagedIdentityAuth(fake_ms.graph_endpoint, transport_for(pki), client_id=MI_CLIENT_ID, cache_dir=cache_dir)
    assert again.get_token() == token
    assert again.token_requests == 0
    assert fake_ms.msi_requests == 1
    # the system-assigned identity has its own cache entry
    other = ManagedIdentityAuth(fake_ms.graph_endpoint, transport_for(pki), cache_dir=cache_dir)
    assert other.get_token() != token
    assert fake_ms.msi_requests == 2


def test_managed_identity_errors_are_auth_errors(fake_ms, pki, monkeypatch):
    monkeypatch.setenv("IDENTITY_ENDPOINT", fake_ms.base_url + "/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    with pytest.raises(AuthError) as info:
        ManagedIdentityAuth(fake_ms.graph_endpoint, transport_for(pki)).get_token()
    assert "Managed identity token request failed" in str(info.value)


# -- access token ------------------------------------------------------------------------------

def test_access_token_is_used_as_given():
    token = "opaque-token-value-" + "x" * 20
    SECRET_VALUES.add(token)
    auth = AccessTokenAuth("Bearer " + token, graph_endpoint="https://graph.microsoft.com")
    assert auth.get_token() == token
    assert auth.invalidate(token) is False
    assert auth.needs_msal is False


def test_expired_or_foreign_jwt_access_tokens_are_refused_early():
    now = time.time()
    expired = fake_jwt(aud="https://graph.microsoft.com", exp=int(now) - 60)
    with pytest.raises(AuthError) as info:
        AccessTokenAuth(expired, graph_endpoint="https://graph.microsoft.com").get_token()
    assert "expired at" in str(info.value) and expired not in str(info.value)
    arm = fake_jwt(aud="https://management.azure.com/", exp=int(now) + 3600)
    with pytest.raises(AuthError) as info:
        AccessTokenAuth(arm, graph_endpoint="https://graph.microsoft.com").get_token()
    assert "not for Microsoft Graph" in str(info.value)
    good = fake_jwt(aud="00000003-0000-0000-c000-000000000000", exp=int(now) + 3600)
    assert AccessTokenAuth(good, graph_endpoint="https://graph.microsoft.com").get_token() == good
    # a test/emulator endpoint does not check the audience
    assert AccessTokenAuth(arm, graph_endpoint="https://127.0.0.1:8443").get_token() == arm


# -- Azure CLI ---------------------------------------------------------------------------------

def test_azure_cli_runs_az_with_resource_and_tenant(fake_az):
    auth = AzureCliAuth("https://graph.microsoft.com/", run_command, tenant_id=TENANT_ID, az_path=fake_az.path)
    assert auth.get_token() == fake_az.token
    assert auth.get_token() == fake_az.token
    assert fake_az.calls() == [["account", "get-access-token", "--resource", "https://graph.microsoft.com",
                                "--tenant", TENANT_ID, "--output", "json"]]


def test_azure_cli_failure_says_to_log_in(fake_az, monkeypatch):
    monkeypatch.setenv("FAKE_AZ_FAIL", "1")
    with pytest.raises(AuthError) as info:
        AzureCliAuth("https://graph.microsoft.com", run_command, az_path=fake_az.path).get_token()
    assert "rc=1" in str(info.value) and "Run 'az login'" in str(info.value)
    assert fake_az.calls()[0][-2:] == ["--output", "json"] and "--tenant" not in fake_az.calls()[0]


def test_azure_cli_garbage_output_is_not_echoed():
    leaked = "looks-like-a-token-" + "z" * 24
    SECRET_VALUES.add(leaked)
    with pytest.raises(AuthError) as info:
        AzureCliAuth("https://graph.microsoft.com", lambda args, timeout: (0, "WARNING " + leaked, ""), az_path="az").get_token()
    assert leaked not in str(info.value)
    assert "did not print a token document" in str(info.value)


# -- auth_method: auto -----------------------------------------------------------------------

def _params(**kwargs):
    params = dict(auth_method="auto", tenant_id=None, client_id=None, client_secret=None, client_certificate_path=None,
                  client_certificate_password=None, access_token=None, managed_identity_client_id=None, cloud=None,
                  graph_endpoint=None, authority_host=None, token_cache=True, token_cache_path=None)
    params.update(kwargs)
    return params


def no_az(name):
    return None


@pytest.mark.parametrize("given, environ, expected", [
    (dict(access_token="t" * 30, client_secret="s" * 30, tenant_id="t", client_id="c"), {}, "access_token"),
    (dict(client_certificate_path="/x.pem", client_secret="s" * 30, tenant_id="t", client_id="c"), {}, "certificate"),
    (dict(client_secret="s" * 30, tenant_id="t", client_id="c"), {"IDENTITY_ENDPOINT": "https://127.0.0.1:1"}, "client_secret"),
    (dict(), {"IDENTITY_ENDPOINT": "https://127.0.0.1:1/msi"}, "managed_identity"),
    (dict(), {"MSI_ENDPOINT": "https://127.0.0.1:1/msi"}, "managed_identity"),
    (dict(managed_identity_client_id=MI_CLIENT_ID), {}, "managed_identity"),
])
def test_auto_selection_order(pki, given, environ, expected):
    auth = select_auth(_params(**given), transport_for(pki), run_command=run_command, which=no_az, environ=environ)
    assert auth.method == expected


def test_auto_uses_the_azure_cli_when_az_is_on_path(pki, fake_az):
    auth = select_auth(_params(tenant_id=TENANT_ID), transport_for(pki), run_command=run_command, environ={})
    assert auth.method == "azure_cli"
    assert auth.az_path == fake_az.path
    assert auth.tenant_id == TENANT_ID


def test_auto_without_credentials_lists_every_way_to_supply_them(pki):
    with pytest.raises(AuthError) as info:
        select_auth(_params(), transport_for(pki), run_command=run_command, which=no_az, environ={})
    message = str(info.value)
    assert info.value.code == "no_credentials"
    for needle in ("access_token", "client_certificate_path", "client_certificate_password", "client_secret", "tenant_id", "client_id",
                   "AZURE_TENANT_ID", "AZURE_TENANT", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_SECRET",
                   "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "auth_method=managed_identity",
                   "managed_identity_client_id", "IDENTITY_ENDPOINT", "MSI_ENDPOINT", "auth_method=azure_cli", "az login",
                   "AZURE_CLOUD_ENVIRONMENT", "No Azure subscription is needed"):
        assert needle in message, needle


def test_auto_with_client_id_but_no_secret_says_so(pki):
    with pytest.raises(AuthError) as info:
        select_auth(_params(tenant_id="t", client_id="c"), transport_for(pki), which=no_az, environ={})
    assert str(info.value).startswith("no_credentials: tenant_id and client_id are set but neither client_secret")


@pytest.mark.parametrize("given, missing", [
    (dict(client_secret="s" * 30, client_id="c"), "missing: tenant_id"),
    (dict(client_secret="s" * 30, tenant_id="t"), "missing: client_id"),
    (dict(auth_method="client_secret", tenant_id="t", client_id="c"), "missing: client_secret"),
    (dict(auth_method="certificate", tenant_id="t"), "missing: client_id, client_certificate_path"),
    (dict(auth_method="access_token"), "needs the access_token option"),
    (dict(auth_method="azure_cli"), "needs the Azure CLI ('az') on PATH"),
])
def test_incomplete_credentials_name_what_is_missing(pki, given, missing):
    with pytest.raises(AuthError) as info:
        select_auth(_params(**given), transport_for(pki), which=no_az, environ={})
    assert missing in str(info.value)
    assert "s" * 30 not in str(info.value)


# -- clouds --------------------------------------------------------------------------------------

def test_cloud_defaults_and_environment_mapping():
    assert resolve_cloud({}, environ={}) == dict(_clouds.CLOUDS["public"], name="public")
    gov = resolve_cloud({}, environ={"AZURE_CLOUD_ENVIRONMENT": "AzureUSGovernment"})
    assert gov["graph_endpoint"] == "https://graph.microsoft.us"
    assert gov["authority_host"] == "https://login.microsoftonline.us"
    assert gov["non_gallery_template_id"] == "4602d0b4-76bb-404b-bca9-2652e1a39c6d"
    china = resolve_cloud({}, environ={"AZURE_CLOUD_ENVIRONMENT": "AzureChinaCloud"})
    assert china["non_gallery_template_id"] == "5a532e38-1581-4918-9658-008dc27c1d68"
    assert china["graph_endpoint"] == "https://microsoftgraph.chinacloudapi.cn"
    assert resolve_cloud({}, environ={"AZURE_CLOUD_ENVIRONMENT": "AzureCloud"})["non_gallery_template_id"] == (
        "8adf8e6e-67b2-4cf2-a259-e3dc5476c621")
    # the option beats the environment
    assert resolve_cloud({"cloud": "public"}, environ={"AZURE_CLOUD_ENVIRONMENT": "AzureChinaCloud"})["name"] == "public"
    with pytest.raises(ValueError) as info:
        resolve_cloud({}, environ={"AZURE_CLOUD_ENVIRONMENT": "AzureGermanCloud"})
    assert "AzureUSGovernment" in str(info.value)


def test_endpoint_overrides_are_normalised():
    cloud = resolve_cloud({"cloud": "usgovernment", "graph_endpoint": "https://127.0.0.1:8443/v1.0/",
                           "authority_host": "127.0.0.1:8443/"}, environ={})
    assert cloud["graph_endpoint"] == "https://127.0.0.1:8443"
    assert cloud["authority_host"] == "https://127.0.0.1:8443"
    assert cloud["non_gallery_template_id"] == "4602d0b4-76bb-404b-bca9-2652e1a39c6d"
    with pytest.raises(ValueError):
        resolve_cloud({"authority_host": "http://127.0.0.1:8080"}, environ={})
    with pytest.raises(AuthError) as info:
        select_auth(_params(graph_endpoint="ftp://x", access_token="t" * 30), None, environ={})
    assert "graph_endpoint must be an https:// URL" in str(info.value)


def test_instance_discovery_only_for_microsoft_hosts(pki):
    public = ClientSecretAuth("t", "c", "s" * 30, "https://login.microsoftonline.com", "https://graph.microsoft.com", transport_for(pki))
    assert public.instance_discovery is None
    assert public.authority == "https://login.microsoftonline.com/t"
    emulator = ClientSecretAuth("t", "c", "s" * 30, "https://127.0.0.1:8443", "https://127.0.0.1:8443", transport_for(pki))
    assert emulator.instance_discovery is False


# -- token cache --------------------------------------------------------------------------------

def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_cache_file_and_directory_modes_and_content(fake_ms, pki, tmp_path):
    cache_dir = str(tmp_path / "nested" / "cache")
    auth = secret_auth(fake_ms, pki, cache_dir=cache_dir)
    token = auth.get_token()
    assert _mode(cache_dir) == 0o700
    assert _mode(auth.cache.path) == 0o600
    with open(auth.cache.path) as handle:
        content = handle.read()
    assert CLIENT_SECRET not in content
    assert token in content  # the access token is what is cached
    # Keyed by authority, tenant, client, resource and a one-way digest of the credential (a changed secret misses).
    assert auth.key_parts[:4] == [fake_ms.base_url, TENANT_ID, CLIENT_ID, fake_ms.graph_endpoint]
    assert CLIENT_SECRET not in "".join(auth.key_parts)
    assert os.path.basename(auth.cache.path) == hashlib.sha256("\n".join(auth.key_parts).encode()).hexdigest() + ".json"
    assert secret_auth(fake_ms, pki, cache_dir=cache_dir, secret="another-secret").cache.path != auth.cache.path
    assert [name for name in os.listdir(cache_dir) if name.endswith(".tmp")] == []


def test_certificate_cache_holds_no_key_material(fake_ms, pki, tmp_path):
    auth = ClientCertificateAuth(TENANT_ID, CLIENT_ID, pki.client_encrypted_pem_path, fake_ms.base_url, fake_ms.graph_endpoint,
                                 transport_for(pki), certificate_password=pki.client_password, cache_dir=str(tmp_path / "c"))
    auth.get_token()
    with open(auth.cache.path) as handle:
        content = handle.read()
    assert "PRIVATE KEY" not in content and pki.client_password not in content


def test_default_cache_dir_follows_xdg(tmp_path):
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "entrascim-cloudflare")
    assert default_cache_dir({}).endswith(os.path.join(".cache", "entrascim-cloudflare"))


_CHILD = r"""
import hashlib, json, os, sys
from ansible_collections.entrascim.cloudflare.plugins.module_utils._transport import Transport
from ansible_collections.entrascim.cloudflare.plugins.module_utils._auth import ClientSecretAuth
e = os.environ
auth = ClientSecretAuth(e["T_TENANT"], e["T_CLIENT"], e["T_SECRET"], e["T_AUTHORITY"], e["T_GRAPH"],
                        Transport(ca_path=e["T_CA"]), cache_dir=e["T_CACHE"])
token = auth.get_token()
print(json.dumps({"token_sha": hashlib.sha256(token.encode()).hexdigest(), "msal_imported": "msal" in sys.modules,
                  "token_requests": auth.token_requests, "pid": os.getpid()}))
"""


def _child_env(server, pki, cache_dir):
    return {"T_TENANT": TENANT_ID, "T_CLIENT": CLIENT_ID, "T_SECRET": CLIENT_SECRET, "T_AUTHORITY": server.base_url,
            "T_GRAPH": server.graph_endpoint, "T_CA": pki.ca_path, "T_CACHE": cache_dir}


def test_token_cache_is_shared_by_two_separate_processes(fake_ms, pki, tmp_path):
    env = _child_env(fake_ms, pki, str(tmp_path / "shared-cache"))
    first = run_python(_CHILD, env)
    second = run_python(_CHILD, env)
    assert first["pid"] != second["pid"]
    assert first["token_sha"] == second["token_sha"]
    assert fake_ms.token_requests == 1
    assert (first["token_requests"], second["token_requests"]) == (1, 0)
    assert first["msal_imported"] is True
    # a valid cached token is read without importing msal at all
    assert second["msal_imported"] is False


def test_concurrent_processes_ask_for_one_token(fake_ms, pki, tmp_path):
    fake_ms.token_delay = 0.5  # keep the first fetch in flight while the others start
    env = dict(os.environ, PYTHONPATH=collections_root(), **_child_env(fake_ms, pki, str(tmp_path / "busy-cache")))
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for dummy in range(4)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-1000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len(set(r["token_sha"] for r in results)) == 1
    assert fake_ms.token_requests == 1


def test_token_cache_off_asks_every_time(fake_ms, pki):
    params = _params(tenant_id=TENANT_ID, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, graph_endpoint=fake_ms.graph_endpoint,
                     authority_host=fake_ms.base_url, token_cache=False)
    for dummy in range(2):
        auth = select_auth(params, transport_for(pki), which=no_az)
        assert auth.cache is None
        auth.get_token()
    assert fake_ms.token_requests == 2


def test_cache_in_an_insecure_directory_is_skipped_with_a_warning(fake_ms, pki, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(str(shared), 0o755)
    auth = secret_auth(fake_ms, pki, cache_dir=str(shared))
    assert auth.get_token() in fake_ms.issued
    assert any("accessible by other users" in w and "chmod 700" in w for w in auth.warnings)
    assert os.listdir(str(shared)) == []
    assert _mode(str(shared)) == 0o755  # never chmod a directory we did not create


def test_cache_file_with_loose_mode_is_ignored(fake_ms, pki, tmp_path):
    cache_dir = str(tmp_path / "cache")
    first = secret_auth(fake_ms, pki, cache_dir=cache_dir)
    first.get_token()
    os.chmod(first.cache.path, 0o644)
    second = secret_auth(fake_ms, pki, cache_dir=cache_dir)
    second.get_token()
    assert fake_ms.token_requests == 2
    assert _mode(second.cache.path) == 0o600  # rewritten atomically as a private file


def test_tokens_about_to_expire_are_not_reused(fake_ms, pki, tmp_path):
    cache_dir = str(tmp_path / "cache")
    first = secret_auth(fake_ms, pki, cache_dir=cache_dir)
    token = first.get_token()
    assert first.key_parts[:4] == [fake_ms.base_url, TENANT_ID, CLIENT_ID, fake_ms.graph_endpoint]
    cache = TokenCacheFile(cache_dir, first.key_parts)
    assert cache.path == first.cache.path
    targets = [fake_ms.graph_endpoint + "/.default"]
    assert cache.find_token(CLIENT_ID, targets)[0] == token
    assert cache.find_token(CLIENT_ID, targets, now=time.time() + 3599 - 200) is None
    assert cache.find_token("another-client", targets) is None
    assert cache.find_token(CLIENT_ID, ["https://other.example/.default"]) is None


def test_invalidate_drops_the_rejected_token_from_the_cache(fake_ms, pki, tmp_path):
    cache_dir = str(tmp_path / "cache")
    auth = secret_auth(fake_ms, pki, cache_dir=cache_dir)
    token = auth.get_token()
    assert auth.invalidate(token) is True
    with open(auth.cache.path) as handle:
        assert token not in handle.read()
    fresh = auth.get_token()
    assert fresh != token
    assert fake_ms.token_requests == 2


@pytest.mark.parametrize("content", [b'{"AccessToken": ["a", "b"]}', b'{"AccessToken": {"k": "not a dict"}}', b'["a"]',
                                     b'{"Account": 5, "AccessToken": {}}'])
def test_a_cache_file_of_the_wrong_shape_is_treated_as_corrupt(fake_ms, pki, tmp_path, content):
    cache_dir = str(tmp_path / "cache")
    auth = secret_auth(fake_ms, pki, cache_dir=cache_dir)
    auth.cache.prepare()
    fd = os.open(auth.cache.path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    assert auth.get_token() in fake_ms.issued
    with open(auth.cache.path) as handle:
        assert isinstance(json.load(handle)["AccessToken"], dict)
    # and the next process reads the repaired file
    assert secret_auth(fake_ms, pki, cache_dir=cache_dir).get_token() in fake_ms.issued
    assert fake_ms.token_requests == 1


def test_azure_cli_that_hangs_is_stopped_at_the_timeout(fake_az, monkeypatch):
    monkeypatch.setenv("FAKE_AZ_HANG", "30")

    def runner(args, timeout):
        return run_with_deadline(run_command, shutil.which, args, timeout)

    auth = AzureCliAuth("https://graph.microsoft.com", runner, az_path=fake_az.path, timeout=1)
    started = time.monotonic()
    with pytest.raises(AuthError) as info:
        auth.get_token()
    assert time.monotonic() - started < 10
    assert info.value.code == "Timeout" and "within timeout=1 seconds" in str(info.value)


def test_corrupt_cache_file_is_replaced(fake_ms, pki, tmp_path):
    cache_dir = str(tmp_path / "cache")
    auth = secret_auth(fake_ms, pki, cache_dir=cache_dir)
    auth.cache.prepare()
    fd = os.open(auth.cache.path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"{not json")
    os.close(fd)
    assert auth.get_token() in fake_ms.issued
    with open(auth.cache.path) as handle:
        assert json.load(handle)["AccessToken"]

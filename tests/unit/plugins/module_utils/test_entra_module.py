# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""EntraModule (the module glue) run in-process as a real AnsibleModule, and the doc fragment/spec agreement."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import os

import pytest
import yaml

from ansible.module_utils.testing import patch_module_args

from ansible_collections.entrascim.cloudflare.plugins.doc_fragments.entra import ModuleDocFragment
from ansible_collections.entrascim.cloudflare.plugins.module_utils._consistency import retry_replication
from ansible_collections.entrascim.cloudflare.plugins.module_utils._entra_module import (
    ENTRA_ARGUMENT_SPEC, EntraModule, entra_argument_spec,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import error_step
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import CLIENT_ID, CLIENT_SECRET, SECRET_VALUES, TENANT_ID
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_servers import Reply, graph_error


def run_module(capfd, args, fn, **kwargs):
    """Run ``EntraModule(**kwargs).run(fn)`` with ``args``; return (exit code, result JSON). Checks no secret is printed."""
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            EntraModule(**kwargs).run(fn)
    out, err = capfd.readouterr()
    assert not any(s and (s in out or s in err) for s in list(SECRET_VALUES)), "a secret value appeared in the module output"
    return info.value.code, json.loads(out)


def connection_args(server, pki, **extra):
    args = dict(graph_endpoint=server.graph_endpoint, authority_host=server.base_url, ca_path=pki.ca_path)
    args.update(extra)
    return args


def secret_args(server, pki, **extra):
    args = dict(tenant_id=TENANT_ID, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    args.update(extra)
    return connection_args(server, pki, **args)


def read_org(entra):
    with error_step("read organization"):
        org = entra.client.get("organization")
    return {"organization": org, "auth_method": entra.auth.method, "template": entra.cloud["non_gallery_template_id"],
            "check_mode": entra.check_mode}


# -- doc fragment == argument spec -------------------------------------------------------------

def test_doc_fragment_matches_the_argument_spec_exactly():
    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert sorted(options) == sorted(ENTRA_ARGUMENT_SPEC)
    for name, spec in ENTRA_ARGUMENT_SPEC.items():
        doc = options[name]
        assert doc["type"] == spec["type"], name
        assert doc.get("default") == spec.get("default"), name
        assert doc.get("choices") == spec.get("choices"), name
        assert doc.get("required", False) == spec.get("required", False), name
        assert doc["description"], name
        fallback = spec.get("fallback")
        for variable in (fallback[1] if fallback else []):
            assert "E(%s)" % variable in " ".join(doc["description"]), (name, variable)
    for secret in ("client_secret", "client_certificate_password", "access_token"):
        assert ENTRA_ARGUMENT_SPEC[secret]["no_log"] is True


def test_module_options_are_merged_without_touching_the_shared_spec():
    spec = entra_argument_spec(display_name=dict(type="str", required=True))
    assert spec["display_name"] == dict(type="str", required=True)
    assert "display_name" not in ENTRA_ARGUMENT_SPEC
    spec["tenant_id"]["type"] = "raw"
    assert ENTRA_ARGUMENT_SPEC["tenant_id"]["type"] == "str"


# -- running ------------------------------------------------------------------------------------

def test_run_exits_with_the_result(capfd, fake_ms, pki):
    fake_ms.add("GET", "/v1.0/organization", Reply(200, {"value": [{"id": TENANT_ID}]}))
    code, result = run_module(capfd, secret_args(fake_ms, pki, _ansible_check_mode=True), read_org)
    assert code == 0
    assert result["changed"] is False
    assert result["organization"] == {"value": [{"id": TENANT_ID}]}
    assert result["auth_method"] == "client_secret"
    assert result["template"] == "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
    assert result["check_mode"] is True


def test_environment_fallbacks_of_a_stock_awx_azure_credential(capfd, fake_ms, pki, monkeypatch, tmp_path):
    monkeypatch.setenv("AZURE_TENANT", TENANT_ID)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("AZURE_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", fake_ms.base_url)
    monkeypatch.setenv("AZURE_CLOUD_ENVIRONMENT", "AzureUSGovernment")
    fake_ms.add("GET", "/v1.0/organization", Reply(200, {"value": []}))
    args = dict(graph_endpoint=fake_ms.graph_endpoint, ca_path=pki.ca_path, token_cache_path=str(tmp_path / "cache"))
    for dummy in range(2):
        code, result = run_module(capfd, args, read_org)
        assert code == 0
        assert result["auth_method"] == "client_secret"
        assert result["template"] == "4602d0b4-76bb-404b-bca9-2652e1a39c6d"
    # two module runs, one token request: the second run used the on-disk cache
    assert fake_ms.token_requests == 1
    assert oct(os.stat(str(tmp_path / "cache")).st_mode & 0o777) == "0o700"


def test_graph_errors_become_fail_json_with_the_step_and_permission(capfd, fake_ms, pki):
    fake_ms.add("POST", "/v1.0/servicePrincipals/sp-1/synchronization/jobs",
                graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.", request_id="rid-job"))

    def create_job(entra):
        with error_step("create synchronization job"):
            entra.client.post("servicePrincipals/sp-1/synchronization/jobs", {"templateId": "scim"})
        return {"changed": True}

    code, result = run_module(capfd, secret_args(fake_ms, pki), create_job)
    assert code == 1
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to create synchronization job: Authorization_RequestDenied: Insufficient privileges to "
                                    "complete the operation. (request-id rid-job) This step needs the Microsoft Graph application "
                                    "permission Application.ReadWrite.OwnedBy (or a higher one: Synchronization.ReadWrite.All)")
    assert (result["status"], result["error_code"], result["request_id"]) == (403, "Authorization_RequestDenied", "rid-job")


def test_consistency_timeout_becomes_fail_json(capfd, fake_ms, pki, fake_clock):
    fake_ms.add("GET", "/v1.0/servicePrincipals/sp-1/synchronization/templates",
                graph_error(404, "Request_ResourceNotFound", "Resource 'sp-1' does not exist.", request_id="rid-t"))

    def templates(entra):
        with error_step("list synchronization templates"):
            retry_replication(lambda: entra.client.get("servicePrincipals/sp-1/synchronization/templates"), timeout=20,
                              sleep=entra.sleep, clock=entra.clock)
        return {}

    code, result = run_module(capfd, secret_args(fake_ms, pki), templates, sleep=fake_clock.sleep, clock=fake_clock.clock)
    assert code == 1
    assert result["msg"].startswith("Failed to list synchronization templates: Request_ResourceNotFound: the call still failed after 15 s")
    assert result["request_id"] == "rid-t" and result["status"] == 404


def test_wrong_secret_fails_with_the_aadsts_text(capfd, fake_ms, pki):
    wrong = "Wrong-Module-Secret-Value-5555555555"
    SECRET_VALUES.add(wrong)
    code, result = run_module(capfd, secret_args(fake_ms, pki, client_secret=wrong), read_org)
    assert code == 1
    assert result["msg"].startswith("Failed to read organization: could not get a Microsoft Graph access token: invalid_client: "
                                    "Token request failed: AADSTS7000215: Invalid client secret provided.")
    assert result["error_code"] == "invalid_client"


def test_no_credentials_lists_every_way(capfd, fake_ms, pki, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no az anywhere
    code, result = run_module(capfd, connection_args(fake_ms, pki), read_org)
    assert code == 1
    assert "No Microsoft Graph credentials were found" in result["msg"]
    assert "AZURE_CLIENT_SECRET" in result["msg"] and "az login" in result["msg"]
    assert result["error_code"] == "no_credentials"
    assert fake_ms.requests == []


def test_azure_cli_through_run_command(capfd, fake_ms, pki, fake_az):
    fake_ms.require_auth = False
    fake_ms.add("GET", "/v1.0/organization", Reply(200, {"value": []}))
    code, result = run_module(capfd, connection_args(fake_ms, pki, tenant_id=TENANT_ID), read_org)
    assert code == 0 and result["auth_method"] == "azure_cli"
    assert fake_az.calls() == [["account", "get-access-token", "--resource", fake_ms.graph_endpoint, "--tenant", TENANT_ID,
                                "--output", "json"]]
    assert fake_ms.recorded("GET", "/v1.0/organization")[0].headers["authorization"] == "Bearer " + fake_az.token


def test_token_cache_warnings_are_shown(capfd, fake_ms, pki, tmp_path):
    shared = tmp_path / "world-readable"
    shared.mkdir()
    os.chmod(str(shared), 0o755)
    fake_ms.add("GET", "/v1.0/organization", Reply(200, {"value": []}))
    code, result = run_module(capfd, secret_args(fake_ms, pki, token_cache_path=str(shared)), read_org)
    assert code == 0
    # ansible-core 2.19+ returns structured warnings ({"event": {"msg": ...}}), older versions strings
    assert any("Token cache disabled" in json.dumps(w) for w in result["warnings"]), result


def test_bad_cloud_environment_fails_before_any_request(capfd, fake_ms, pki, monkeypatch):
    monkeypatch.setenv("AZURE_CLOUD_ENVIRONMENT", "AzureStackCloud")
    code, result = run_module(capfd, secret_args(fake_ms, pki), read_org)
    assert code == 1
    assert result["msg"].startswith("Invalid Microsoft Graph connection options: AZURE_CLOUD_ENVIRONMENT=AzureStackCloud is not supported")
    assert fake_ms.requests == []


def test_http_graph_endpoint_is_refused(capfd, fake_ms, pki):
    code, result = run_module(capfd, secret_args(fake_ms, pki, graph_endpoint="http://127.0.0.1:9"), read_org)
    assert code == 1
    assert "graph_endpoint must be an https:// URL" in result["msg"]

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entra_sync_secrets module end to end with an in-memory Graph: never a token in the output, validate before write."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import importlib.util
import json
import os

import pytest
import yaml

from ansible.module_utils.testing import patch_module_args

from ansible_collections.entrascim.cloudflare.plugins.module_utils import _entra_module
from ansible_collections.entrascim.cloudflare.plugins.modules import entra_sync_secrets

SECRET = "graph-client-secret-never-printed-4Kd8"


def load_fakes():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils", "test_sync.py")
    spec = importlib.util.spec_from_file_location("entra_sync_fakes", path)
    fakes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fakes)
    return fakes


FAKES = load_fakes()
TOKENS = (FAKES.TOKEN, FAKES.NEW_TOKEN, "rejected-token-value-000")


@pytest.fixture
def graph(monkeypatch):
    fake = FAKES.FakeSyncGraph()
    clock = FAKES.Clock()

    def build(self):
        self._client = fake
        self.sleep = clock.sleep
        self.clock = clock

    monkeypatch.setattr(_entra_module.EntraModule, "_build_client", build)
    fake.add_job(job_id="scim.job1")
    return fake


def run_module(capsys, **args):
    args.setdefault("tenant_id", "00000000-0000-4000-8000-0000000000aa")
    args.setdefault("client_id", "00000000-0000-4000-8000-0000000000bb")
    args.setdefault("client_secret", SECRET)
    args.setdefault("service_principal_id", FAKES.SP_ID)
    args.setdefault("base_address", FAKES.BASE)
    args.setdefault("secret_token", FAKES.TOKEN)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            entra_sync_secrets.main()
    out = capsys.readouterr().out
    assert SECRET not in out
    for token in TOKENS:
        assert token not in out, "a SCIM token appeared in the module output"
    return json.loads(out)


def test_first_run_validates_and_saves_with_diff(graph, capsys):
    result = run_module(capsys, notification_email="ops@example.com", _ansible_diff=True)
    assert result["changed"] is True and result["validated"] is True and result["job_id"] == "scim.job1"
    assert result["changed_keys"] == ["BaseAddress", "SecretToken", "SyncAll", "SyncNotificationSettings"]
    assert graph.secrets["SecretToken"] == FAKES.TOKEN
    assert result["diff"]["before"]["secret_token_saved"] is False and result["diff"]["after"]["secret_token_saved"] is True
    assert result["diff"]["after"]["secret_token_fingerprint"] == FAKES.token_fingerprint(FAKES.SP_ID, FAKES.TOKEN)
    assert result["settings"] == {"base_address": FAKES.BASE, "sync_all": False, "notification_email": "ops@example.com",
                                  "notifications_enabled": True, "secret_token_saved": True}


def test_same_token_is_unchanged_and_a_new_one_is_written(graph, capsys):
    run_module(capsys)
    graph.calls[:] = []
    result = run_module(capsys)
    assert result["changed"] is False and result["changed_keys"] == [] and "diff" not in result
    assert graph.writes == []
    result = run_module(capsys, secret_token=FAKES.NEW_TOKEN)
    assert result["changed"] is True and result["changed_keys"] == ["SecretToken"]
    assert graph.secrets["SecretToken"] == FAKES.NEW_TOKEN


def test_rejected_token_fails_and_keeps_the_saved_one(graph, capsys):
    run_module(capsys)
    saved, notes = dict(graph.secrets), graph.sp["notes"]
    result = run_module(capsys, secret_token="rejected-token-value-000")
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to validate credentials with the SCIM endpoint: CredentialValidationUnavailable:")
    assert graph.secrets == saved and graph.sp["notes"] == notes


def test_check_mode_writes_nothing(graph, capsys):
    result = run_module(capsys, _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True and result["validated"] is True
    assert graph.writes == [] and graph.secrets == {}


def test_bad_base_address_fails_before_any_call(graph, capsys):
    result = run_module(capsys, base_address="http://api.cloudflare.com/client/v4/accounts/x/scim/v2")
    assert result["failed"] is True and "must be an https URL" in result["msg"]
    assert graph.calls == []


def test_documentation_attributes():
    doc = yaml.safe_load(entra_sync_secrets.DOCUMENTATION)
    assert doc["attributes"]["check_mode"]["support"] == "full"
    assert doc["attributes"]["diff_mode"]["support"] == "full"
    assert doc["options"]["secret_token"]["type"] == "str"

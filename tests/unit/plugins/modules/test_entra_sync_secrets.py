# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entra_sync_secrets module end to end with an in-memory Graph: never a token in the output, validate before write."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import pytest
import yaml

from ansible_collections.entrascim.cloudflare.plugins.module_utils._secrets import token_fingerprint
from ansible_collections.entrascim.cloudflare.plugins.modules import entra_sync_secrets
from ansible_collections.entrascim.cloudflare.tests.unit.utils import fake_sync
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import FakeClock
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import MODULE_ARGS, use_fake_graph
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import run_module as run_main

TOKENS = (fake_sync.TOKEN, fake_sync.NEW_TOKEN, "rejected-token-value-000")


@pytest.fixture
def graph(monkeypatch):
    fake = use_fake_graph(monkeypatch, fake_sync.FakeSyncGraph(), FakeClock())
    fake.add_job(job_id="scim.job1")
    return fake


def run_module(capsys, **args):
    defaults = dict(MODULE_ARGS, service_principal_id=fake_sync.SP_ID, base_address=fake_sync.BASE, secret_token=fake_sync.TOKEN)
    return run_main(entra_sync_secrets.main, capsys, args, defaults=defaults, never=TOKENS)


def test_first_run_validates_and_saves_with_diff(graph, capsys):
    result = run_module(capsys, notification_email="ops@example.com", _ansible_diff=True)
    assert result["changed"] is True and result["validated"] is True and result["job_id"] == "scim.job1"
    assert result["changed_keys"] == ["BaseAddress", "SecretToken", "SyncAll", "SyncNotificationSettings"]
    assert graph.secrets["SecretToken"] == fake_sync.TOKEN
    assert result["diff"]["before"]["secret_token_saved"] is False and result["diff"]["after"]["secret_token_saved"] is True
    assert result["diff"]["after"]["secret_token_fingerprint"] == token_fingerprint(fake_sync.SP_ID, fake_sync.TOKEN)
    assert result["settings"] == {"base_address": fake_sync.BASE, "sync_all": False, "notification_email": "ops@example.com",
                                  "notifications_enabled": True, "secret_token_saved": True}


def test_same_token_is_unchanged_and_a_new_one_is_written(graph, capsys):
    run_module(capsys)
    graph.calls[:] = []
    result = run_module(capsys)
    assert result["changed"] is False and result["changed_keys"] == [] and "diff" not in result
    assert graph.writes == []
    result = run_module(capsys, secret_token=fake_sync.NEW_TOKEN)
    assert result["changed"] is True and result["changed_keys"] == ["SecretToken"]
    assert graph.secrets["SecretToken"] == fake_sync.NEW_TOKEN


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


def test_documented_options():
    doc = yaml.safe_load(entra_sync_secrets.DOCUMENTATION)
    assert doc["options"]["secret_token"]["type"] == "str"

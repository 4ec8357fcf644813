# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the role's provisioning filters (plugins/filter/provisioning.py)."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import pytest

from ansible_collections.entrascim.cloudflare.plugins.filter import provisioning
from ansible_collections.entrascim.cloudflare.plugins.filter.provisioning import (
    FilterModule, scim_cycle_status, scim_job_actions,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils import _job_info, _sync


def raw_job(schedule="Active", code="Active", ended=None, quarantine=None):
    """A Graph synchronizationJob."""
    execution = {"state": "Succeeded", "timeBegan": "2026-01-01T10:00:00Z", "timeEnded": ended} if ended is not None else None
    return {"id": "scim.1", "templateId": "scim", "schedule": {"state": schedule, "interval": "PT40M"},
            "status": {"code": code, "lastExecution": execution, "quarantine": quarantine}}


def job(**raw):
    """A job as entra_sync_job returns it (``job``)."""
    return _job_info.job_result(raw_job(**raw))


QUARANTINE = {"reason": "EncounteredQuarantineException", "error": {"code": "CredentialError", "message": "401"}}


def test_the_filters_are_registered():
    assert FilterModule().filters() == {"scim_job_actions": scim_job_actions, "scim_cycle_status": scim_cycle_status}


@pytest.mark.parametrize("current, state, recover, actions", [
    (job(), "started", False, []),
    (job(code="NotRun"), "started", False, []),
    (job(schedule="Disabled", code="NotConfigured"), "started", False, ["start"]),
    (job(schedule="Paused", code="Paused"), "started", False, ["start"]),
    (job(), "paused", False, ["pause"]),
    (job(schedule="Paused", code="Paused"), "paused", False, []),
    (job(schedule="Disabled", code="NotConfigured"), "paused", False, []),
    (job(code="Quarantine", quarantine=QUARANTINE), "started", False, []),
    (job(code="Quarantine", quarantine=QUARANTINE), "started", True, ["restart"]),
    (job(code="Quarantine", quarantine=QUARANTINE), "paused", True, ["pause"]),
    (None, "started", False, ["create", "start"]),
    ({}, "present", False, ["create"]),
    (job(), "absent", False, ["delete"]),
])
def test_scim_job_actions_is_plan_job(current, state, recover, actions):
    assert scim_job_actions(current, state, recover_quarantine=recover) == actions
    assert actions == _sync.plan_job(state, current or None, recover)[0]


def test_scim_job_actions_is_the_decision_of_sync(monkeypatch):
    monkeypatch.setattr(_sync, "plan_job", lambda state, current, recover_quarantine=False: ([state, current, recover_quarantine], []))
    assert scim_job_actions({}, "paused", recover_quarantine=1) == ["paused", None, True]


def test_sync_is_imported_when_scim_job_actions_runs_not_with_the_file():
    # ansible-core imports every filter file of the collection in each worker that uses any of its filters.
    with open(provisioning.__file__) as handle:
        source = handle.read()
    assert "\nfrom ansible_collections" not in source and "\nimport ansible_collections" not in source


def test_scim_job_actions_refuses_an_unknown_state():
    with pytest.raises(ValueError):
        scim_job_actions(job(), "on")


def info(*jobs):
    """An entra_sync_job_info result: each job with its loop-friendly predicates (``quarantined``, ``last_cycle``)."""
    return {"changed": False, "jobs": [_job_info.job_info(raw_job(**item)) for item in jobs]}


@pytest.mark.parametrize("result, status", [
    (info(dict(code="NotRun")), "running"),
    (info(dict(ended="0001-01-01T00:00:00Z")), "running"),
    (info(dict(ended="2026-01-01T10:05:00Z")), "finished"),
    (info(dict(code="Quarantine", quarantine=QUARANTINE)), "quarantined"),
    (info(dict(code="Quarantine", quarantine=QUARANTINE, ended="2026-01-01T10:05:00Z")), "quarantined"),
    (info(dict(ended="2026-01-01T10:05:00Z"), dict(code="Quarantine")), "finished"),
    (info(), "no job"),
    ({"failed": True, "msg": "Failed to read the synchronization jobs: ..."}, "no job"),
    ({"skipped": True}, "no job"),
    (None, "no job"),
])
def test_scim_cycle_status(result, status):
    assert scim_cycle_status(result) == status

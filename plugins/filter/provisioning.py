# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the cloudflare_scim role's provisioning steps: ``scim_job_actions`` and ``scim_cycle_status``.

``scim_job_actions`` is module_utils/_sync.py's ``plan_job``, the decision entra_sync_job makes, so the role includes
tasks/provisioning.yml exactly when that module has something to do. ``scim_cycle_status`` reads what
entra_sync_job_info returns (``jobs[0].quarantined`` and ``jobs[0].last_cycle.finished``, see ``_job_info.job_info``).
Their documentation is in scim_job_actions.yml and scim_cycle_status.yml next to this file.

ansible-core imports every filter file of the collection in each worker process that uses any filter of it
(docs/performance.md), so _sync.py is imported only when ``scim_job_actions`` runs, not with this file.
"""

from collections.abc import Mapping


def scim_job_actions(job, state, recover_quarantine=False):
    """The Graph actions entra_sync_job takes to bring ``job`` (its ``job`` return value, None for no job) to ``state``."""
    from ansible_collections.entrascim.cloudflare.plugins.module_utils._sync import plan_job
    return plan_job(state, job or None, recover_quarantine=bool(recover_quarantine))[0]


def scim_cycle_status(result):
    """Where the first provisioning cycle stands in an entra_sync_job_info result: ``no job`` (also for a failed read,
    which returns no jobs), ``quarantined``, ``finished`` or ``running``."""
    jobs = result.get("jobs") if isinstance(result, Mapping) else None
    if not jobs:
        return "no job"
    job = jobs[0]
    if job.get("quarantined"):
        return "quarantined"
    if (job.get("last_cycle") or {}).get("finished"):
        return "finished"
    return "running"


class FilterModule(object):
    """The cloudflare_scim role's provisioning filters."""

    def filters(self):
        return {
            "scim_job_actions": scim_job_actions,
            "scim_cycle_status": scim_cycle_status,
        }

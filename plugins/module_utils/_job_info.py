# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a synchronization job reports: its state in the module result's shape, its provisioning-log failures, and
entra_sync_job_info.

Graph behaviour relied upon (microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/resources/
synchronization-synchronizationstatus.md, synchronization-synchronizationjob-get.md, provisioningobjectsummary-list.md,
concepts/throttling-limits.md): ``status.code`` is NotConfigured/NotRun/Active/Paused/Quarantine, ``lastExecution``
and ``lastSuccessfulExecution`` carry the cycle times (``0001-01-01`` meaning never), and the provisioning logs
(``/auditLogs/provisioning``) answer at most 5 requests per 10 seconds per app and tenant.
"""

import time

from ._errors import error_step
from ._graph import odata_quote
from ._service_principals import find_service_principal, jobs_path, marker_of, read_service_principal

_NEVER = "0001-01-01"  # Graph's "never" DateTimeOffset
LOG_PAGE_SIZE = 50
LOG_MAX_PAGES = 20
REPORTS_LIMIT = 5  # requests ...
REPORTS_WINDOW = 10.0  # ... per 10 seconds (throttling-limits.md, "Identity and access reports")


# ---------------------------------------------------------------------------------------------- job result shape
def _time(value):
    """A DateTimeOffset, or None for Graph's "never" (0001-01-01T00:00:00Z) and missing values."""
    if not value or str(value).startswith(_NEVER):
        return None
    return value


def _error(raw):
    if not isinstance(raw, dict) or not (raw.get("code") or raw.get("message")):
        return None
    return {"code": raw.get("code"), "message": raw.get("message"), "tenant_actionable": raw.get("tenantActionable")}


def _execution(raw):
    if not isinstance(raw, dict):
        return None
    return {
        "state": raw.get("state"),
        "time_began": _time(raw.get("timeBegan")),
        "time_ended": _time(raw.get("timeEnded")),
        "count_imported": raw.get("countImported"),
        "count_exported": raw.get("countExported"),
        "count_escrowed": raw.get("countEscrowed"),
        "error": _error(raw.get("error")),
    }


def _quarantine(raw):
    if not isinstance(raw, dict):
        return None
    return {
        "reason": raw.get("reason"),
        "error": _error(raw.get("error")),
        "current_began": _time(raw.get("currentBegan")),
        "next_attempt": _time(raw.get("nextAttempt")),
        "series_began": _time(raw.get("seriesBegan")),
        "series_count": raw.get("seriesCount"),
    }


def job_result(raw):
    """The ``job`` return value (snake_case) of a Graph synchronizationJob, or None."""
    if raw is None:
        return None
    schedule = raw.get("schedule") or {}
    status = raw.get("status") or {}
    counts = [{"key": item.get("key"), "value": item.get("value")} for item in status.get("synchronizedEntryCountByType") or []
              if isinstance(item, dict)]
    return {
        "id": raw.get("id"),
        "template_id": raw.get("templateId"),
        "schedule": {"state": schedule.get("state"), "interval": schedule.get("interval")},
        "status": {
            "code": status.get("code"),
            "quarantine": _quarantine(status.get("quarantine")),
            "last_execution": _execution(status.get("lastExecution")),
            "count_successive_complete_failures": status.get("countSuccessiveCompleteFailures"),
            "escrows_pruned": status.get("escrowsPruned"),
            "steady_state_first_achieved_time": _time(status.get("steadyStateFirstAchievedTime")),
            "steady_state_last_achieved_time": _time(status.get("steadyStateLastAchievedTime")),
            "synchronized_entry_count_by_type": counts,
        },
    }


def provisioning_on(job):
    """Provisioning Status "On" in the portal: the schedule is Active (synchronizationSchedule ``state``,
    microsoft-graph-docs-contrib api-reference/v1.0/resources/synchronization-synchronizationschedule.md)."""
    return bool(job) and job["schedule"]["state"] == "Active"


def is_quarantined(job):
    return bool(job) and job["status"]["code"] == "Quarantine"


def is_healthy(job):
    """Running (schedule Active, status NotRun or Active) and the last cycle, if any, did not fail as a whole."""
    if not provisioning_on(job) or job["status"]["code"] not in ("NotRun", "Active"):
        return False
    execution = job["status"]["last_execution"]
    return not (execution and execution["state"] == "Failed")


def last_cycle(job):
    """A summary of the last provisioning cycle that is easy to test in ``until:`` loops (always a dict)."""
    execution = (job or {}).get("status", {}).get("last_execution") or {}
    finished = bool(execution.get("time_ended"))
    return {
        "ran": bool(execution),
        "finished": finished,
        "succeeded": finished and execution.get("state") == "Succeeded",
        "state": execution.get("state"),
        "time_began": execution.get("time_began"),
        "time_ended": execution.get("time_ended"),
        "count_exported": execution.get("count_exported"),
        "count_escrowed": execution.get("count_escrowed"),
        "error": execution.get("error"),
    }


def job_info(raw):
    """One entry of entra_sync_job_info's ``jobs``: the ``job`` shape plus the loop-friendly predicates."""
    job = job_result(raw)
    quarantine = job["status"]["quarantine"] or {}
    job.update(
        provisioning_on=provisioning_on(job),
        healthy=is_healthy(job),
        quarantined=is_quarantined(job),
        quarantine_reason=quarantine.get("reason") if is_quarantined(job) else None,
        last_cycle=last_cycle(job),
    )
    return job


def job_diff_view(job):
    """The part of a job a diff shows: what this module changes (existence, schedule, status code, quarantine)."""
    if not job:
        return {}
    quarantine = job["status"]["quarantine"]
    return {
        "id": job["id"],
        "template_id": job["template_id"],
        "schedule_state": job["schedule"]["state"],
        "status_code": job["status"]["code"],
        "quarantine_reason": quarantine["reason"] if quarantine else None,
    }


def describe_quarantine(job):
    """``reason (code: message)`` of a quarantined job, for messages."""
    quarantine = job["status"]["quarantine"] or {}
    error = quarantine.get("error") or {}
    text = quarantine.get("reason") or "unknown reason"
    if error.get("code") or error.get("message"):
        text += " (%s: %s)" % (error.get("code"), error.get("message"))
    return text


# ---------------------------------------------------------------------------------------------- provisioning logs
class RateLimiter:
    """At most ``limit`` calls per ``window`` seconds (sleeping before a call that would exceed it)."""

    def __init__(self, limit=REPORTS_LIMIT, window=REPORTS_WINDOW, sleep=time.sleep, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self.sleep = sleep
        self.clock = clock
        self.calls = []

    def acquire(self):
        now = self.clock()
        self.calls = [moment for moment in self.calls if now - moment < self.window]
        if len(self.calls) >= self.limit:
            wait = self.window - (now - self.calls[0])
            if wait > 0:
                self.sleep(wait)
            now = self.clock()
            self.calls = [moment for moment in self.calls if now - moment < self.window]
        self.calls.append(now)


def _identity(raw):
    if not isinstance(raw, dict):
        return None
    return {"id": raw.get("id"), "display_name": raw.get("displayName"), "identity_type": raw.get("identityType")}


def log_entry(raw):
    """One ``provisioning_failures`` item from a provisioningObjectSummary."""
    info = raw.get("provisioningStatusInfo") or {}
    error = info.get("errorInformation") or {}
    return {
        "id": raw.get("id"),
        "job_id": raw.get("jobId"),
        "cycle_id": raw.get("cycleId"),
        "time": raw.get("activityDateTime"),
        "action": raw.get("provisioningAction"),
        "status": info.get("status"),
        "error_code": error.get("errorCode"),
        "reason": error.get("reason"),
        "source_identity": _identity(raw.get("sourceIdentity")),
        "target_identity": _identity(raw.get("targetIdentity")),
    }


def provisioning_failures(client, job_id, count, limiter=None):
    """The ``count`` most recent failed provisioning-log entries of ``job_id``, newest first.

    Filters on the server (``jobId`` and ``provisioningStatusInfo/status``), pages through ``@odata.nextLink`` with at
    most 5 requests per 10 seconds (the reports API limit; the transport also honours 429 Retry-After).
    """
    if count <= 0:
        return []
    limiter = limiter or RateLimiter()
    params = {
        "$filter": "jobId eq %s and provisioningStatusInfo/status eq 'failure'" % odata_quote(job_id),
        "$orderby": "activityDateTime desc",
        "$top": min(count, LOG_PAGE_SIZE),
    }
    entries = []
    pages = 0
    with error_step("read provisioning logs"):
        limiter.acquire()
        for page in client.iter_pages("auditLogs/provisioning", params=params):
            pages += 1
            entries.extend(item for item in page.get("value") or []
                           if (item.get("provisioningStatusInfo") or {}).get("status") == "failure" and item.get("jobId") == job_id)
            if len(entries) >= count or pages >= LOG_MAX_PAGES or not page.get("@odata.nextLink"):
                break
            limiter.acquire()
    entries.sort(key=lambda item: item.get("activityDateTime") or "", reverse=True)
    return [log_entry(item) for item in entries[:count]]


# ---------------------------------------------------------------------------------------------- info
def sync_job_info(client, service_principal_id=None, display_name=None, application_template_id=None, template_id=None,
                  provisioning_logs=0, limiter=None):
    """The entra_sync_job_info result: service_principal, jobs, provisioning_failures, warnings."""
    if display_name:
        sp = find_service_principal(client, display_name, application_template_id)
        missing = "No service principal named %r%s was found." % (
            display_name, " from application template %s" % application_template_id if application_template_id else "")
    else:
        sp = read_service_principal(client, service_principal_id)
        missing = "The service principal %s was not found." % service_principal_id
    result = {"changed": False, "service_principal_id": None, "service_principal": None, "jobs": [], "provisioning_failures": [],
              "warnings": []}
    if sp is None:
        result["warnings"].append(missing)
        return result
    result["service_principal_id"] = sp.get("id")
    marker = marker_of(sp)
    result["service_principal"] = {"id": sp.get("id"), "app_id": sp.get("appId"), "display_name": sp.get("displayName"),
                                   "managed": marker["managed"], "cloudflare_account_id": marker["account_id"]}
    with error_step("list synchronization jobs"):
        raw_jobs = client.list(jobs_path(sp["id"]))
    if template_id:
        raw_jobs = [job for job in raw_jobs if str(job.get("templateId") or "").lower() == str(template_id).lower()]
    result["jobs"] = [job_info(job) for job in raw_jobs]
    if provisioning_logs and result["jobs"]:
        limiter = limiter or RateLimiter()
        failures = []
        for job in result["jobs"]:
            failures.extend(provisioning_failures(client, job["id"], provisioning_logs, limiter=limiter))
        failures.sort(key=lambda item: item["time"] or "", reverse=True)
        result["provisioning_failures"] = failures[:provisioning_logs]
    return result

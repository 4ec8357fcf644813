# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Synchronization (provisioning) jobs, their secrets and provisioning logs of one service principal.

Used by the modules entra_sync_job, entra_sync_secrets and entra_sync_job_info. Everything here takes a
``GraphClient``-like object (``get/post/put/patch/delete/list/iter_pages``) and is unit-tested without Ansible.

Graph behaviour relied upon (microsoftgraph/microsoft-graph-docs-contrib, api-reference/v1.0/api/
synchronization-synchronizationjob-*.md, resources/synchronization-synchronizationstatus.md,
resources/synchronization-synchronizationjobrestartcriteria.md, synchronization-serviceprincipal-put-synchronization.md,
provisioningobjectsummary-list.md; summarised in graph_api.md sections 4 to 7 and 10):

* jobs are listed per service principal and identified by their ``templateId`` (``scim`` for non-gallery apps);
* ``start`` must not be called on a job that is already running (Microsoft warns it can make the service stop):
  only a Disabled or Paused job is started; a quarantined job is only touched when asked to recover it;
* ``restart`` takes ``{"criteria": {"resetScope": "<comma separated flags>"}}``; no scope = the portal's
  "Restart provisioning";
* secrets are a per-key upsert (``PUT .../synchronization/secrets``); sensitive values read back as ``"*"``;
* ``validateCredentials`` with ``useSavedCredentials: false`` tests the given credentials without saving them;
* provisioning logs (``/auditLogs/provisioning``) are limited to 5 requests per 10 seconds per app and tenant.

The SCIM token can never be read back, so ``entra_sync_secrets`` keeps a fingerprint of it in the service
principal's ``notes``: one line ``entrascim.cloudflare:scim-token-sha256:<64 hex>`` where the hex is the SHA-256 of
``<service principal id>:<token>`` (UTF-8). Any other text in ``notes`` is kept as it is.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import hashlib
import json
import re
import time

from urllib.parse import urlparse

from ._consistency import ConsistencyTimeout, is_not_found, is_replication_error, retry_replication, wait_until, wait_until_visible
from ._errors import GraphError, InputError, error_step
from ._graph import batch_get, odata_quote
from ._service_principals import find_service_principal, job_path, jobs_path, marker_of, read_service_principal, secrets_path, sp_path

DEFAULT_TEMPLATE_ID = "scim"
JOB_STATES = ("present", "started", "paused", "restarted", "absent")
RESET_SCOPES = ("Escrows", "Watermark", "QuarantineState", "Full", "ForceDeletes")
WAIT_MODES = ("none", "started", "initial_cycle")
UPDATE_TOKEN_MODES = ("when_changed", "always", "on_create")
MIN_POLL_INTERVAL = 5
DEFAULT_POLL_INTERVAL = 10
NOTES_MAX_LENGTH = 1024  # servicePrincipal.notes: "Maximum allowed size is 1024 characters" (serviceprincipal resource page)
SECRET_KEYS = ("BaseAddress", "SecretToken", "SyncAll", "SyncNotificationSettings")
MASKED = "*"
FINGERPRINT_PREFIX = "entrascim.cloudflare:scim-token-sha256:"
_FINGERPRINT_LINE = re.compile(r"^[ \t]*entrascim\.cloudflare:scim-token-sha256:([0-9a-fA-F]*)[ \t]*$", re.MULTILINE)
_NEVER = "0001-01-01"  # Graph's "never" DateTimeOffset
LOG_PAGE_SIZE = 50
LOG_MAX_PAGES = 20
REPORTS_LIMIT = 5  # requests ...
REPORTS_WINDOW = 10.0  # ... per 10 seconds (throttling-limits.md, "Identity and access reports")
RACE_GRACE = 20  # seconds a new job may stay 404 while a concurrent run's job with a smaller id is listed


class SyncError(GraphError):
    """A failure found by our own logic (not an HTTP error): ``code`` names it, ``extra`` goes into fail_json."""

    def __init__(self, step, code, message, **extra):
        super(SyncError, self).__init__(message, code=code)
        self.step = step
        self.extra = extra


class _NotYet(GraphError):
    """A successful read that does not show the awaited state yet."""


class _Superseded(Exception):
    """The job this run created lost a race to ``job`` (a job from the same template with a smaller id)."""

    def __init__(self, job):
        super(_Superseded, self).__init__(job.get("id"))
        self.job = job


def _secret_values(document):
    """``{key: value}`` from a GET synchronization/secrets answer."""
    return dict((item.get("key"), item.get("value")) for item in (document or {}).get("value") or [] if isinstance(item, dict))


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
    """Provisioning Status "On" in the portal: the schedule is Active (graph_api.md 4d)."""
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


# ---------------------------------------------------------------------------------------------- job decisions
def plan_job(state, job, recover_quarantine=False):
    """Return ``(actions, warnings)`` to bring ``job`` (a ``job_result`` or None) to ``state``.

    Actions are ``create``, ``start``, ``pause``, ``restart`` and ``delete``, in order. ``start`` is planned only
    for a Disabled or Paused job (never for a running one); a quarantined job is restarted only with
    ``recover_quarantine`` (or ``state=restarted``) and is otherwise reported in a warning.
    """
    if state not in JOB_STATES:
        raise ValueError("state must be one of %s" % ", ".join(JOB_STATES))
    if state == "absent":
        return (["delete"] if job else []), []
    actions = []
    warnings = []
    if job is None:
        actions.append("create")
        schedule_state, code = "Disabled", "NotConfigured"
    else:
        schedule_state, code = job["schedule"]["state"], job["status"]["code"]
    quarantined = code == "Quarantine"
    if state == "restarted":
        actions.append("restart")
    elif quarantined and recover_quarantine and state in ("present", "started"):
        actions.append("restart")
    elif quarantined and state in ("present", "started"):
        warnings.append("The synchronization job %s is in quarantine: %s. Fix the cause (for example the SCIM token) and "
                        "run again with recover_quarantine=true to restart it." % (job["id"], describe_quarantine(job)))
    elif state == "started" and schedule_state != "Active":
        actions.append("start")
    elif state == "paused" and schedule_state == "Active":
        actions.append("pause")
    return actions, warnings


def predict_job(job, actions, template_id):
    """The job as it will be after ``actions`` (check mode): what Graph would report right after the calls."""
    if "delete" in actions:
        return None
    if job is None:
        job = job_result({"id": None, "templateId": template_id,
                          "schedule": {"state": "Disabled", "interval": "P10675199DT2H48M5.4775807S"},
                          "status": {"code": "NotConfigured"}})
    else:
        job = json.loads(json.dumps(job))
    ran = bool(job["status"]["last_execution"])
    for action in actions:
        if action in ("start", "restart"):
            job["schedule"]["state"] = "Active"
            job["status"]["code"] = "Active" if ran else "NotRun"
            job["status"]["quarantine"] = None
        elif action == "pause":
            job["schedule"]["state"] = "Paused"
            job["status"]["code"] = "Paused"
    return job


def restart_body(reset_scope):
    """``{"criteria": {"resetScope": "Watermark, Escrows"}}``; an empty scope sends no resetScope (= portal restart)."""
    scopes = list(reset_scope or [])
    unknown = [scope for scope in scopes if scope not in RESET_SCOPES]
    if unknown:
        raise ValueError("unknown reset_scope value(s): %s" % ", ".join(unknown))
    if not scopes:
        return {"criteria": {}}
    return {"criteria": {"resetScope": ", ".join(scopes)}}


class SyncService:
    """Synchronization calls on one service principal, each riding out replication lag within ``timeout`` seconds."""

    def __init__(self, client, sp_id, timeout=300, sleep=time.sleep, clock=time.monotonic, progress=None):
        if not sp_id:
            raise ValueError("a service principal id is required")
        self.client = client
        self.sp_id = sp_id
        self.timeout = timeout
        self.sleep = sleep
        self.clock = clock
        self.progress = progress
        self.notices = []  # what the module should warn about (a race settled by create_job)
        self._configured_before = None

    def _retry(self, step, call):
        with error_step(step):
            return retry_replication(call, self.timeout, sleep=self.sleep, clock=self.clock, progress=self.progress, what=step,
                                     retry_on=self._replication_answer)

    def _replication_answer(self, err):
        """Whether ``err`` is what a service principal that is still replicating answers (then the call is retried).

        A 403 is, on a new service principal; on one whose notes already carry our token fingerprint (synchronization
        calls on it worked before) it is a missing permission: fail at once instead of retrying until the timeout.
        """
        if not is_replication_error(err):
            return False
        if err.status != 403:
            return True
        if self._configured_before is None:
            try:
                self._configured_before = read_fingerprint(self.client.get(sp_path(self.sp_id), params={"$select": "id,notes"}).get("notes")) is not None
            except GraphError:
                self._configured_before = False
        return not self._configured_before

    # -- jobs
    def list_jobs(self):
        return self._retry("list synchronization jobs", lambda: self.client.list(jobs_path(self.sp_id)))

    def find_job(self, template_id=DEFAULT_TEMPLATE_ID):
        """The job made from ``template_id`` (None when there is none); more than one is an error, never a guess."""
        wanted = str(template_id).lower()
        matches = [job for job in self.list_jobs() if str(job.get("templateId") or "").lower() == wanted]
        if len(matches) > 1:
            raise SyncError(
                "find the synchronization job", "DuplicateSynchronizationJobs",
                "the service principal %s has %d synchronization jobs from template %s (%s); delete the extra ones so that "
                "exactly one remains (keep the one that is started, if any): DELETE "
                "/servicePrincipals/%s/synchronization/jobs/<job id> in Microsoft Graph (for example with az rest)"
                % (self.sp_id, len(matches), template_id, ", ".join(sorted(str(job.get("id")) for job in matches)), self.sp_id),
                job_ids=sorted(str(job.get("id")) for job in matches))
        return matches[0] if matches else None

    def get_job(self, job_id):
        return self._retry("read synchronization job", lambda: self.client.get(job_path(self.sp_id, job_id)))

    def create_job(self, template_id=DEFAULT_TEMPLATE_ID):
        """Create the job (re-checking before each retry, so a retried POST never makes a second one) and wait until
        it reads back consistently."""
        state = {"first": True}

        def attempt():
            if not state["first"]:
                existing = self.find_job(template_id)
                if existing is not None:
                    return existing
            state["first"] = False
            return self.client.post(jobs_path(self.sp_id), {"templateId": template_id})

        created = self._retry("create synchronization job", attempt)
        job_id = created["id"]
        race = {"since": None}

        def read():
            try:
                return self.client.get(job_path(self.sp_id, job_id))
            except GraphError as err:
                if not is_not_found(err):
                    raise
                # Still 404 while a job with a smaller id is listed: a concurrent run may have kept that one and deleted
                # ours (see _settle_race). Give up on ours after RACE_GRACE seconds instead of waiting for the timeout.
                smaller = [item for item in self._template_jobs(template_id) if str(item.get("id")) < str(job_id)]
                if smaller:
                    race["since"] = self.clock() if race["since"] is None else race["since"]
                    if self.clock() - race["since"] >= RACE_GRACE:
                        raise _Superseded(min(smaller, key=lambda item: str(item.get("id"))))
                raise

        try:
            with error_step("read synchronization job"):
                job = wait_until_visible(read, self.timeout, sleep=self.sleep, clock=self.clock, progress=self.progress,
                                         what="the synchronization job %s" % job_id)
        except _Superseded as superseded:
            self.delete_job(job_id)
            self.notices.append("The synchronization job %s this run created on service principal %s never read back while %s "
                                "(from another run at the same time) was listed: went on with %s." % (
                                    job_id, self.sp_id, superseded.job.get("id"), superseded.job.get("id")))
            return superseded.job
        return self._settle_race(job, template_id)

    def _template_jobs(self, template_id):
        wanted = str(template_id).lower()
        return [item for item in self.list_jobs() if str(item.get("templateId") or "").lower() == wanted]

    def _settle_race(self, job, template_id):
        """Keep one job when others from the same template appeared while this run created ``job``.

        They were not listed when this run looked before creating its own, so they come from a concurrent run or from a
        run killed right after it created one (Graph creates a second job from the same template without complaint).
        Every run that sees them keeps the one with the smallest id and deletes the others; the result is that job.
        """
        jobs = self._template_jobs(template_id)
        if not any(item.get("id") == job.get("id") for item in jobs):
            jobs.append(job)
        if len(jobs) < 2:
            return job
        keep = min(jobs, key=lambda item: str(item.get("id")))
        removed = [str(item.get("id")) for item in jobs if item.get("id") != keep.get("id")]
        for job_id in removed:
            self.delete_job(job_id)
        self.notices.append("Other synchronization jobs from template %s appeared on service principal %s while this run created %s "
                            "(a concurrent run, or a run killed right after it created one): kept %s, as every run does, and "
                            "deleted %s." % (template_id, self.sp_id, job.get("id"), keep.get("id"), ", ".join(removed)))
        return keep if keep.get("id") != job.get("id") else job

    def start(self, job_id):
        self._retry("start synchronization job", lambda: self.client.post(job_path(self.sp_id, job_id) + "/start"))

    def pause(self, job_id):
        self._retry("pause synchronization job", lambda: self.client.post(job_path(self.sp_id, job_id) + "/pause", idempotent=True))

    def restart(self, job_id, reset_scope=None):
        body = restart_body(reset_scope)
        self._retry("restart synchronization job", lambda: self.client.post(job_path(self.sp_id, job_id) + "/restart", body))

    def delete_job(self, job_id):
        """Delete the job; a 404 means it is gone already (the job was just listed, so this is not replication lag)."""
        with error_step("delete synchronization job"):
            try:
                self.client.delete(job_path(self.sp_id, job_id))
            except GraphError as err:
                if not is_not_found(err):
                    raise

    # -- waits
    def wait_started(self, job_id, timeout):
        """Wait until the job consistently reads back with schedule Active."""
        def read():
            job = self.client.get(job_path(self.sp_id, job_id))
            if (job.get("schedule") or {}).get("state") != "Active":
                raise _NotYet("the job is not active yet (schedule %s)" % (job.get("schedule") or {}).get("state"), code="NotActiveYet")
            return job

        with error_step("wait for the synchronization job to start"):
            return wait_until_visible(read, timeout, sleep=self.sleep, clock=self.clock, progress=self.progress,
                                      what="the started synchronization job %s" % job_id,
                                      not_yet=lambda err: isinstance(err, _NotYet) or err.status in (403, 404))

    def wait_cycle(self, job_id, timeout, poll_interval=DEFAULT_POLL_INTERVAL, baseline=None):
        """Poll every ``poll_interval`` seconds until a provisioning cycle other than ``baseline`` (a raw lastExecution)
        has ended; fail when the job goes to quarantine or ``timeout`` passes. Returns the raw job."""
        seen = {}

        def cycle_ended():
            raw = seen["raw"] = self.get_job(job_id)
            job = seen["job"] = job_result(raw)
            if is_quarantined(job):
                raise SyncError("wait for the first provisioning cycle", "Quarantine",
                                "the synchronization job %s went to quarantine: %s" % (job_id, describe_quarantine(job)), job=job)
            execution = (raw.get("status") or {}).get("lastExecution")
            return raw if execution and _time(execution.get("timeEnded")) and execution != baseline else None

        def timed_out(polls, waited):
            job = seen["job"]
            return SyncError("wait for the first provisioning cycle", "Timeout",
                             "no provisioning cycle of the synchronization job %s finished within %d s (status %s, schedule %s); "
                             "initial cycles can take long: raise wait_timeout or poll with entra_sync_job_info"
                             % (job_id, timeout, job["status"]["code"], job["schedule"]["state"]), job=job)

        return wait_until(cycle_ended, timeout, interval=max(MIN_POLL_INTERVAL, poll_interval), sleep=self.sleep, clock=self.clock,
                          progress=self.progress, what="the first provisioning cycle of %s" % job_id,
                          describe=lambda: "status %s" % seen["job"]["status"]["code"], on_timeout=timed_out)

    # -- secrets
    def read_secrets(self):
        """``{key: value}`` of the saved synchronization secrets (sensitive values are ``"*"``)."""
        return _secret_values(self._retry("read synchronization secrets", lambda: self.client.get(secrets_path(self.sp_id))))

    def read_notes(self):
        sp = self._retry("read service principal", lambda: self.client.get(sp_path(self.sp_id), params={"$select": "id,notes"})) or {}
        return sp.get("notes")

    def read_notes_and_secrets(self):
        """``(notes, secrets)`` with one ``$batch`` request instead of two. When either read fails (a service principal
        that is still replicating, a missing permission...) both are read again on their own, which retries replication
        answers and fails with the step and message of the read that failed."""
        (sp, sp_error), (document, secrets_error) = batch_get(self.client, [(sp_path(self.sp_id), {"$select": "id,notes"}),
                                                                            (secrets_path(self.sp_id), None)])
        if sp_error is not None or secrets_error is not None:
            return self.read_notes(), self.read_secrets()
        return (sp or {}).get("notes"), _secret_values(document)

    def validate_credentials(self, job_id, base_address, secret_token):
        body = {"useSavedCredentials": False,
                "credentials": [{"key": "BaseAddress", "value": base_address}, {"key": "SecretToken", "value": secret_token}]}
        self._retry("validate credentials with the SCIM endpoint",
                    lambda: self.client.post(job_path(self.sp_id, job_id) + "/validateCredentials", body, idempotent=True))

    def save_secrets(self, values):
        body = {"value": [{"key": key, "value": values[key]} for key in SECRET_KEYS if key in values]}
        self._retry("save synchronization secrets", lambda: self.client.put(secrets_path(self.sp_id), body))

    def save_notes(self, notes):
        self._retry("update service principal", lambda: self.client.patch(sp_path(self.sp_id), {"notes": notes}))


def ensure_job(service, state, template_id=DEFAULT_TEMPLATE_ID, reset_scope=None, recover_quarantine=False, wait="none",
               wait_timeout=300, poll_interval=DEFAULT_POLL_INTERVAL, check_mode=False):
    """Bring the job of ``template_id`` to ``state``; return the module result (changed, job, actions, diff, warnings)."""
    if wait not in WAIT_MODES:
        raise ValueError("wait must be one of %s" % ", ".join(WAIT_MODES))
    if wait != "none" and state not in ("started", "restarted"):
        raise ValueError("wait=%s needs state=started or state=restarted" % wait)
    restart_body(reset_scope)  # validate before any call
    raw = service.find_job(template_id)
    before = job_result(raw)
    actions, warnings = plan_job(state, before, recover_quarantine)
    if check_mode:
        after = predict_job(before, actions, template_id)
    else:
        baseline = ((raw or {}).get("status") or {}).get("lastExecution")
        for action in actions:
            if action == "create":
                raw = service.create_job(template_id)
                warnings.extend(service.notices)
            elif action == "delete":
                service.delete_job(raw["id"])
                raw = None
            elif action == "start":
                service.start(raw["id"])
            elif action == "pause":
                service.pause(raw["id"])
            elif action == "restart":
                service.restart(raw["id"], reset_scope)
        if raw is not None and set(actions) - {"create"}:
            raw = service.get_job(raw["id"])
        if wait == "started":
            raw = service.wait_started(raw["id"], wait_timeout)
        elif wait == "initial_cycle":
            acted = bool(set(actions) & {"start", "restart"})
            raw = service.wait_cycle(raw["id"], wait_timeout, poll_interval, baseline=baseline if acted else None)
        after = job_result(raw)
    if after is not None and not check_mode:
        execution = after["status"]["last_execution"]
        if wait == "initial_cycle" and execution and execution["state"] in ("Failed", "EntryLevelErrors"):
            warnings.append("The provisioning cycle ended with %s; look at the provisioning logs (entra_sync_job_info with "
                            "provisioning_logs) for the objects that failed." % execution["state"])
        if is_quarantined(after) and not any("quarantine" in warning for warning in warnings):
            warnings.append("The synchronization job %s is in quarantine: %s." % (after["id"], describe_quarantine(after)))
    return {
        "changed": bool(actions),
        "job": after,
        "actions": actions,
        "warnings": warnings,
        "diff": {"before": job_diff_view(before), "after": job_diff_view(after)},
    }


# ---------------------------------------------------------------------------------------------- secrets decisions
def token_fingerprint(sp_id, token):
    """Salted SHA-256 (salt = service principal id) of the SCIM token, as 64 hex digits. Never reversible to the token."""
    return hashlib.sha256(("%s:%s" % (sp_id, token)).encode("utf-8")).hexdigest()


def read_fingerprint(notes):
    """The fingerprint stored in ``notes`` (lowercase hex), or None."""
    match = _FINGERPRINT_LINE.search(notes or "")
    if not match or len(match.group(1)) != 64:
        return None
    return match.group(1).lower()


def write_fingerprint(notes, fingerprint):
    """``notes`` with the fingerprint line replaced (or appended on its own line); other text is kept as it is."""
    line = FINGERPRINT_PREFIX + fingerprint
    notes = notes or ""
    if _FINGERPRINT_LINE.search(notes):
        return _FINGERPRINT_LINE.sub(lambda match: line, notes, count=1)
    if not notes:
        return line
    return notes + ("" if notes.endswith("\n") else "\n") + line


def check_base_address(base_address):
    """Raise InputError (a ValueError) unless ``base_address`` is an https URL with a host."""
    parsed = urlparse(base_address or "")
    if parsed.scheme.lower() != "https" or not parsed.hostname:
        raise InputError("base_address must be an https URL such as https://api.cloudflare.com/client/v4/accounts/<account id>/scim/v2, "
                         "got %r" % base_address)


def _parse_settings(text):
    if not text or text == MASKED:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _recipients(text):
    return sorted(part.strip().lower() for part in re.split(r"[;,]", text or "") if part.strip())


def desired_notification(current_text, email):
    """The SyncNotificationSettings dict for ``email`` ("" = notifications off), keeping the other settings."""
    desired = dict(_parse_settings(current_text) or {})
    if email:
        desired["Enabled"] = True
        desired["Recipients"] = email
    else:
        desired["Enabled"] = False
    desired.setdefault("DeleteThresholdEnabled", False)
    return desired


def notification_matches(current_text, email):
    current = _parse_settings(current_text)
    if current is None:
        return False
    if not email:
        return current.get("Enabled") is False
    return current.get("Enabled") is True and _recipients(current.get("Recipients")) == _recipients(email)


def secrets_view(values, fingerprint, token_saved):
    """The non-secret picture of the saved secrets, for diffs and the ``settings`` return value."""
    settings = _parse_settings(values.get("SyncNotificationSettings"))
    sync_all = values.get("SyncAll")
    return {
        "base_address": values.get("BaseAddress"),
        "sync_all": None if sync_all in (None, "", MASKED) else str(sync_all).lower() == "true",
        "notification_email": (settings or {}).get("Recipients") or None,
        "notifications_enabled": None if settings is None else bool(settings.get("Enabled")),
        "secret_token_saved": token_saved,
        "secret_token_fingerprint": fingerprint,
    }


def plan_secrets(sp_id, current, notes, base_address, secret_token, sync_all=None, notification_email=None,
                 update_secret_token="when_changed"):
    """Decide what to write. Returns a dict with ``values`` (the PUT, all keys at once, empty when nothing changes),
    ``changed_keys`` (names), ``notes`` (new notes, or None when unchanged) and the diff ``before``/``after``."""
    if update_secret_token not in UPDATE_TOKEN_MODES:
        raise ValueError("update_secret_token must be one of %s" % ", ".join(UPDATE_TOKEN_MODES))
    fingerprint = token_fingerprint(sp_id, secret_token)
    saved_fingerprint = read_fingerprint(notes)
    token_saved = bool(current.get("SecretToken"))
    if update_secret_token == "always":
        write_token = True
    elif update_secret_token == "on_create":
        write_token = not token_saved
    else:
        write_token = not token_saved or saved_fingerprint != fingerprint
    changed = []
    if current.get("BaseAddress") != base_address:
        changed.append("BaseAddress")
    if write_token:
        changed.append("SecretToken")
    sync_all_value = None if sync_all is None else ("true" if sync_all else "false")
    if sync_all_value is not None and str(current.get("SyncAll") or "").lower() != sync_all_value:
        changed.append("SyncAll")
    notification_value = None
    if notification_email is not None:
        notification_value = json.dumps(desired_notification(current.get("SyncNotificationSettings"), notification_email),
                                        separators=(",", ":"), sort_keys=True)
        if not notification_matches(current.get("SyncNotificationSettings"), notification_email):
            changed.append("SyncNotificationSettings")
    values = {}
    if changed:
        # One PUT with every key we manage, so the saved set is always consistent (nothing half-written). The token
        # is left out only when update_secret_token=on_create keeps an existing one.
        values["BaseAddress"] = base_address
        if write_token or update_secret_token != "on_create":
            values["SecretToken"] = secret_token
        if sync_all_value is not None:
            values["SyncAll"] = sync_all_value
        if notification_value is not None:
            values["SyncNotificationSettings"] = notification_value
    new_notes = None
    if "SecretToken" in values and saved_fingerprint != fingerprint:
        new_notes = write_fingerprint(notes, fingerprint)
        if len(new_notes) > NOTES_MAX_LENGTH:
            raise SyncError("store the token fingerprint", "NotesTooLong",
                            "the service principal's notes would exceed %d characters with the token fingerprint line (%d "
                            "characters); shorten the notes of service principal %s" % (NOTES_MAX_LENGTH, len(new_notes), sp_id))
    after_values = dict(current)
    after_values.update((key, value) for key, value in values.items() if key != "SecretToken")
    token_fp_after = fingerprint if "SecretToken" in values else saved_fingerprint
    return {
        "values": values,
        "changed_keys": changed,
        "notes": new_notes,
        "before": secrets_view(current, saved_fingerprint, token_saved),
        "after": secrets_view(after_values, token_fp_after, token_saved or "SecretToken" in values),
    }


def connection_test_failure(err, base_address, token_saved):
    """The error for a Test Connection (validateCredentials) that the SCIM endpoint failed: Graph's reason, what was kept, what to check."""
    failure = SyncError(
        "validate credentials with the SCIM endpoint", err.code or "CredentialValidationUnavailable",
        "Entra's Test Connection with %s and the given token failed: %s Nothing was saved%s. Check that the token is valid (not "
        "revoked or expired) and is a Cloudflare API token of this account with the SCIM Provisioning permission (Account > "
        "SCIM Provisioning > Edit), and that the URL is the account's SCIM endpoint."
        % (base_address, (err.message or "").rstrip(), ": the token saved before is still in place" if token_saved else ""))
    failure.status = err.status
    failure.request_id = err.request_id
    failure.date = err.date
    return failure


def ensure_secrets(service, base_address, secret_token, sync_all=None, notification_email=None, validate=True,
                   update_secret_token="when_changed", job_id=None, template_id=DEFAULT_TEMPLATE_ID, check_mode=False):
    """Validate (when something is to be written) and save the secrets in one PUT, then store the token fingerprint.

    Returns the module result: changed, validated, changed_keys, job_id, settings, diff, warnings.
    """
    check_base_address(base_address)
    if not secret_token:
        raise InputError("secret_token must not be empty")
    notes, current = service.read_notes_and_secrets()
    plan = plan_secrets(service.sp_id, current, notes, base_address, secret_token, sync_all=sync_all,
                        notification_email=notification_email, update_secret_token=update_secret_token)
    warnings = []
    if current.get("BaseAddress") == MASKED:
        warnings.append("Graph returned BaseAddress masked; it cannot be compared and is written again.")
    validated = False
    if plan["values"] and validate:
        if not job_id:
            job = service.find_job(template_id)
            job_id = job["id"] if job else None
        if job_id:
            # Test the NEW credentials before anything is written: a token Cloudflare rejects never replaces a saved one.
            try:
                service.validate_credentials(job_id, base_address, secret_token)
            except GraphError as err:
                if isinstance(err, ConsistencyTimeout) or err.status != 400:
                    raise
                raise connection_test_failure(err, base_address, bool(current.get("SecretToken")))
            validated = True
        elif check_mode:
            warnings.append("No synchronization job exists yet, so the credentials could not be tested in check mode.")
        else:
            raise SyncError("validate credentials with the SCIM endpoint", "NoSynchronizationJob",
                            "the service principal %s has no synchronization job from template %s to test the credentials with; "
                            "create it first (entrascim.cloudflare.entra_sync_job) or set validate=false" % (service.sp_id, template_id))
    if plan["values"] and not check_mode:
        service.save_secrets(plan["values"])
        if plan["notes"] is not None:
            service.save_notes(plan["notes"])
    return {
        "changed": bool(plan["values"]),
        "validated": validated,
        "changed_keys": plan["changed_keys"],
        "job_id": job_id,
        "settings": dict((key, value) for key, value in plan["after"].items() if key != "secret_token_fingerprint"),
        "warnings": warnings,
        "diff": {"before": plan["before"], "after": plan["after"]},
    }


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

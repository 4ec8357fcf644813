# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Synchronization (provisioning) jobs of one service principal: find or create, start, pause, restart, delete, wait;
and ``SyncService``, the Graph calls on one service principal's synchronization (jobs and secrets), retried while a
new service principal replicates. The secrets decisions are in ``_secrets``, what a job reports in ``_job_info``.

Used by the modules entra_sync_job and entra_sync_secrets. Everything here takes a ``GraphClient``-like object
(``get/post/put/patch/delete/list/iter_pages``) and is unit-tested without Ansible.

Graph behaviour relied upon (microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/
synchronization-synchronizationjob-*.md, resources/synchronization-synchronizationjobrestartcriteria.md):

* jobs are listed per service principal and identified by their ``templateId`` (``scim`` for non-gallery apps);
* ``start`` must not be called on a job that is already running (Microsoft warns it can make the service stop):
  only a Disabled or Paused job is started; a quarantined job is only touched when asked to recover it;
* ``restart`` takes ``{"criteria": {"resetScope": "<comma separated flags>"}}``; no scope = the portal's
  "Restart provisioning".
"""

import json
import time

from ._consistency import is_not_found, is_replication_error, retry_replication, wait_until, wait_until_visible
from ._errors import GraphError, error_step
from ._graph import batch_get
from ._job_info import _time, describe_quarantine, is_quarantined, job_diff_view, job_result
from ._service_principals import job_path, jobs_path, secrets_path, sp_path

DEFAULT_TEMPLATE_ID = "scim"
JOB_STATES = ("present", "started", "paused", "restarted", "absent")
RESET_SCOPES = ("Escrows", "Watermark", "QuarantineState", "Full", "ForceDeletes")
WAIT_MODES = ("none", "started", "initial_cycle")
MIN_POLL_INTERVAL = 5
DEFAULT_POLL_INTERVAL = 10
SECRET_KEYS = ("BaseAddress", "SecretToken", "SyncAll", "SyncNotificationSettings")
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
                from ._secrets import read_fingerprint  # pylint: disable=import-outside-toplevel  # _secrets builds on this file
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

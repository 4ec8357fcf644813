#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: entra_sync_job
short_description: Ensure the SCIM provisioning job of a Microsoft Entra enterprise app, and turn provisioning on or off
version_added: 0.1.0
description:
  - Ensures the provisioning (synchronization) job of an enterprise app exists, is started, paused or restarted, or
    is deleted. This is "Provisioning Mode Automatic" and "Provisioning Status On/Off" of the Entra admin center.
  - The job is found by its template ID (V(scim) for the non-gallery app Cloudflare uses). A second job is never
    created; if several jobs of the template exist the module fails listing their IDs.
  - Two runs that both found no job both create one (runs at the same time, or a run started again right after one
    that was killed after creating its job, before the job is listed). The run that created a job lists the jobs
    again once its own reads back; when others from the template appeared meanwhile, it keeps the one with the
    smallest ID (every run picks the same) and deletes the others, with a warning.
  - The module never calls C(start) on a job that is already running (Microsoft warns that doing so can make the
    provisioning service stop). Only a Disabled (never started) or Paused job is started.
  - A job in quarantine (for example after Cloudflare rejected the SCIM token) is reported in a warning with its
    reason and error, and is restarted only when O(recover_quarantine=true) (or with O(state=restarted)).
  - Synchronization calls on an enterprise app created seconds ago can fail for a while (HTTP 404, 403, 409 or 400
    C(UnknownError)) until Microsoft Entra has replicated it; the module retries them within O(wait_timeout).
author:
  - entrascim.cloudflare maintainers (@entrascim)
requirements:
  - requests
  - msal (for the client secret, certificate and managed identity sign-in methods)
options:
  service_principal_id:
    description:
      - The object ID of the enterprise app's service principal (RV(entrascim.cloudflare.entra_app#module:service_principal.id)),
        not its application (client) ID.
    type: str
    required: true
  template_id:
    description:
      - The synchronization template of the job. Non-gallery SCIM apps (such as the Cloudflare app) use V(scim).
    type: str
    default: scim
  state:
    description:
      - V(present) creates the job if it is missing and otherwise leaves it as it is. A new job is created disabled.
      - V(started) also starts the job when it is disabled or paused (provisioning on). A running job is left alone.
      - V(paused) pauses the job when it is running (provisioning off); the job keeps its state and resumes from
        there when started again. A missing job is created (disabled, that is off).
      - V(restarted) always restarts the job with O(reset_scope), and reports a change. Use it to force a full
        cycle or to clear escrows.
      - V(absent) deletes the job and its provisioning state (the users and groups already in Cloudflare stay).
        A job that does not exist is not a change.
    type: str
    choices: [present, started, paused, restarted, absent]
    default: present
  reset_scope:
    description:
      - What a restart clears (O(state=restarted), or a quarantine recovery).
      - V(Escrows) stops retrying failed objects, V(Watermark) re-evaluates every object instead of only the
        changes, V(QuarantineState) lifts the quarantine, V(ForceDeletes) pushes through deletions held back by the
        accidental-deletion threshold, V(Full) is all of them and also clears the connector data store.
      - An empty list is the admin center's "Restart provisioning" (about V(QuarantineState), V(Watermark) and
        V(Escrows)), which fits most needs.
    type: list
    elements: str
    choices: [Escrows, Watermark, QuarantineState, Full, ForceDeletes]
    default: []
  recover_quarantine:
    description:
      - Restart a job that is in quarantine (with O(reset_scope)) when O(state) is V(present) or V(started).
      - Leave it V(false) until the cause is fixed (usually by saving a working token with
        M(entrascim.cloudflare.entra_sync_secrets)); the quarantine is reported in a warning either way.
    type: bool
    default: false
  wait:
    description:
      - V(none) returns right after the calls.
      - V(started) waits until the job consistently reads back as active.
      - V(initial_cycle) polls every O(poll_interval) seconds until a provisioning cycle has finished (the first one
        after this task started or restarted the job, or any one when the job was already running) and fails if the
        job goes to quarantine. A first cycle can take from minutes to hours; for long waits prefer an C(until) loop
        around M(entrascim.cloudflare.entra_sync_job_info), which prints a line on every retry.
      - Only allowed with O(state=started) or O(state=restarted). Not done in check mode.
    type: str
    choices: [none, started, initial_cycle]
    default: none
  wait_timeout:
    description:
      - How many seconds to wait, both for Microsoft Entra replication of a new app or job and for O(wait).
    type: int
    default: 300
  poll_interval:
    description:
      - Seconds between two reads of the job status with O(wait=initial_cycle). At least 5 (Microsoft recommends not
        polling provisioning status faster).
    type: int
    default: 10
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - entrascim.cloudflare.entra
  - entrascim.cloudflare.entra.action_group
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - "Microsoft Graph application permissions (least privileged): C(Application.ReadWrite.OwnedBy) when the calling
    app owns the enterprise app, otherwise C(Synchronization.ReadWrite.All) (reading, creating, starting, pausing,
    restarting and deleting jobs)."
  - With a delegated (user) token the signed-in user needs the Application Administrator or Cloud Application
    Administrator role.
  - In check mode a job that would be created is returned with a null C(id), and the status is predicted.
  - The diff shows the job's ID, template, schedule state, status code and quarantine reason before and after.
seealso:
  - module: entrascim.cloudflare.entra_app
  - module: entrascim.cloudflare.entra_sync_secrets
  - module: entrascim.cloudflare.entra_sync_job_info
  - name: Synchronization job API (start, pause, restart)
    description: The Microsoft Graph calls this module makes.
    link: https://learn.microsoft.com/graph/api/resources/synchronization-synchronizationjob
"""

EXAMPLES = r"""
- name: Ensure the provisioning job exists (created disabled)
  entrascim.cloudflare.entra_sync_job:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    state: present
  register: cloudflare_job

- name: Turn provisioning on and wait until the job reads back as running
  entrascim.cloudflare.entra_sync_job:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    state: started
    wait: started

- name: Start provisioning, lifting a quarantine once a working token was saved
  entrascim.cloudflare.entra_sync_job:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    state: started
    recover_quarantine: true

- name: Turn provisioning off
  entrascim.cloudflare.entra_sync_job:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    state: paused

- name: Re-evaluate every user and group and wait for the cycle to finish
  entrascim.cloudflare.entra_sync_job:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    state: restarted
    reset_scope: [Watermark]
    wait: initial_cycle
    wait_timeout: 1800
    poll_interval: 30

- name: Delete the provisioning job
  entrascim.cloudflare.entra_sync_job:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    state: absent
"""

RETURN = r"""
job:
  description:
    - The provisioning job after the task (the prediction in check mode). Null with O(state=absent).
  returned: success
  type: dict
  contains:
    id:
      description: The job ID (opaque, starts with the template ID). Null for a job predicted in check mode.
      type: str
      sample: scim.0c7a6f3b9a2a4c5e8f1d2b3c4d5e6f70.17cad0e7-cd2b-4e51-a75d-ba810f3e4045
    template_id:
      description: The synchronization template of the job.
      type: str
      sample: scim
    schedule:
      description: The schedule of the job.
      type: dict
      contains:
        state:
          description: V(Active) (provisioning on), V(Paused) or V(Disabled) (never started).
          type: str
          sample: Active
        interval:
          description: The ISO 8601 interval between cycles (C(P10675199DT2H48M5.4775807S) means never).
          type: str
          sample: PT40M
    status:
      description: The status of the job.
      type: dict
      contains:
        code:
          description: V(NotConfigured), V(NotRun) (started, first cycle not finished), V(Active), V(Paused) or V(Quarantine).
          type: str
          sample: Active
        quarantine:
          description: Why and since when the job is in quarantine; null when it is not.
          type: dict
          contains:
            reason:
              description: The quarantine reason, for example C(EncounteredQuarantineException).
              type: str
            error:
              description: The error behind the quarantine (C(code), C(message), C(tenant_actionable)).
              type: dict
            current_began:
              description: When the current quarantine began.
              type: str
            next_attempt:
              description: When the service tries again.
              type: str
            series_began:
              description: When the series of quarantines began.
              type: str
            series_count:
              description: How many quarantines are in the series.
              type: int
        last_execution:
          description: The last provisioning cycle; null before the first one.
          type: dict
          contains:
            state:
              description: V(Succeeded), V(Failed) or V(EntryLevelErrors) (some objects failed).
              type: str
              sample: Succeeded
            time_began:
              description: When the cycle began.
              type: str
              sample: "2025-06-02T10:15:00Z"
            time_ended:
              description: When the cycle ended.
              type: str
              sample: "2025-06-02T10:15:42Z"
            count_imported:
              description: Objects read from Microsoft Entra ID.
              type: int
            count_exported:
              description: Objects written to the target (Cloudflare).
              type: int
              sample: 12
            count_escrowed:
              description: Objects that failed and will be retried.
              type: int
            error:
              description: The error of a failed cycle (C(code), C(message), C(tenant_actionable)); null otherwise.
              type: dict
        count_successive_complete_failures:
          description: How many cycles in a row failed as a whole.
          type: int
          sample: 0
        escrows_pruned:
          description: Whether the initial cycle hit the error threshold and pruned its escrows.
          type: bool
          sample: false
        steady_state_first_achieved_time:
          description: When the job first completed a full pass; null until then.
          type: str
        steady_state_last_achieved_time:
          description: When the job last completed a full pass; null until then.
          type: str
        synchronized_entry_count_by_type:
          description: How many objects of each type are synchronized, as C(key)/C(value) pairs.
          type: list
          elements: dict
          sample: [{"key": "user to urn:ietf:params:scim:schemas:core:2.0:User", "value": 12}]
actions:
  description: The Graph actions the task took (or would take in check mode), in order.
  returned: success
  type: list
  elements: str
  sample: [create, start]
progress:
  description: What the module waited for (replication, the job starting, the first cycle), one line per read.
  returned: when the module waited
  type: list
  elements: str
  sample:
    - "waiting for the first provisioning cycle of scim.0c7a...: poll 1, status NotRun, 0 s elapsed"
"""

from ansible_collections.entrascim.cloudflare.plugins.module_utils._entra_module import EntraModule
from ansible_collections.entrascim.cloudflare.plugins.module_utils._sync import (
    JOB_STATES, MIN_POLL_INTERVAL, RESET_SCOPES, WAIT_MODES, SyncService, ensure_job,
)


def run(entra):
    params = entra.params
    if params["poll_interval"] < MIN_POLL_INTERVAL:
        entra.module.fail_json(msg="poll_interval must be at least %d seconds" % MIN_POLL_INTERVAL)
    if params["wait"] != "none" and params["state"] not in ("started", "restarted"):
        entra.module.fail_json(msg="wait=%s needs state=started or state=restarted" % params["wait"])
    service = SyncService(entra.client, params["service_principal_id"], timeout=params["wait_timeout"], sleep=entra.sleep,
                          clock=entra.clock, progress=entra.progress.append)
    return ensure_job(service, params["state"], template_id=params["template_id"], reset_scope=params["reset_scope"],
                      recover_quarantine=params["recover_quarantine"], wait=params["wait"], wait_timeout=params["wait_timeout"],
                      poll_interval=params["poll_interval"], check_mode=entra.check_mode)


def main():
    argument_spec = dict(
        service_principal_id=dict(type="str", required=True),
        template_id=dict(type="str", default="scim"),
        state=dict(type="str", default="present", choices=list(JOB_STATES)),
        reset_scope=dict(type="list", elements="str", default=[], choices=list(RESET_SCOPES)),
        recover_quarantine=dict(type="bool", default=False),
        wait=dict(type="str", default="none", choices=list(WAIT_MODES)),
        wait_timeout=dict(type="int", default=300),
        poll_interval=dict(type="int", default=10),
    )
    EntraModule(argument_spec, supports_check_mode=True).run(run)


if __name__ == "__main__":
    main()

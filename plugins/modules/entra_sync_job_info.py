#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: entra_sync_job_info
short_description: Read the status of the provisioning jobs of a Microsoft Entra enterprise app
version_added: 0.1.0
description:
  - Answers "did it actually provision?" from the Entra side. Returns every provisioning (synchronization) job of an
    enterprise app with its schedule, status, quarantine and last cycle, plus ready-made flags
    (RV(jobs[].provisioning_on), RV(jobs[].healthy), RV(jobs[].quarantined), RV(jobs[].last_cycle)) that are easy to
    test in an C(until) loop while waiting for the first cycle.
  - Optionally returns the most recent failed provisioning-log entries of each job (which user or group failed, and why).
  - The app is given by its service principal ID, or found by display name and application template.
    An app without a job returns an empty RV(jobs) list; an app that does not exist returns an empty list and a warning.
  - Never changes anything.
author:
  - entrascim.cloudflare maintainers (@entrascim)
requirements:
  - requests
  - msal (for the client secret, certificate and managed identity sign-in methods)
options:
  service_principal_id:
    description:
      - The object ID of the enterprise app's service principal.
      - Exactly one of O(service_principal_id) and O(display_name) is required.
    type: str
  display_name:
    description:
      - The display name of the enterprise app, looked up together with O(application_template_id).
      - Several apps with this name make the task fail, listing their IDs.
    type: str
  application_template_id:
    description:
      - The application template of the app looked up by O(display_name).
      - Defaults to the non-gallery template of the selected O(cloud) (C(8adf8e6e-67b2-4cf2-a259-e3dc5476c621) in the
        public cloud).
    type: str
  template_id:
    description:
      - Return only the jobs of this synchronization template (for example V(scim)). All jobs when not set.
    type: str
  provisioning_logs:
    description:
      - How many of the most recent failed provisioning-log entries of each job to return in RV(provisioning_failures).
        V(0) reads no logs.
      - The provisioning logs API allows 5 requests per 10 seconds per app and tenant; the module paces its requests
        and waits when throttled. Entries appear only minutes after a cycle.
    type: int
    default: 0
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - entrascim.cloudflare.entra
  - entrascim.cloudflare.entra.action_group
attributes:
  check_mode:
    support: full
    details: The module only reads, so check mode returns the same information.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - "Microsoft Graph application permissions (least privileged): C(Application.Read.All) to read or find the app,
    C(Synchronization.Read.All) (or C(Application.ReadWrite.OwnedBy) for apps the caller owns) to read the jobs,
    and C(AuditLog.Read.All) with C(Directory.Read.All) for O(provisioning_logs)."
  - With a delegated (user) token the signed-in user needs the Application Administrator or Cloud Application
    Administrator role, and a reports role (for example Reports Reader) for O(provisioning_logs).
  - Reading provisioning logs may need a Microsoft Entra ID P1 or P2 licence in the tenant.
seealso:
  - module: entrascim.cloudflare.entra_sync_job
  - module: entrascim.cloudflare.cloudflare_scim_check
  - name: List provisioningObjectSummary (Microsoft Graph)
    description: The provisioning logs API.
    link: https://learn.microsoft.com/graph/api/provisioningobjectsummary-list
"""

EXAMPLES = r"""
- name: Read the provisioning job of an app and its 10 most recent failures
  entrascim.cloudflare.entra_sync_job_info:
    display_name: Cloudflare SCIM - Production
    provisioning_logs: 10
  register: cloudflare_sync

- name: Report a quarantine
  ansible.builtin.debug:
    msg: "Quarantined: {{ cloudflare_sync.jobs[0].quarantine_reason }}"
  when: cloudflare_sync.jobs | length > 0 and cloudflare_sync.jobs[0].quarantined

- name: Wait until the first provisioning cycle has finished (one line per try)
  entrascim.cloudflare.entra_sync_job_info:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    template_id: scim
  register: cloudflare_sync
  until: >-
    cloudflare_sync.jobs | length > 0
    and (cloudflare_sync.jobs[0].quarantined or cloudflare_sync.jobs[0].last_cycle.finished)
  retries: 60
  delay: 30
"""

RETURN = r"""
service_principal_id:
  description: The object ID of the service principal the jobs belong to; null when the app was not found.
  returned: success
  type: str
  sample: a750f6cf-2319-464a-bcc3-456926736a91
service_principal:
  description: The service principal the jobs belong to; null when the app was not found.
  returned: success
  type: dict
  contains:
    id:
      description: The object ID of the service principal.
      type: str
      sample: a750f6cf-2319-464a-bcc3-456926736a91
    app_id:
      description: The application (client) ID.
      type: str
      sample: 17cad0e7-cd2b-4e51-a75d-ba810f3e4045
    display_name:
      description: The display name.
      type: str
      sample: Cloudflare SCIM - Production
    managed:
      description: Whether it carries the marker tag of this collection (see M(entrascim.cloudflare.entra_app)).
      type: bool
      sample: true
    cloudflare_account_id:
      description: The Cloudflare account its marker names (null without an account tag).
      type: str
      sample: 023e105f4ecef8ad9ca31a8372d0c353
jobs:
  description:
    - The provisioning jobs, each in the shape of RV(entrascim.cloudflare.entra_sync_job#module:job) (C(id),
      C(template_id), C(schedule), C(status)) plus the flags below. Empty when the app has no job or was not found.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: The job ID.
      type: str
      sample: scim.0c7a6f3b9a2a4c5e8f1d2b3c4d5e6f70.17cad0e7-cd2b-4e51-a75d-ba810f3e4045
    template_id:
      description: The synchronization template.
      type: str
      sample: scim
    schedule:
      description: C(state) (V(Active), V(Paused), V(Disabled)) and C(interval), as in M(entrascim.cloudflare.entra_sync_job).
      type: dict
    status:
      description:
        - C(code), C(quarantine), C(last_execution), C(count_successive_complete_failures), C(escrows_pruned),
          C(steady_state_first_achieved_time), C(steady_state_last_achieved_time) and
          C(synchronized_entry_count_by_type), as in M(entrascim.cloudflare.entra_sync_job).
      type: dict
    provisioning_on:
      description: Whether provisioning is on (the schedule is V(Active)).
      type: bool
      sample: true
    healthy:
      description: Provisioning is on, the status is V(NotRun) or V(Active), and the last cycle (if any) did not fail as a whole.
      type: bool
      sample: true
    quarantined:
      description: Whether the job is in quarantine.
      type: bool
      sample: false
    quarantine_reason:
      description: The quarantine reason when quarantined, else null.
      type: str
      sample: EncounteredQuarantineException
    last_cycle:
      description: The last provisioning cycle in short; always a dict, so C(until) conditions need no default.
      type: dict
      contains:
        ran:
          description: Whether any cycle ran.
          type: bool
          sample: true
        finished:
          description: Whether the last cycle has ended.
          type: bool
          sample: true
        succeeded:
          description: Whether the last cycle ended with V(Succeeded).
          type: bool
          sample: true
        state:
          description: V(Succeeded), V(Failed), V(EntryLevelErrors) or null.
          type: str
          sample: Succeeded
        time_began:
          description: When the cycle began.
          type: str
          sample: "2025-06-02T10:15:00Z"
        time_ended:
          description: When the cycle ended (null while it runs or before the first one).
          type: str
          sample: "2025-06-02T10:15:42Z"
        count_exported:
          description: Objects written to the target in that cycle.
          type: int
          sample: 12
        count_escrowed:
          description: Objects that failed in that cycle and will be retried.
          type: int
          sample: 0
        error:
          description: The error of a failed cycle (C(code), C(message), C(tenant_actionable)), else null.
          type: dict
provisioning_failures:
  description: The most recent failed provisioning-log entries (at most O(provisioning_logs) in all), newest first.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: The log entry ID.
      type: str
    job_id:
      description: The job the entry belongs to.
      type: str
    cycle_id:
      description: The provisioning cycle of the entry.
      type: str
    time:
      description: When it happened.
      type: str
      sample: "2025-06-02T10:15:40Z"
    action:
      description: C(create), C(update), C(delete), C(disable), C(stagedDelete) or C(other).
      type: str
      sample: create
    status:
      description: Always C(failure) here.
      type: str
      sample: failure
    error_code:
      description: The error code, for example C(SystemForCrossDomainIdentityManagementBadRequest).
      type: str
      sample: SystemForCrossDomainIdentityManagementBadRequest
    reason:
      description: Why it failed.
      type: str
    source_identity:
      description: The Entra object (C(id), C(display_name), C(identity_type)).
      type: dict
    target_identity:
      description: The object in the target (C(id), C(display_name), C(identity_type)).
      type: dict
"""

from ansible_collections.entrascim.cloudflare.plugins.module_utils._entra_module import EntraModule
from ansible_collections.entrascim.cloudflare.plugins.module_utils._job_info import sync_job_info


def run(entra):
    params = entra.params
    if params["provisioning_logs"] < 0:
        entra.module.fail_json(msg="provisioning_logs must be 0 or more")
    return sync_job_info(entra.client, service_principal_id=params["service_principal_id"], display_name=params["display_name"],
                         application_template_id=params["application_template_id"] or entra.cloud["non_gallery_template_id"],
                         template_id=params["template_id"], provisioning_logs=params["provisioning_logs"])


def main():
    argument_spec = dict(
        service_principal_id=dict(type="str"),
        display_name=dict(type="str"),
        application_template_id=dict(type="str"),
        template_id=dict(type="str"),
        provisioning_logs=dict(type="int", default=0),
    )
    EntraModule(argument_spec, supports_check_mode=True, required_one_of=[("service_principal_id", "display_name")],
                mutually_exclusive=[("service_principal_id", "display_name")]).run(run)


if __name__ == "__main__":
    main()

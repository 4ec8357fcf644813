#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: entra_scim_preflight
short_description: Find what in an Entra app's provisioning scope will break Cloudflare SCIM provisioning
version_added: 0.1.0
description:
  - Reads the provisioning scope of the Cloudflare enterprise app and reports what Cloudflare will refuse, skip or
    mishandle. It reads the app's user and group assignments, the assigned users, the direct members of the assigned
    groups and the C(SyncAll) setting. The module only reads and always reports C(changed=false).
  - Each problem is one entry of RV(findings) with a C(severity) (C(error), C(warning) or C(info)), a C(code), the
    C(object) it is about and a C(message) that says what to do. The checks, by code, are listed below.
  - C(UPN_MAIL_MISMATCH) (error). The user's C(userPrincipalName) and C(mail) differ, compared case-sensitively as
    Cloudflare does. Cloudflare requires them to be identical, so the user is refused. Make the mail equal to the UPN
    (or the UPN equal to the mail), letter case included.
  - C(MAIL_MISSING) (error). The user has no C(mail). Cloudflare needs an e-mail identical to the UPN. Set the mail.
  - C(USER_DISABLED) (warning). The account is disabled in Entra ID, so Cloudflare receives it as inactive and the
    person is not an account member. Enable it, or remove it from the assignment.
  - C(GROUP_NAME_RESERVED_CF) (error; warning when only the letter case differs, as in C(cf-team)). An assigned
    group's name starts with C(CF), a prefix Cloudflare reserves, so Cloudflare refuses the group. Rename the group or
    assign another one.
  - C(DEPRECATED_VIRTUAL_GROUP) (error). An assigned group follows the C(CF-<accountID> - <Role Name>) pattern of
    Cloudflare's virtual groups, deprecated since 2025-06-02 and end-of-life since 2025-12-02. Provision a group with
    another name as a SCIM user group and attach a permission policy to it in Cloudflare.
  - C(NESTED_GROUP) (warning). A group is a member of an assigned group. Entra provisioning only takes the direct
    members of assigned groups, so the nested group's members are not provisioned. Assign the nested group itself,
    or add its users directly.
  - C(DEFAULT_ACCESS_ROLE) (warning). A user or group is assigned with the default-access role instead of the app's
    C(User) role, and provisioning may skip it as "not effectively entitled". Assign the C(User) role
    (M(entrascim.cloudflare.entra_app_assignment) does by default).
  - C(NO_ASSIGNMENTS) (error). No user or group is assigned and C(SyncAll) is false ("sync only assigned users and
    groups", the default), so provisioning sends nothing. Assign users or groups.
  - C(SYNC_ALL_ENABLED) (info). C(SyncAll) is true, so every user and group of the tenant is in scope, not only the
    assigned ones. Set O(entrascim.cloudflare.entra_sync_secrets#module:sync_all=false) unless you mean it.
  - C(PRINCIPAL_NOT_FOUND) (warning). An assigned user or group cannot be read (deleted, or not replicated yet).
    Remove the stale assignment or check again later.
  - Each user is checked once, even if it is assigned directly and through one or more groups.
author:
  - entrascim.cloudflare maintainers (@entrascim)
requirements:
  - requests
  - msal (for the client secret, certificate and managed identity sign-in methods)
options:
  service_principal_id:
    description:
      - The object ID of the enterprise app's service principal (RV(entrascim.cloudflare.entra_app#module:service_principal.id)),
        whose assignments and C(SyncAll) setting are checked.
      - Exactly one of O(service_principal_id) and O(principals) is required.
    type: str
  principals:
    description:
      - Check the users and groups that are B(going to be) assigned instead of those of an existing app, before anything
        is written (the M(entrascim.cloudflare.cloudflare_scim) role does this first). Same format as
        O(entrascim.cloudflare.entra_app_assignment#module:principals).
      - A user or group that cannot be resolved (no match, or several) fails the task whatever O(fail_on) says, naming
        every such principal, since assigning it would fail.
    type: list
    elements: dict
    suboptions:
      type:
        description: V(user) or V(group).
        type: str
        required: true
        choices: [user, group]
      id:
        description: The object ID.
        type: str
      display_name:
        description: A group's display name.
        type: str
      user_principal_name:
        description: A user's user principal name.
        type: str
  sync_all:
    description:
      - With O(principals), the C(SyncAll) setting the app is going to have (C(NO_ASSIGNMENTS) and C(SYNC_ALL_ENABLED)
        depend on it). Ignored with O(service_principal_id), whose setting is read.
    type: bool
    default: false
  fail_on:
    description:
      - V(error) fails the task when there is at least one finding of severity C(error).
      - V(warning) fails it on errors and warnings.
      - V(never) only reports. RV(passed) still tells whether a finding of severity C(error) exists.
      - The failed result still carries RV(findings) and RV(counts).
    type: str
    choices: [error, warning, never]
    default: error
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - entrascim.cloudflare.entra
  - entrascim.cloudflare.entra.action_group
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - "Microsoft Graph application permissions (least privileged): C(Application.Read.All) (service principal and its
    app role assignments), C(Synchronization.Read.All) (the C(SyncAll) setting; C(Application.ReadWrite.OwnedBy)
    also works for apps the caller owns), C(User.Read.All) (assigned users; C(User.ReadBasic.All) lacks
    C(accountEnabled)) and C(GroupMember.Read.All) (members of assigned groups). C(Directory.Read.All) covers all
    but the synchronization read."
  - A service principal without saved synchronization secrets counts as C(SyncAll) false, the portal default.
  - Directly assigned users are read in C($batch) requests of 20; group members are read with paging.
  - Check mode changes nothing, since the module only reads.
seealso:
  - module: entrascim.cloudflare.cloudflare_scim_check
  - module: entrascim.cloudflare.entra_app_assignment
  - name: Cloudflare SCIM provisioning with Microsoft Entra ID
    description: Cloudflare's Entra guide (UPN and e-mail must be identical; group name limitations).
    link: https://developers.cloudflare.com/fundamentals/account/account-security/scim-setup/entra/
  - name: No users are being provisioned
    description: Microsoft's troubleshooting page (scoping, default-access role, assignments).
    link: https://learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-config-problem-no-users-provisioned
"""

EXAMPLES = r"""
- name: Check the provisioning scope before turning provisioning on
  entrascim.cloudflare.entra_scim_preflight:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    tenant_id: "{{ entra_tenant_id }}"
    client_id: "{{ entra_client_id }}"
    client_secret: "{{ entra_client_secret }}"
  register: preflight

- name: Report every finding without failing
  entrascim.cloudflare.entra_scim_preflight:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    fail_on: never
  register: preflight_report

- name: Show what to fix
  ansible.builtin.debug:
    msg: "{{ item.severity }} {{ item.code }}: {{ item.message }}"
  loop: "{{ preflight_report.findings }}"
  loop_control:
    label: "{{ item.object.name }}"
"""

RETURN = r"""
findings:
  description: What will break (or weaken) Cloudflare provisioning, errors first.
  returned: always
  type: list
  elements: dict
  contains:
    severity:
      description: C(error) (Cloudflare refuses the object or nothing is provisioned), C(warning) or C(info).
      type: str
      sample: error
    code:
      description: >-
        C(UPN_MAIL_MISMATCH), C(MAIL_MISSING), C(USER_DISABLED), C(GROUP_NAME_RESERVED_CF), C(DEPRECATED_VIRTUAL_GROUP),
        C(NESTED_GROUP), C(DEFAULT_ACCESS_ROLE), C(NO_ASSIGNMENTS), C(SYNC_ALL_ENABLED) or C(PRINCIPAL_NOT_FOUND).
      type: str
      sample: UPN_MAIL_MISMATCH
    object:
      description: The object the finding is about.
      type: dict
      contains:
        type:
          description: C(user), C(group), C(service_principal) (or the assigned principal type).
          type: str
          sample: user
        id:
          description: Its object ID.
          type: str
          sample: 6e7b768e-07e2-4810-8459-485f84f8f204
        name:
          description: Its user principal name or display name.
          type: str
          sample: Alice@contoso.com
    message:
      description: What is wrong and what to do about it.
      type: str
      sample: "User 'Alice@contoso.com' has mail 'alice@contoso.com': they differ only in letter case, ..."
counts:
  description: What was checked, and the number of findings per severity.
  returned: always
  type: dict
  contains:
    assignments:
      description: App role assignments of the service principal.
      type: int
      sample: 3
    assigned_users:
      description: Users assigned directly.
      type: int
      sample: 1
    assigned_groups:
      description: Groups assigned.
      type: int
      sample: 2
    group_member_users:
      description: Direct user members of the assigned groups (a user in two groups counts twice).
      type: int
      sample: 14
    nested_groups:
      description: Groups nested in assigned groups.
      type: int
      sample: 0
    users_checked:
      description: Distinct users checked.
      type: int
      sample: 15
    errors:
      description: Findings of severity C(error).
      type: int
      sample: 1
    warnings:
      description: Findings of severity C(warning).
      type: int
      sample: 0
    infos:
      description: Findings of severity C(info).
      type: int
      sample: 0
provisioned_users:
  description:
    - User principal names of the enabled users in scope (assigned directly or direct members of assigned groups) that no
      C(error) finding keeps out of Cloudflare, that is, the users to expect in Cloudflare after a provisioning cycle.
    - The C(cloudflare_scim) role passes them to M(entrascim.cloudflare.cloudflare_scim_check)
      as O(entrascim.cloudflare.cloudflare_scim_check#module:expect_users).
  returned: always
  type: list
  elements: str
  sample: [alice@contoso.com, bob@contoso.com]
sync_all:
  description: The C(SyncAll) setting of the app's provisioning (false = only assigned users and groups).
  returned: always
  type: bool
  sample: false
passed:
  description: Whether no finding makes the task fail under O(fail_on) (with O(fail_on=never), whether there is no error).
  returned: always
  type: bool
  sample: true
service_principal_id:
  description: The service principal that was checked.
  returned: always
  type: str
  sample: a750f6cf-2319-464a-bcc3-456926736a91
"""

from ansible_collections.entrascim.cloudflare.plugins.module_utils._entra_module import EntraModule
from ansible_collections.entrascim.cloudflare.plugins.module_utils._preflight import FAIL_ON, run_preflight


def run(entra):
    params = entra.params
    result, failure = run_preflight(entra.client, params["service_principal_id"], params["fail_on"],
                                    principals=params["principals"], sync_all=params["sync_all"])
    if failure:
        entra.module.fail_json(msg=failure, **result)
    return result


def main():
    EntraModule(
        argument_spec=dict(
            service_principal_id=dict(type="str"),
            principals=dict(type="list", elements="dict", options=dict(
                type=dict(type="str", required=True, choices=["user", "group"]),
                id=dict(type="str"),
                display_name=dict(type="str"),
                user_principal_name=dict(type="str"),
            )),
            sync_all=dict(type="bool", default=False),
            fail_on=dict(type="str", default="error", choices=list(FAIL_ON)),
        ),
        supports_check_mode=True,
        required_one_of=[("service_principal_id", "principals")],
        mutually_exclusive=[("service_principal_id", "principals")],
    ).run(run, step="run the SCIM preflight checks")


if __name__ == "__main__":
    main()

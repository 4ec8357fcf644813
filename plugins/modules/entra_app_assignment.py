#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: entra_app_assignment
short_description: Assign Microsoft Entra users and groups to the enterprise app of a Cloudflare account
version_added: 0.1.0
description:
  - Ensures that users and groups are assigned (or not) to an enterprise app with one of its app roles, by default
    its C(User) role. With "Sync only assigned users and groups" (the default scope), the assigned users and the
    direct members of the assigned groups are the ones provisioned to Cloudflare.
  - Names are resolved to object IDs first; a name that matches no object or several objects fails, naming it,
    before anything is written.
  - The existing assignments are read once. Only missing assignments are created (several at once through
    Microsoft Graph C($batch)), and an assignment that Microsoft Graph reports as already existing counts as present.
  - Assignments are removed only with O(state=absent) (the listed principals) or O(purge=true) (everything not listed).
author:
  - entrascim.cloudflare maintainers (@entrascim)
requirements:
  - requests
  - msal (for the client secret, certificate and managed identity sign-in methods)
options:
  service_principal_id:
    description:
      - The object ID of the service principal of the enterprise app (RV(entrascim.cloudflare.entra_app#module:service_principal.id)).
    type: str
    required: true
  principals:
    description:
      - The users and groups to assign (or, with O(state=absent), to unassign).
      - Duplicates (the same object named twice) are merged.
    type: list
    elements: dict
    required: true
    suboptions:
      type:
        description:
          - Whether the principal is a user or a group.
        type: str
        required: true
        choices: [user, group]
      id:
        description:
          - The object ID of the user or group.
        type: str
      display_name:
        description:
          - The display name of a group (exact match; Microsoft Graph compares it case-insensitively).
          - Only for O(principals[].type=group).
        type: str
      user_principal_name:
        description:
          - The user principal name (sign-in name) of a user.
          - Only for O(principals[].type=user).
        type: str
  app_role:
    description:
      - The app role to assign, by ID, value or display name.
      - The default V(User) is the C(User) role of a non-gallery app; Cloudflare provisioning needs it (users on the
        "Default Access" role may be skipped by provisioning).
      - V(00000000-0000-0000-0000-000000000000) is "Default Access".
    type: str
    default: User
  state:
    description:
      - V(present) assigns O(principals) to O(app_role).
      - V(absent) removes the O(app_role) assignments of O(principals). A principal that does not exist any more has
        nothing to remove, so it is skipped with a warning.
    type: str
    choices: [present, absent]
    default: present
  purge:
    description:
      - With O(state=present), also remove every other assignment of the app, including assignments of other app
        roles and of principals not listed.
      - New assignments are made first and old ones removed after, so a failed create never leaves the app with fewer
        assignments than before.
      - O(principals=[]) with O(purge=true) would remove all assignments (and the next provisioning cycle would
        deprovision every user), so the module refuses it, before any write, unless O(allow_purge_all=true).
      - Ignored with O(state=absent).
    type: bool
    default: false
  allow_purge_all:
    description:
      - Confirm that O(purge=true) with an empty O(principals) list is meant to remove every assignment of the app.
      - Without it such a task fails and changes nothing (an empty list is what a misspelled variable gives).
    type: bool
    default: false
  wait_timeout:
    description:
      - How many seconds to retry reads and writes that a just-created service principal answers with "not found"
        while it replicates.
    type: int
    default: 120
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
  - "Microsoft Graph application permissions (least privileged): C(AppRoleAssignment.ReadWrite.All) and
    C(Application.Read.All) to list, create and remove assignments; C(User.Read.All) (or C(User.ReadBasic.All)) to
    resolve users and C(GroupMember.Read.All) (or C(Group.Read.All)) to resolve groups. C(Directory.Read.All) covers
    all the reads."
  - With a delegated (user) token the signed-in user needs the Application Administrator or Cloud Application
    Administrator role.
  - Entra provisioning does not expand nested groups; M(entrascim.cloudflare.entra_scim_preflight) reports them.
seealso:
  - module: entrascim.cloudflare.entra_app
  - module: entrascim.cloudflare.entra_scim_preflight
  - name: Grant an appRoleAssignment for a service principal (Microsoft Graph)
    description: The Graph API this module calls.
    link: https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignedto
"""

EXAMPLES = r"""
- name: Assign two groups and a user to the Cloudflare app
  entrascim.cloudflare.entra_app_assignment:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    principals:
      - type: group
        display_name: Cloudflare Admins
      - type: group
        id: 5f1c2a43-8d0e-4b1e-9c55-1d2f3a4b5c6d
      - type: user
        user_principal_name: ann@example.com

- name: Make the listed groups the only assignments (remove everything else)
  entrascim.cloudflare.entra_app_assignment:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    principals:
      - type: group
        display_name: Cloudflare Admins
    purge: true

- name: Unassign a user
  entrascim.cloudflare.entra_app_assignment:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    principals:
      - type: user
        user_principal_name: bob@example.com
    state: absent
"""

RETURN = r"""
assignments:
  description:
    - All app role assignments of the app after the task (in check mode, as they would be), sorted by principal type
      and name. An assignment that would be created in check mode has a null C(id).
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: The ID of the assignment.
      type: str
      sample: 9H0L3g4q1Ue0y2b1i3x5u4k9p5m8n2q7r6s1t0v3w8A
    principal_id:
      description: The object ID of the assigned user or group.
      type: str
      sample: 5f1c2a43-8d0e-4b1e-9c55-1d2f3a4b5c6d
    principal_type:
      description: V(User), V(Group) or V(ServicePrincipal).
      type: str
      sample: Group
    principal_display_name:
      description: The display name of the assigned user or group.
      type: str
      sample: Cloudflare Admins
    app_role_id:
      description: The ID of the assigned app role.
      type: str
      sample: 18d14569-c3bd-439b-9a66-3a2aee01d14f
added:
  description: The assignments this task created (or would create in check mode), same shape as RV(assignments).
  returned: success
  type: list
  elements: dict
  sample: []
removed:
  description: The assignments this task removed (or would remove in check mode), same shape as RV(assignments).
  returned: success
  type: list
  elements: dict
  sample: []
app_role:
  description: The app role that O(app_role) resolved to.
  returned: success
  type: dict
  contains:
    id:
      description: The app role ID.
      type: str
      sample: 18d14569-c3bd-439b-9a66-3a2aee01d14f
    value:
      description: The value of the role (null for the roles of a non-gallery app).
      type: str
    display_name:
      description: The display name of the role.
      type: str
      sample: User
skipped_principals:
  description: With O(state=absent), the principals that do not exist (nothing to remove for them).
  returned: success
  type: list
  elements: str
  sample: ["user 'gone@example.com' matches no user"]
progress:
  description: The retries made while the service principal was replicating, one line per retry.
  returned: when the module retried
  type: list
  elements: str
  sample: ["retrying reading service principal a750f6cf-2319-464a-bcc3-456926736a91: attempt 1 answered HTTP 404 ..."]
"""

from ansible_collections.entrascim.cloudflare.plugins.module_utils._assignments import AssignmentService, ensure_assignments
from ansible_collections.entrascim.cloudflare.plugins.module_utils._entra_module import EntraModule


def run(entra):
    params = entra.params
    service = AssignmentService(entra.client, params["service_principal_id"], wait_timeout=params["wait_timeout"],
                                sleep=entra.sleep, clock=entra.clock, progress=entra.progress.append)
    return ensure_assignments(service, params["principals"], app_role=params["app_role"], state=params["state"],
                              purge=params["purge"], check_mode=entra.check_mode, allow_purge_all=params["allow_purge_all"])


def main():
    principal_options = dict(
        type=dict(type="str", required=True, choices=["user", "group"]),
        id=dict(type="str"),
        display_name=dict(type="str"),
        user_principal_name=dict(type="str"),
    )
    argument_spec = dict(
        service_principal_id=dict(type="str", required=True),
        principals=dict(type="list", elements="dict", required=True, options=principal_options,
                        mutually_exclusive=[("id", "display_name", "user_principal_name")],
                        required_one_of=[("id", "display_name", "user_principal_name")]),
        app_role=dict(type="str", default="User"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        purge=dict(type="bool", default=False),
        allow_purge_all=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=120),
    )
    EntraModule(argument_spec, supports_check_mode=True).run(run)


if __name__ == "__main__":
    main()

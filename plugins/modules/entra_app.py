#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: entra_app
short_description: Find or create the Microsoft Entra enterprise app of a Cloudflare account, or delete it
version_added: 0.1.0
description:
  - Ensures that one Microsoft Entra enterprise application (an application and its service principal) made from
    an application template exists, or does not exist. Cloudflare needs one such app per Cloudflare account.
  - The app is looked up by its display name B(and) its application template ID, never created twice. No match
    creates it with the template's C(instantiate) action, one match is adopted, and several matches fail listing
    their IDs so that you can delete the extra ones or pin the right one with O(app_id).
  - C(instantiate) can answer HTTP 404 while it is in fact creating the app. The module then polls for the app it
    created (by name and template) instead of creating a second one.
  - Two runs that both found no app both create one (runs at the same time, or a run started again right after one
    that was killed after its C(instantiate), before the new app is listed). With O(wait), a run that created an app
    and then sees an older one with the same name deletes its own and adopts the oldest, with a warning, so that
    every run keeps the same app. It only ever deletes the app it created itself.
  - What the module creates or adopts is marked with the tag C(entrascim.cloudflare) (and
    C(entrascim.cloudflare:account:<account_id>) with O(account_id)) in the C(tags) of its service principal. An
    existing app with the name but without the marker is adopted (the marker is added and the task reports a change).
    The module changes nothing else on an existing app; in particular it leaves the C(notes) of the service principal
    alone, where M(entrascim.cloudflare.entra_sync_secrets) keeps its token fingerprint.
  - O(state=absent) deletes only a marked app (for O(account_id) when given). An app without the marker is reported
    and left alone, unless it is pinned by O(app_id) and O(delete_unmarked=true).
  - Names are matched exactly, letter case included. An app whose name differs only in case is never adopted or
    deleted; with O(state=present) it fails the task before anything is created, since Microsoft Entra would show
    two apps that look the same.
  - Before creating an app, the module checks that the application template exists (one read), so that an unknown
    O(template_id) fails at once instead of being polled for O(wait_timeout).
author:
  - entrascim.cloudflare maintainers (@entrascim)
requirements:
  - requests
  - msal (for the client secret, certificate and managed identity sign-in methods)
options:
  display_name:
    description:
      - The display name of the enterprise app, for example C(Cloudflare SCIM - <account name>).
      - The lookup is an exact match on the name, letter case included (Microsoft Graph compares names ignoring case;
        the module checks the case itself).
      - Required unless O(app_id) is given. When both are given, the pinned app must have this name.
    type: str
  template_id:
    description:
      - The ID of the application template to make the app from, and to look it up by.
      - Defaults to the non-gallery ("Create your own application") template of the selected O(cloud), which is
        C(8adf8e6e-67b2-4cf2-a259-e3dc5476c621) in the public cloud, C(4602d0b4-76bb-404b-bca9-2652e1a39c6d) in
        US Government and C(5a532e38-1581-4918-9658-008dc27c1d68) in China (21Vianet).
    type: str
  app_id:
    description:
      - The application (client) ID of one exact app to manage instead of looking it up by name and template.
      - Use it to pick one of several apps that have the same display name (the module lists their IDs).
      - With O(state=present) the app must exist; it is never created.
    type: str
  state:
    description:
      - V(present) finds or creates the app.
      - V(absent) deletes the application, if it carries the marker of this collection; its service principal,
        provisioning job and assignments go with it. Microsoft keeps the deleted application restorable for 30 days.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description:
      - After creating the app, wait until the application, its service principal and the name lookup answer
        several consecutive reads, so that the following tasks (provisioning job, assignments) and re-runs see it.
      - After deleting the app, wait until it answers "not found" several times in a row.
    type: bool
    default: true
  wait_timeout:
    description:
      - How many seconds to wait for Microsoft Entra replication, also when C(instantiate) answered 404 and the
        module polls for the app it created.
    type: int
    default: 300
  account_id:
    description:
      - The Cloudflare account (32 hexadecimal characters) this app provisions to. It is recorded in the marker tag.
      - With O(state=present), an app marked for another account fails the task before any write.
      - With O(state=absent), an app marked for another account is left alone.
    type: str
  delete_unmarked:
    description:
      - With O(state=absent) and O(app_id), delete the pinned app even though it has no marker of this collection
        (an app made by hand or by an older version of the collection that never ran O(state=present) on it).
      - Without it, such an app is reported in RV(left_alone) and kept.
    type: bool
    default: false
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
  - "Microsoft Graph application permissions (least privileged): C(Application.ReadWrite.OwnedBy) to create the app
    and to delete an app that the calling app owns (C(Application.ReadWrite.All) to delete any app), and
    C(Application.Read.All) to look apps up (C(Application.ReadWrite.All) covers both)."
  - With a delegated (user) token the signed-in user needs the Application Administrator or Cloud Application
    Administrator role.
  - In check mode an app that would be created is returned with null IDs.
seealso:
  - module: entrascim.cloudflare.entra_sync_job
  - module: entrascim.cloudflare.entra_app_assignment
  - name: Create a non-gallery application with Microsoft Graph (applicationTemplate instantiate)
    description: The Graph API this module calls.
    link: https://learn.microsoft.com/graph/api/applicationtemplate-instantiate
"""

EXAMPLES = r"""
- name: Ensure the enterprise app of a Cloudflare account exists
  entrascim.cloudflare.entra_app:
    display_name: Cloudflare SCIM - Production
    tenant_id: "{{ entra_tenant_id }}"
    client_id: "{{ entra_client_id }}"
    client_secret: "{{ entra_client_secret }}"
  register: cloudflare_app

- name: Show the service principal ID used by the provisioning tasks
  ansible.builtin.debug:
    msg: "{{ cloudflare_app.service_principal.id }}"

- name: Adopt one of two apps that have the same name
  entrascim.cloudflare.entra_app:
    display_name: Cloudflare SCIM - Production
    # The app_id (application ID) of the app to keep: the error about duplicate apps lists them all
    app_id: "{{ production_app_id }}"

- name: Delete the enterprise app (with its provisioning job and assignments)
  entrascim.cloudflare.entra_app:
    display_name: Cloudflare SCIM - Staging
    state: absent
"""

RETURN = r"""
application:
  description:
    - The application object (the app registration side of the enterprise app).
    - With O(state=absent), the application that was deleted (empty when there was none).
    - In check mode, an application that would be created has null C(id) and C(app_id).
  returned: success
  type: dict
  contains:
    id:
      description: The object ID of the application (used to delete it).
      type: str
      sample: 9ac1b9e4-6d45-4f1c-8a3c-0f6a0b9d1c11
    app_id:
      description: The application (client) ID, shared by the application and its service principal.
      type: str
      sample: 17cad0e7-cd2b-4e51-a75d-ba810f3e4045
    display_name:
      description: The display name.
      type: str
      sample: Cloudflare SCIM - Production
    application_template_id:
      description: The ID of the application template the app was made from.
      type: str
      sample: 8adf8e6e-67b2-4cf2-a259-e3dc5476c621
service_principal:
  description:
    - The service principal (the enterprise app). Its C(id) is the C(service_principal_id) of
      M(entrascim.cloudflare.entra_sync_job), M(entrascim.cloudflare.entra_sync_secrets) and
      M(entrascim.cloudflare.entra_app_assignment).
    - With O(state=absent), the service principal that was deleted with the application (empty when there was none).
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
    app_roles:
      description: The app roles users and groups can be assigned to (C(User) and C(msiam_access) for a new app).
      type: list
      elements: dict
      contains:
        id:
          description: The app role ID.
          type: str
          sample: 18d14569-c3bd-439b-9a66-3a2aee01d14f
        value:
          description: The value of the role in tokens (null for the roles of a new non-gallery app).
          type: str
        display_name:
          description: The display name of the role.
          type: str
          sample: User
    managed:
      description: Whether the service principal carries the marker tag of this collection (after the task).
      type: bool
      sample: true
    cloudflare_account_id:
      description: The Cloudflare account its marker names (null without an account tag).
      type: str
      sample: 023e105f4ecef8ad9ca31a8372d0c353
adopted:
  description: With O(state=present), true when an existing app without the marker (or without the account tag) was
    marked by this task.
  returned: with state=present
  type: bool
  sample: false
left_alone:
  description: With O(state=absent), why an app with the name was not deleted (no marker, or marked for another
    account). Also given as a warning.
  returned: when an app was found and kept
  type: str
  sample: "Left alone: application 9ac1... (app_id 17ca...) named 'Cloudflare SCIM - Production' has no entrascim.cloudflare marker ..."
progress:
  description: What the module waited for (replication, the app created by an C(instantiate) that answered 404), one line per read.
  returned: when the module waited
  type: list
  elements: str
  sample:
    - "waiting for application 9ac1b9e4-6d45-4f1c-8a3c-0f6a0b9d1c11: read 1, visible (1 of 3 consecutive reads), 0 s elapsed"
"""

from ansible_collections.entrascim.cloudflare.plugins.module_utils._app_service import AppService
from ansible_collections.entrascim.cloudflare.plugins.module_utils._apps import ensure_app
from ansible_collections.entrascim.cloudflare.plugins.module_utils._entra_module import EntraModule


def run(entra):
    params = entra.params
    service = AppService(entra.client, wait_timeout=params["wait_timeout"], sleep=entra.sleep, clock=entra.clock,
                         progress=entra.progress.append)
    return ensure_app(service, params["state"], params["display_name"], params["template_id"] or entra.cloud["non_gallery_template_id"],
                      app_id=params["app_id"], wait=params["wait"], check_mode=entra.check_mode, account_id=params["account_id"],
                      delete_unmarked=params["delete_unmarked"])


def main():
    argument_spec = dict(
        display_name=dict(type="str"),
        template_id=dict(type="str"),
        app_id=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=300),
        account_id=dict(type="str"),
        delete_unmarked=dict(type="bool", default=False),
    )
    EntraModule(argument_spec, supports_check_mode=True, required_one_of=[("display_name", "app_id")]).run(run)


if __name__ == "__main__":
    main()

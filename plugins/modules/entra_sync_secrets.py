#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: entra_sync_secrets
short_description: Test and store the SCIM URL and token of a Microsoft Entra provisioning job
version_added: 0.1.0
description:
  - Stores the provisioning credentials of an enterprise app (the "Admin Credentials" of the Entra admin center)
    C(BaseAddress) (Tenant URL), C(SecretToken) (the Cloudflare SCIM token), C(SyncAll) (scope) and
    C(SyncNotificationSettings) (failure notification e-mail).
  - With O(validate=true) the module first runs the admin center's "Test Connection" with the B(new) values (the
    provisioning service calls the SCIM endpoint with them) and writes nothing if the endpoint rejects them, so a bad
    token never replaces a working one. All keys are then written in one request, so nothing is ever half written.
  - Microsoft Graph never returns a saved token (it reads back as C(*)). To tell whether the token changed, the
    module keeps a fingerprint of it in the C(notes) of the service principal, on one line of the form
    C(entrascim.cloudflare:scim-token-sha256:<64 hex digits>), the SHA-256 of C(<service principal id>:<token>). The
    fingerprint cannot be turned back into the token. Other text in C(notes) is kept as it is.
  - C(BaseAddress), C(SyncAll) and the notification settings are compared with the values Graph reads back, so
    drift made in the admin center is repaired.
author:
  - entrascim.cloudflare maintainers (@entrascim)
requirements:
  - requests
  - msal (for the client secret, certificate and managed identity sign-in methods)
options:
  service_principal_id:
    description:
      - The object ID of the enterprise app's service principal (not its application ID).
    type: str
    required: true
  base_address:
    description:
      - The SCIM base URL (Tenant URL), an https URL. For Cloudflare
        C(https://api.cloudflare.com/client/v4/accounts/<account id>/scim/v2).
    type: str
    required: true
  secret_token:
    description:
      - The bearer token the provisioning service sends to the SCIM endpoint. For Cloudflare an API token with the
        C(SCIM Provisioning) permission; an account-owned token is recommended.
      - It is never returned, logged or shown in a diff.
    type: str
    required: true
  sync_all:
    description:
      - V(false) provisions only the users and groups assigned to the app (the admin center's default, and what
        Cloudflare setups use), V(true) provisions every user and group of the directory.
    type: bool
    default: false
  notification_email:
    description:
      - The address that receives an e-mail when the job goes to quarantine. An empty string turns the
        notifications off. Not set means leave the notification settings as they are.
    type: str
  validate:
    description:
      - Test the new URL and token with the SCIM endpoint before saving anything (C(validateCredentials) with
        C(useSavedCredentials=false)). The test runs only when something is to be written (also in check mode,
        where it changes nothing) and needs the provisioning job to exist.
      - If the endpoint rejects them the task fails with its reason and the saved secrets stay as they were.
    type: bool
    default: true
  update_secret_token:
    description:
      - V(when_changed) writes the token when none is saved or when it differs from the one this module saved last
        (by fingerprint). A re-run with the same token changes nothing.
      - V(always) writes the token on every run (always a change).
      - V(on_create) writes the token only when none is saved yet, and never replaces a saved one (for tokens
        rotated outside Ansible).
    type: str
    choices: [when_changed, always, on_create]
    default: when_changed
  job_id:
    description:
      - The ID of the provisioning job to test the credentials with. Found by O(template_id) when not given.
    type: str
  template_id:
    description:
      - The synchronization template of the job to test the credentials with, when O(job_id) is not given.
    type: str
    default: scim
  wait_timeout:
    description:
      - How many seconds to retry calls on an enterprise app that Microsoft Entra is still replicating.
    type: int
    default: 300
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
    app owns the enterprise app; otherwise C(Synchronization.ReadWrite.All) (read, test and save the secrets) and
    C(Application.ReadWrite.All) (read and update the C(notes) of the service principal that hold the fingerprint)."
  - With a delegated (user) token the signed-in user needs the Application Administrator or Cloud Application
    Administrator role.
  - The diff shows the URL, scope, notification settings, whether a token is saved and its fingerprint; never the token.
  - The fingerprint line counts towards the 1024 characters Microsoft Entra allows in C(notes); the module fails
    before writing anything if it would not fit.
seealso:
  - module: entrascim.cloudflare.entra_sync_job
  - module: entrascim.cloudflare.cloudflare_scim_check
  - name: Add synchronization secrets (Microsoft Graph)
    description: The PUT this module makes.
    link: https://learn.microsoft.com/graph/api/synchronization-serviceprincipal-put-synchronization
  - name: Set up SCIM provisioning with Microsoft Entra ID (Cloudflare)
    description: Where the Tenant URL and the token come from.
    link: https://developers.cloudflare.com/fundamentals/account/account-security/scim-setup/entra/
"""

EXAMPLES = r"""
- name: Test and store the Cloudflare SCIM URL and token
  entrascim.cloudflare.entra_sync_secrets:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    job_id: "{{ cloudflare_job.job.id }}"
    # https://api.cloudflare.com/client/v4/accounts/<account ID>/scim/v2, unless cloudflare_api_endpoint names another API
    base_address: "{{ cloudflare_api_endpoint | default('https://api.cloudflare.com/client/v4') }}/accounts/{{ cloudflare_account_id }}/scim/v2"
    secret_token: "{{ cloudflare_scim_token }}"
    sync_all: false
    notification_email: provisioning-alerts@example.com
  register: cloudflare_secrets

- name: Show which keys were written (names only)
  ansible.builtin.debug:
    msg: "{{ cloudflare_secrets.changed_keys }}"

- name: Store a token only if none is saved yet (tokens are rotated elsewhere)
  entrascim.cloudflare.entra_sync_secrets:
    service_principal_id: "{{ cloudflare_app.service_principal.id }}"
    # https://api.cloudflare.com/client/v4/accounts/<account ID>/scim/v2, unless cloudflare_api_endpoint names another API
    base_address: "{{ cloudflare_api_endpoint | default('https://api.cloudflare.com/client/v4') }}/accounts/{{ cloudflare_account_id }}/scim/v2"
    secret_token: "{{ cloudflare_scim_token }}"
    update_secret_token: on_create
"""

RETURN = r"""
validated:
  description:
    - Whether the SCIM endpoint accepted the new URL and token in this run. V(false) when nothing had to be written
      (no test was needed), with O(validate=false), or in check mode when the job does not exist yet.
  returned: success
  type: bool
  sample: true
changed_keys:
  description: The names of the secrets whose value was (or in check mode would be) written. Never their values.
  returned: success
  type: list
  elements: str
  sample: [BaseAddress, SecretToken, SyncAll]
job_id:
  description: The provisioning job the credentials were tested with (null when no test ran and O(job_id) was not given).
  returned: success
  type: str
  sample: scim.0c7a6f3b9a2a4c5e8f1d2b3c4d5e6f70.17cad0e7-cd2b-4e51-a75d-ba810f3e4045
settings:
  description: The non-secret settings after the task (predicted in check mode).
  returned: success
  type: dict
  contains:
    base_address:
      description: The saved SCIM base URL.
      type: str
      sample: https://api.cloudflare.com/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/scim/v2
    sync_all:
      description: Whether every user and group is in scope (null when not set).
      type: bool
      sample: false
    notification_email:
      description: The address of the failure notifications (null when none).
      type: str
      sample: provisioning-alerts@example.com
    notifications_enabled:
      description: Whether failure notifications are on (null when not set).
      type: bool
      sample: true
    secret_token_saved:
      description: Whether a token is saved.
      type: bool
      sample: true
"""

from ansible_collections.entrascim.cloudflare.plugins.module_utils._entra_module import EntraModule
from ansible_collections.entrascim.cloudflare.plugins.module_utils._secrets import UPDATE_TOKEN_MODES, ensure_secrets
from ansible_collections.entrascim.cloudflare.plugins.module_utils._sync import SyncService


def run(entra):
    params = entra.params
    service = SyncService(entra.client, params["service_principal_id"], timeout=params["wait_timeout"], sleep=entra.sleep,
                          clock=entra.clock)
    return ensure_secrets(service, params["base_address"], params["secret_token"], sync_all=params["sync_all"],
                          notification_email=params["notification_email"], validate=params["validate"],
                          update_secret_token=params["update_secret_token"], job_id=params["job_id"],
                          template_id=params["template_id"], check_mode=entra.check_mode)


def main():
    argument_spec = dict(
        service_principal_id=dict(type="str", required=True),
        base_address=dict(type="str", required=True),
        secret_token=dict(type="str", required=True, no_log=True),
        sync_all=dict(type="bool", default=False),
        notification_email=dict(type="str"),
        validate=dict(type="bool", default=True),
        update_secret_token=dict(type="str", default="when_changed", choices=list(UPDATE_TOKEN_MODES), no_log=False),
        job_id=dict(type="str"),
        template_id=dict(type="str", default="scim"),
        wait_timeout=dict(type="int", default=300),
    )
    EntraModule(argument_spec, supports_check_mode=True).run(run)


if __name__ == "__main__":
    main()

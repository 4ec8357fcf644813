#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: cloudflare_scim_check
short_description: Check a Cloudflare account's SCIM endpoint with its token, and whether users and groups arrived
version_added: 0.1.0
description:
  - Answers "did it actually provision?" from the Cloudflare side. The module only reads; it never changes anything
    in Cloudflare and always reports C(changed=false).
  - B(Reachability.) It calls the account's SCIM endpoint C(<api_endpoint>/accounts/<account_id>/scim/v2), the
    Tenant URL that Entra uses. When no answer comes (DNS, connection, TLS, timeout) RV(reachable) is V(false) and the
    task fails. Check O(api_endpoint), proxies and O(ca_path).
  - B(Token.) It lists C(Users) with the token (discovery endpoints may answer without one). HTTP 401 means the SCIM
    token was rejected (wrong, expired or revoked); HTTP 403 means the token lacks the B(SCIM Provisioning) permission
    for this account (or SCIM is not enabled for the account, an Enterprise feature). Either way RV(token_valid) is
    V(false) and the task fails. Create a Cloudflare API token with B(Account > SCIM Provisioning > Edit), preferably
    an B(account-owned) token (a user-owned token stops working when its owner leaves or loses access), and store it
    with M(entrascim.cloudflare.entra_sync_secrets).
  - B(Service provider configuration.) It reads C(ServiceProviderConfig) and returns the basics (PATCH, filter,
    bulk support). A failure to read it is only a warning.
  - B(Counts.) It counts the SCIM users and groups of the account (groups include Cloudflare's C(cloudflare-v1-)
    system groups, counted separately in RV(system_groups)), paging with C(startIndex)/C(count).
  - B(Expected users and groups.) With O(expect_users) and O(expect_groups) it lists every user and group and
    reports the expected ones that are not there in RV(missing_users) and RV(missing_groups). Names are compared
    exactly, then ignoring letter case (a case-only difference is found but warned about). With O(wait_timeout) it
    polls (after 2, 4, 8 and then every 15 seconds) until all expected objects are there. When some are still missing
    the task fails (unless O(fail_on_missing=false)). Then check that they are assigned to the Entra app, that the
    provisioning job runs (M(entrascim.cloudflare.entra_sync_job_info)) and that no finding of
    M(entrascim.cloudflare.entra_scim_preflight) blocks them. A provisioning cycle can take 40 minutes.
  - B(Deprecated virtual groups.) Groups named like C(CF-<accountID> - <Role Name>) are Cloudflare's legacy virtual
    groups, deprecated since 2025-06-02 and end-of-life since 2025-12-02. They are listed in RV(deprecated_groups)
    with a warning. Migrate to SCIM user groups with permission policies (new group names that do not start with
    C(CF)), then remove the virtual groups and their Entra mappings.
  - B(Expectations that can never be met) are warned about. An expected group whose name starts with C(CF) is refused
    by Cloudflare. An expected user name that is not an e-mail address is not a Cloudflare user name.
author:
  - entrascim.cloudflare maintainers (@entrascim)
requirements:
  - requests
options:
  account_id:
    description:
      - The Cloudflare account ID, 32 hexadecimal characters (Cloudflare dashboard, Account home, Account ID).
    type: str
    required: true
  scim_token:
    description:
      - The Cloudflare API token that Entra uses for SCIM provisioning of this account (the C(SecretToken)).
      - It is only sent in the C(Authorization) header of the requests to O(api_endpoint); it is never returned,
        logged or shown in messages.
    type: str
    required: true
  expect_users:
    description:
      - User names (e-mail addresses, the Entra user principal names) that must be present in Cloudflare.
    type: list
    elements: str
    default: []
  expect_groups:
    description:
      - Group display names that must be present in Cloudflare.
    type: list
    elements: str
    default: []
  wait_timeout:
    description:
      - Seconds to keep polling until every expected user and group is present, for use right after provisioning
        started. V(0) checks once.
      - For waits of many minutes, prefer a short O(wait_timeout) inside an C(until)/C(retries) loop so that every
        attempt prints a line.
    type: int
    default: 0
  fail_on_missing:
    description:
      - Fail the task when an expected user or group is missing (after O(wait_timeout)).
      - With V(false), missing objects are only reported in RV(missing_users) and RV(missing_groups).
      - Only applies when O(expect_users) or O(expect_groups) is given.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - entrascim.cloudflare.cloudflare
  - entrascim.cloudflare.cloudflare.action_group
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The module calls only the Cloudflare API, no Microsoft Graph API, so it needs no Graph permission. The token needs
    the Cloudflare permission B(Account > SCIM Provisioning > Edit) (Cloudflare has no read-only SCIM permission).
  - When the task fails because the endpoint is unreachable, the token is rejected or objects are missing, the
    failed result still carries every return value. Use C(failed_when) to only report.
  - Check mode changes nothing, since the module only reads.
seealso:
  - module: entrascim.cloudflare.entra_sync_secrets
  - module: entrascim.cloudflare.entra_scim_preflight
  - module: entrascim.cloudflare.entra_sync_job_info
  - name: Cloudflare SCIM provisioning setup
    description: Cloudflare's guide, with the Entra ID specifics and limitations.
    link: https://developers.cloudflare.com/fundamentals/account/account-security/scim-setup/
  - name: SCIM virtual groups migration
    description: Why the CF-<accountID> - <Role Name> groups are deprecated and how to migrate.
    link: https://developers.cloudflare.com/fundamentals/reference/migration-guides/scim-virtual-groups-migration/
"""

EXAMPLES = r"""
- name: Check that the SCIM token of the account works
  entrascim.cloudflare.cloudflare_scim_check:
    account_id: 023e105f4ecef8ad9ca31a8372d0c353
    scim_token: "{{ cloudflare_scim_token }}"
  register: scim

- name: Wait until the first users and groups arrived in Cloudflare
  entrascim.cloudflare.cloudflare_scim_check:
    account_id: 023e105f4ecef8ad9ca31a8372d0c353
    scim_token: "{{ cloudflare_scim_token }}"
    expect_users:
      - alice@example.com
      - bob@example.com
    expect_groups:
      - Cloudflare Engineers
    wait_timeout: 60
  register: arrival
  until: arrival is succeeded
  retries: 40
  delay: 5

- name: Only report (an audit that must not stop on a broken account)
  entrascim.cloudflare.cloudflare_scim_check:
    account_id: 023e105f4ecef8ad9ca31a8372d0c353
    scim_token: "{{ cloudflare_scim_token }}"
    expect_groups:
      - Cloudflare Engineers
    fail_on_missing: false
  register: audit
  failed_when: false

- name: Show what needs attention
  ansible.builtin.debug:
    msg: >-
      token valid: {{ audit.token_valid }}, users: {{ audit.users }}, missing groups: {{ audit.missing_groups }},
      deprecated groups: {{ audit.deprecated_groups | map(attribute='display_name') | list }}
"""

RETURN = r"""
scim_base_url:
  description: The SCIM endpoint of the account (the Tenant URL / C(BaseAddress) Entra uses).
  returned: always
  type: str
  sample: https://api.cloudflare.com/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/scim/v2
reachable:
  description: Whether the SCIM endpoint answered at all (any HTTP status).
  returned: always
  type: bool
  sample: true
token_valid:
  description:
    - V(true) when the token listed SCIM users, V(false) when Cloudflare rejected it (HTTP 401) or it lacks the SCIM
      Provisioning permission (HTTP 403), null when that could not be told (unreachable, HTTP 404 or other errors).
  returned: always
  type: bool
  sample: true
service_provider_config:
  description: The basics of the SCIM ServiceProviderConfig (empty when it could not be read).
  returned: always
  type: dict
  contains:
    patch_supported:
      description: PATCH support.
      type: bool
    bulk_supported:
      description: Bulk operation support.
      type: bool
    bulk_max_operations:
      description: Maximum operations in a bulk request.
      type: int
    filter_supported:
      description: Filter support.
      type: bool
    filter_max_results:
      description: Maximum results of a filtered listing.
      type: int
    change_password_supported:
      description: Password change support.
      type: bool
    sort_supported:
      description: Sorting support.
      type: bool
    etag_supported:
      description: ETag support.
      type: bool
    authentication_schemes:
      description: The types of the authentication schemes.
      type: list
      elements: str
      sample: [oauthbearertoken]
users:
  description: The number of SCIM users (account members) of the account; null when they could not be listed.
  returned: always
  type: int
  sample: 42
groups:
  description: The number of SCIM groups of the account, system groups included; null when they could not be listed.
  returned: always
  type: int
  sample: 5
system_groups:
  description: How many of RV(groups) are Cloudflare system groups (named C(cloudflare-v1-...)).
  returned: always
  type: int
  sample: 2
missing_users:
  description: The O(expect_users) that are not in Cloudflare.
  returned: always
  type: list
  elements: str
  sample: [carol@example.com]
missing_groups:
  description: The O(expect_groups) that are not in Cloudflare.
  returned: always
  type: list
  elements: str
  sample: []
deprecated_groups:
  description: Groups that follow the deprecated C(CF-<accountID> - <Role Name>) virtual-group pattern.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The SCIM id of the group.
      type: str
    display_name:
      description: The group name.
      type: str
      sample: CF-023e105f4ecef8ad9ca31a8372d0c353 - Administrator Read Only
    account_id:
      description: The account ID in the name.
      type: str
      sample: 023e105f4ecef8ad9ca31a8372d0c353
    role:
      description: The role name in the name.
      type: str
      sample: Administrator Read Only
polls:
  description: How many times users and groups were listed (more than one when the module waited).
  returned: always
  type: int
  sample: 1
warnings:
  description: What needs attention without failing the task (deprecated groups, letter-case differences,
    expectations that can never be met, an unreadable ServiceProviderConfig).
  returned: when there is something to warn about
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.entrascim.cloudflare.plugins.module_utils._cloudflare import (
    CloudflareScimClient, ScimCheck, cloudflare_argument_spec, valid_account_id)
from ansible_collections.entrascim.cloudflare.plugins.module_utils._runner import ModuleRunner


def input_problems(params):
    """What is wrong with the options, found before the token is sent anywhere."""
    problems = []
    if not valid_account_id(params["account_id"]):
        problems.append("account_id must be the 32 hexadecimal characters of a Cloudflare account ID, got %r." % params["account_id"])
    if params["wait_timeout"] < 0 or params["timeout"] <= 0:
        problems.append("wait_timeout must be 0 or more and timeout more than 0 seconds.")
    if not params["api_endpoint"].lower().startswith("https://"):
        problems.append("api_endpoint must be an https:// URL (the SCIM token would travel in clear), got %r." % params["api_endpoint"])
    if not params["scim_token"]:
        problems.append("scim_token is empty.")
    return problems


def main():
    argument_spec = cloudflare_argument_spec(
        account_id=dict(type="str", required=True),
        scim_token=dict(type="str", required=True, no_log=True),
        expect_users=dict(type="list", elements="str", default=[]),
        expect_groups=dict(type="list", elements="str", default=[]),
        wait_timeout=dict(type="int", default=0),
        fail_on_missing=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    runner = ModuleRunner(module, argument_spec)
    params = module.params
    problems = input_problems(params)
    if problems:
        module.fail_json(msg=" ".join(problems))
    if not params["validate_certs"]:
        runner.warn("validate_certs is false: the TLS certificate of the Cloudflare API is not checked, so anyone on the "
                    "network path can read the SCIM token. Use ca_path for a private CA instead.")

    def check():
        client = CloudflareScimClient(params["account_id"], params["scim_token"], api_endpoint=params["api_endpoint"],
                                      validate_certs=params["validate_certs"], ca_path=params["ca_path"], timeout=params["timeout"])
        result, failure, warnings = ScimCheck(client, expect_users=params["expect_users"], expect_groups=params["expect_groups"],
                                              wait_timeout=params["wait_timeout"], fail_on_missing=params["fail_on_missing"]).run()
        for warning in warnings:
            runner.warn(warning)
        if failure:
            module.fail_json(msg=failure, **result)
        return result

    runner.run(check, step="check the Cloudflare SCIM endpoint")


if __name__ == "__main__":
    main()

# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the cloudflare_scim role's inputs: ``scim_input_errors`` and ``scim_base_address``.

The Cloudflare rules come from module_utils/_cloudflare.py (the account id, the SCIM base address), so the role and
the modules check the same thing. Two rules of the role have no function there and are defined here:
``https_endpoint`` and ``reserved_cf_name``. Their documentation is in scim_input_errors.yml and
scim_base_address.yml next to this file.

ansible-core imports every filter file of the collection in each worker process that uses any filter of it
(docs/performance.md), so the module_utils are imported only when a filter of this file runs, not with the file.
"""

import re

from collections.abc import Mapping

# Entra sends the SCIM token to the BaseAddress: the role refuses an api_endpoint that is not https://<host>...
HTTPS_ENDPOINT_RE = re.compile(r"^https://[^/]", re.IGNORECASE)
# ... and group names starting with CF, a prefix Cloudflare reserves (it refuses to create such groups).
RESERVED_PREFIX = "CF"

ACCOUNT_ID_MESSAGE = ("cloudflare_scim_account_id '%s' is not a Cloudflare account id (32 hexadecimal characters; see Manage "
                      "Account > Configurations in the Cloudflare dashboard).")
TOKEN_MESSAGE = ("cloudflare_scim_token is required with cloudflare_scim_state=present: a Cloudflare API token with the SCIM "
                 "Provisioning permission for this account (keep it in a vault or an AWX credential).")
HTTPS_MESSAGE = ("cloudflare_scim_api_endpoint '%s' is not an https URL: Entra sends the SCIM token to it, and Cloudflare's is "
                 "https://api.cloudflare.com/client/v4 (the default); set an https:// URL.")
PURGE_MESSAGE = ("cloudflare_scim_assignments_purge=true with an empty cloudflare_scim_assignments would remove every user and "
                 "group from the app, and Entra would then deprovision all of them in Cloudflare: check the variable's name, "
                 "or set cloudflare_scim_assignments_purge_all=true if that is what you want.")
CF_GROUP_MESSAGE = ("cloudflare_scim_assignments: group(s) '%s' start with 'CF', a prefix Cloudflare reserves, so Cloudflare would "
                    "refuse to create them: rename the group(s) in Entra ID (or assign others).")


_DEFAULT = object()  # api_endpoint not given: _cloudflare.DEFAULT_API_ENDPOINT (None is checked as the text 'None')


def _cloudflare():
    """module_utils/_cloudflare.py (the account id rule, the SCIM base address), imported on first use."""
    from ansible_collections.entrascim.cloudflare.plugins.module_utils import _cloudflare as cloudflare
    return cloudflare


def _text(value):
    """``value`` as Jinja's ``string`` filter and ``~`` show it (None is 'None')."""
    return value if isinstance(value, str) else str(value)


def https_endpoint(api_endpoint):
    """True when ``api_endpoint`` starts with ``https://`` and a host (any letter case)."""
    return bool(HTTPS_ENDPOINT_RE.match(_text(api_endpoint)))


def reserved_cf_name(name):
    """True when ``name`` starts with ``CF`` (exact letter case: that is what Cloudflare refuses)."""
    return _text(name).startswith(RESERVED_PREFIX)


def scim_input_errors(account_id, state="present", token=None, api_endpoint=_DEFAULT, assignments=None, purge=False,
                      purge_all=False):
    """The problems with the role's variables that are found without any call, one message each, in this order:
    account id, token, https SCIM URL, purge with an empty list, CF-prefixed group names. Empty when all is well.

    With ``state='absent'`` only the account id is checked. ``purge`` and ``purge_all`` are booleans (the role passes
    them through the ``bool`` filter)."""
    cloudflare = _cloudflare()
    errors = []
    if not cloudflare.valid_account_id(_text(account_id)):
        errors.append(ACCOUNT_ID_MESSAGE % _text(account_id))
    if state == "absent":
        return errors
    assignments = assignments or []
    if not token:
        errors.append(TOKEN_MESSAGE)
    if api_endpoint is _DEFAULT:
        api_endpoint = cloudflare.DEFAULT_API_ENDPOINT
    if not https_endpoint(api_endpoint):
        errors.append(HTTPS_MESSAGE % _text(api_endpoint))
    if purge and not purge_all and len(assignments) == 0:
        errors.append(PURGE_MESSAGE)
    names = [item.get("display_name", "") for item in assignments if isinstance(item, Mapping)]
    reserved = [_text(name) for name in names if reserved_cf_name(name)]
    if reserved:
        errors.append(CF_GROUP_MESSAGE % "', '".join(reserved))
    return errors


def scim_base_address(account_id, api_endpoint=None):
    """``<api_endpoint>/accounts/<account_id>/scim/v2``, the BaseAddress (Tenant URL) Entra provisions to."""
    return _cloudflare().scim_base_url(None if api_endpoint is None else _text(api_endpoint), _text(account_id))


class FilterModule(object):
    """The cloudflare_scim role's input filters."""

    def filters(self):
        return {
            "scim_input_errors": scim_input_errors,
            "scim_base_address": scim_base_address,
        }

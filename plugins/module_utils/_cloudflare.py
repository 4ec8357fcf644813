# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cloudflare SCIM v2 client and the checks of ``cloudflare_scim_check``.

Cloudflare facts used here:

* SCIM base address ``<api_endpoint>/accounts/<ACCOUNT_ID>/scim/v2``; the token is a Cloudflare API token with
  *Account > SCIM Provisioning > Edit*; account-owned tokens are recommended because a user-owned token stops
  working when its owner's access changes (cloudflare/cloudflare-docs
  ``src/content/docs/fundamentals/account/account-security/scim-setup/index.mdx`` and ``entra.mdx``).
* ``GET Users`` / ``GET Groups`` list resources with ``startIndex``/``count`` paging (RFC 7644 §3.4.2.4) and a
  ``filter``; Groups also lists the ``cloudflare-v1-`` system groups (cloudflare/api-schemas ``openapi.json``,
  operations ``scim-users-list`` and ``scim-groups-list``).
* The legacy virtual groups ``CF-<accountID> - <Role Name>`` are deprecated since 2025-06-02 (end of life
  2025-12-02) in favour of SCIM user groups with permission policies (cloudflare-docs
  ``src/content/docs/fundamentals/reference/migration-guides/scim-virtual-groups-migration.mdx``); SCIM group names
  must not start with ``CF``.

HTTP goes through ``_transport.Transport`` (TLS settings on every request so ``ca_path``/``validate_certs`` beat
``REQUESTS_CA_BUNDLE``; 429/503 honour ``Retry-After``; 5xx and connection errors back off with jitter).
The SCIM token is only ever put in the ``Authorization`` header; error texts are redacted with it.
"""

import copy
import json
import re
import time

from ._consistency import wait_until
from ._errors import CollectionError, GraphError, redact
from ._transport import RetryPolicy, Transport

DEFAULT_API_ENDPOINT = "https://api.cloudflare.com/client/v4"
ACCOUNT_ID_RE = re.compile(r"^[0-9a-fA-F]{32}$")
VIRTUAL_GROUP_RE = re.compile(r"^CF-(?P<account_id>[0-9A-Fa-f]{32})\s*-\s*(?P<role>\S.*?)\s*$")
SYSTEM_GROUP_PREFIX = "cloudflare-v1-"
PAGE_SIZE = 100
MAX_PAGES = 1000  # 100,000 objects: a bound against a server that never ends a listing
# Cloudflare API v4 codes for a missing or malformed Authorization header (answered with HTTP 400).
MALFORMED_TOKEN_CODES = frozenset(["6003", "6111", "9106"])
POLL_DELAYS = (2, 4, 8, 15)  # seconds between polls while waiting for expected users and groups (then 15 each)

# The connection options of the entrascim.cloudflare.cloudflare doc fragment (a unit test checks they agree).
CLOUDFLARE_CONNECTION_SPEC = dict(
    api_endpoint=dict(type="str", default=DEFAULT_API_ENDPOINT),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    timeout=dict(type="int", default=30),
)


def cloudflare_argument_spec(**module_options):
    """A copy of ``CLOUDFLARE_CONNECTION_SPEC`` updated with the module's own options."""
    spec = copy.deepcopy(CLOUDFLARE_CONNECTION_SPEC)
    spec.update(module_options)
    return spec


TOKEN_ADVICE = ("Create a Cloudflare API token with the permission Account > SCIM Provisioning > Edit for this account; "
                "prefer an account-owned token (Manage Account > Account API Tokens), which keeps working when the person "
                "who created it leaves or loses access, then store it with entrascim.cloudflare.entra_sync_secrets.")


def valid_account_id(account_id):
    """Cloudflare account ids are 32 hexadecimal characters."""
    return bool(account_id) and bool(ACCOUNT_ID_RE.match(account_id))


def scim_base_url(api_endpoint, account_id):
    """``<api_endpoint>/accounts/<account_id>/scim/v2`` (the Tenant URL / BaseAddress Entra uses)."""
    return "%s/accounts/%s/scim/v2" % ((api_endpoint or DEFAULT_API_ENDPOINT).rstrip("/"), account_id)


def virtual_group_match(name):
    """``{account_id, role}`` when ``name`` follows the deprecated ``CF-<accountID> - <Role Name>`` pattern, else None."""
    match = VIRTUAL_GROUP_RE.match(name or "")
    if not match:
        return None
    return {"account_id": match.group("account_id").lower(), "role": match.group("role")}


class CloudflareError(CollectionError):
    """A failed Cloudflare SCIM call: ``status`` (None when no answer came), ``code``, ``message``, ``url``."""

    def __init__(self, message, status=None, code=None, url=None, ray_id=None):
        super(CloudflareError, self).__init__(message)
        self.status = status
        self.code = code
        self.url = url
        self.ray_id = ray_id
        self.request_id = ray_id

    def __str__(self):
        head = "HTTP %s" % self.status if self.status is not None else (self.code or "Error")
        text = "%s: %s" % (head, self.message)
        if self.ray_id:
            text += " (cf-ray %s)" % self.ray_id
        return text


def parse_error_body(text):
    """``(code, message)`` from a SCIM error (``detail``/``scimType``) or a Cloudflare v4 error (``errors[]``)."""
    try:
        document = json.loads(text) if text and text.strip() else None
    except ValueError:
        document = None
    if isinstance(document, dict):
        if document.get("detail") or document.get("scimType"):
            return document.get("scimType"), document.get("detail") or document.get("scimType")
        errors = [item for item in document.get("errors") or [] if isinstance(item, dict)]
        if errors:
            return (str(errors[0].get("code")) if errors[0].get("code") is not None else None,
                    "; ".join(str(item.get("message")) for item in errors if item.get("message")))
        if document.get("message"):
            return document.get("code"), document.get("message")
    if text and text.strip():
        return None, " ".join(text.split())[:300]
    return None, None


def token_rejected(err):
    """True when the answer says the token itself is not accepted (401, or 400 for a malformed Authorization header)."""
    return err.status == 401 or (err.status == 400 and err.code in MALFORMED_TOKEN_CODES)


def explain(err, account_id=None):
    """The user-facing sentence for a failed call: token rejected (401), lacking permission (403), not found..."""
    if err.status is None:
        return "the Cloudflare SCIM endpoint is not reachable: %s" % err.message
    detail = " Cloudflare said: %s." % err.message.rstrip(".") if err.message else ""
    if err.status == 400 and token_rejected(err):
        return ("the SCIM token was rejected (HTTP 400): the Authorization header is malformed; check that scim_token holds "
                "only the token value.%s %s" % (detail, TOKEN_ADVICE))
    if err.status == 401:
        return ("the SCIM token was rejected (HTTP 401): it is wrong, expired or revoked.%s %s" % (detail, TOKEN_ADVICE))
    if err.status == 403:
        return ("the token lacks the SCIM Provisioning permission (HTTP 403) for account %s (or SCIM provisioning is not "
                "enabled for this account, an Enterprise feature).%s %s" % (account_id, detail, TOKEN_ADVICE))
    if err.status == 404:
        return ("the SCIM endpoint %s was not found (HTTP 404): check account_id and api_endpoint.%s" % (err.url, detail))
    return "the Cloudflare SCIM endpoint answered HTTP %s.%s" % (err.status, detail)


class CloudflareScimClient(object):
    """Read-only client of one account's Cloudflare SCIM v2 endpoint."""

    def __init__(self, account_id, token, api_endpoint=DEFAULT_API_ENDPOINT, transport=None, validate_certs=True,
                 ca_path=None, timeout=30, sleep=time.sleep, clock=time.monotonic):
        self.account_id = account_id
        self._token = token
        self.base_url = scim_base_url(api_endpoint, account_id)
        self.transport = transport or Transport(
            validate_certs=validate_certs, ca_path=ca_path, timeout=timeout,
            retry=RetryPolicy(max_attempts=5, deadline=max(60.0, 3.0 * timeout)), sleep=sleep, clock=clock)

    def get(self, path, params=None):
        """GET ``<base>/<path>`` and return the JSON document; raise ``CloudflareError`` otherwise."""
        url = "%s/%s" % (self.base_url, path.lstrip("/"))
        headers = {"Authorization": "Bearer %s" % self._token, "Accept": "application/scim+json, application/json"}
        try:
            response = self.transport.request("GET", url, headers=headers, params=params)
        except GraphError as err:  # no answer at all (connection, TLS, timeout): raised by the shared transport
            raise CloudflareError(redact(err.message, [self._token]), status=None, code=err.code, url=url)
        ray_id = response.headers.get("cf-ray")
        if not 200 <= response.status_code < 300:
            code, message = parse_error_body(response.text)
            raise CloudflareError(redact(message or "no error details in the response", [self._token]),
                                  status=response.status_code, code=code, url=url, ray_id=ray_id)
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise CloudflareError("the answer is not a JSON object: %s" % redact(" ".join(response.text.split())[:200], [self._token]),
                                  status=response.status_code, code="InvalidResponse", url=url, ray_id=ray_id)
        return document

    def service_provider_config(self):
        return self.get("ServiceProviderConfig")

    def total(self, resource):
        """``totalResults`` of a listing, asking for a single item."""
        page = self.get(resource, params={"startIndex": 1, "count": 1})
        return int(page.get("totalResults") or 0)

    def list_all(self, resource, page_size=PAGE_SIZE):
        """Every resource of ``Users`` or ``Groups``, paging with startIndex/count; return ``(items, total)``.

        Only ``startIndex``, ``count`` and ``filter`` are documented for these listings (api-schemas ``scim-users-list``,
        ``scim-groups-list``), so no ``attributes`` parameter is sent.
        """
        items = []
        start = 1
        total = None
        for dummy in range(MAX_PAGES):
            page = self.get(resource, params={"startIndex": start, "count": page_size})
            resources = page.get("Resources") or []
            total = int(page.get("totalResults") if page.get("totalResults") is not None else len(items) + len(resources))
            items.extend(resources)
            start += len(resources)
            if not resources or start > total:
                break
        return items, max(total or 0, len(items))


def summarize_service_provider_config(config):
    """The basics of a ServiceProviderConfig document (RFC 7643 §5) in snake_case."""
    def supported(key):
        value = config.get(key)
        return bool(value.get("supported")) if isinstance(value, dict) else None

    filter_info = config.get("filter") if isinstance(config.get("filter"), dict) else {}
    bulk_info = config.get("bulk") if isinstance(config.get("bulk"), dict) else {}
    return {
        "patch_supported": supported("patch"),
        "bulk_supported": supported("bulk"),
        "bulk_max_operations": bulk_info.get("maxOperations"),
        "filter_supported": supported("filter"),
        "filter_max_results": filter_info.get("maxResults"),
        "change_password_supported": supported("changePassword"),
        "sort_supported": supported("sort"),
        "etag_supported": supported("etag"),
        "authentication_schemes": [item.get("type") or item.get("name") for item in config.get("authenticationSchemes") or []
                                   if isinstance(item, dict)],
    }


def find_missing(expected, present, label, warnings):
    """Expected names not present; names are compared exactly, then ignoring case (which adds a warning)."""
    exact = set(present)
    folded = {}
    for name in present:
        folded.setdefault(name.casefold(), name)
    missing = []
    for name in expected:
        if name in exact:
            continue
        other = folded.get(name.casefold())
        if other is not None:
            warnings.append("%s '%s' is in Cloudflare as '%s' (different letter case)." % (label, name, other))
            continue
        missing.append(name)
    return missing


def deprecated_groups(groups):
    """Groups named like the deprecated ``CF-<accountID> - <Role Name>`` virtual groups."""
    result = []
    for group in groups:
        match = virtual_group_match(group.get("displayName"))
        if match:
            result.append({"id": group.get("id"), "display_name": group.get("displayName"),
                           "account_id": match["account_id"], "role": match["role"]})
    return result


def expectation_warnings(expect_users, expect_groups):
    """Expectations that can never be met: user names that are not e-mails, group names starting with CF."""
    warnings = []
    for name in expect_users or []:
        if "@" not in name:
            warnings.append("Expected user '%s' is not an e-mail address: Cloudflare user names are e-mail addresses." % name)
    for name in expect_groups or []:
        if name.startswith("CF"):
            warnings.append("Expected group '%s' starts with 'CF', a prefix Cloudflare reserves: Cloudflare refuses it, so "
                            "it will never arrive. Rename the group in Entra ID." % name)
    return warnings


def _unique(names):
    """The names in their order, each once."""
    result = []
    for name in names or []:
        if name not in result:
            result.append(name)
    return result


class ScimCheck(object):
    """One run of ``cloudflare_scim_check``: probe, count, compare with expectations, wait if asked to."""

    def __init__(self, client, expect_users=None, expect_groups=None, wait_timeout=0, fail_on_missing=True,
                 sleep=time.sleep, clock=time.monotonic):
        self.client = client
        self.expect_users = _unique(expect_users)
        self.expect_groups = _unique(expect_groups)
        self.wait_timeout = max(0, wait_timeout or 0)
        self.fail_on_missing = fail_on_missing
        self.sleep = sleep
        self.clock = clock

    def _snapshot(self, result):
        warnings = []
        if self.expect_users:
            users, result["users"] = self.client.list_all("Users")
            result["missing_users"] = find_missing(self.expect_users, [u.get("userName") or "" for u in users], "User", warnings)
        groups, result["groups"] = self.client.list_all("Groups")
        names = [g.get("displayName") or "" for g in groups]
        result["system_groups"] = len([name for name in names if name.startswith(SYSTEM_GROUP_PREFIX)])
        result["missing_groups"] = find_missing(self.expect_groups, names, "Group", warnings)
        result["deprecated_groups"] = deprecated_groups(groups)
        return warnings

    def run(self):
        """Return ``(result, failure message or None, warnings)``; never raises CloudflareError."""
        result = {
            "changed": False, "scim_base_url": self.client.base_url, "reachable": False, "token_valid": None,
            "service_provider_config": {}, "users": None, "groups": None, "system_groups": None,
            "missing_users": [], "missing_groups": [], "deprecated_groups": [], "polls": 0,
        }
        warnings = expectation_warnings(self.expect_users, self.expect_groups)
        try:
            # An authenticated listing proves the token; discovery endpoints may answer without one (RFC 7644 §4).
            result["users"] = self.client.total("Users")
        except CloudflareError as err:
            result["reachable"] = err.status is not None
            if token_rejected(err) or err.status == 403:
                result["token_valid"] = False
            return result, "Cloudflare SCIM check failed: %s" % explain(err, self.client.account_id), warnings
        result["reachable"] = True
        result["token_valid"] = True
        try:
            result["service_provider_config"] = summarize_service_provider_config(self.client.service_provider_config())
        except CloudflareError as err:
            warnings.append("Could not read ServiceProviderConfig: %s" % explain(err, self.client.account_id))
        deadline = self.clock() + self.wait_timeout
        seen = {}

        def arrived():
            result["polls"] += 1
            seen["warnings"] = self._snapshot(result)
            return not (result["missing_users"] or result["missing_groups"])

        def delay(polls):  # the schedule of POLL_DELAYS, the last sleep cut to what is left of wait_timeout
            return min(POLL_DELAYS[min(polls, len(POLL_DELAYS)) - 1], max(0.0, deadline - self.clock()))

        try:
            wait_until(arrived, self.wait_timeout, interval=delay, sleep=self.sleep, clock=self.clock,
                       what="the expected users and groups in Cloudflare", on_timeout=lambda polls, waited: None)
            snapshot_warnings = seen["warnings"]
        except CloudflareError as err:
            return result, "Cloudflare SCIM check failed while listing users and groups: %s" % explain(err, self.client.account_id), warnings
        warnings.extend(snapshot_warnings)
        if result["deprecated_groups"]:
            warnings.append(
                "%d group(s) follow the CF-<accountID> - <Role Name> virtual-group pattern (%s), deprecated by Cloudflare "
                "since 2025-06-02 and end-of-life since 2025-12-02: migrate to SCIM user groups with permission policies "
                "and remove the virtual groups and their Entra mappings."
                % (len(result["deprecated_groups"]), ", ".join(g["display_name"] for g in result["deprecated_groups"])))
        message = None
        if self.fail_on_missing and (result["missing_users"] or result["missing_groups"]):
            message = missing_message(result, self.wait_timeout)
        return result, message, warnings


def missing_message(result, wait_timeout):
    parts = []
    if result["missing_users"]:
        parts.append("users %s" % ", ".join(result["missing_users"]))
    if result["missing_groups"]:
        parts.append("groups %s" % ", ".join(result["missing_groups"]))
    waited = " after waiting %s seconds" % wait_timeout if wait_timeout else ""
    return ("Expected objects are missing in Cloudflare%s: %s. Check that they are assigned to the Entra app, that the "
            "provisioning job is running (entrascim.cloudflare.entra_sync_job_info) and that no preflight finding blocks "
            "them (entrascim.cloudflare.entra_scim_preflight); a provisioning cycle can take 40 minutes."
            % (waited, "; ".join(parts)))

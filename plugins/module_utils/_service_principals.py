# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service principals: Graph paths (every id segment percent-encoded), the lookups every resource starts from, and the
marker that says what this collection created or adopted.

* Paths are relative to ``<graph_endpoint>/v1.0``; an id is one path segment, quoted with ``safe=""`` so that a
  ``/``, ``?`` or ``#`` in a value can never change the path (microsoft-graph-docs-contrib concepts/query-parameters.md:
  "encode ... special characters").
* The marker is the tag ``entrascim.cloudflare`` (and ``entrascim.cloudflare:account:<account id>``) in the service
  principal's ``tags``, "custom strings that can be used to categorize and identify the service principal"
  (microsoft-graph-docs-contrib api-reference/v1.0/resources/serviceprincipal.md).
* ``00000000-0000-0000-0000-000000000000`` is the app role id of "Default Access"
  (api-reference/v1.0/api/serviceprincipal-post-approleassignedto.md).
"""

from urllib.parse import quote

from ._consistency import is_not_found
from ._errors import GraphError, ReportedError, error_step
from ._graph import odata_quote

DEFAULT_ACCESS_ROLE_ID = "00000000-0000-0000-0000-000000000000"
MARKER_TAG = "entrascim.cloudflare"
ACCOUNT_TAG_PREFIX = "entrascim.cloudflare:account:"
SERVICE_PRINCIPAL_FIELDS = "id,appId,displayName,applicationTemplateId,appRoles,tags"


# ---------------------------------------------------------------------------------------------- paths
def segment(value):
    """One path segment: ``value`` percent-encoded, ``/`` included."""
    return quote(str(value), safe="")


def sp_path(sp_id):
    return "/servicePrincipals/%s" % segment(sp_id)


def app_path(app_object_id):
    return "/applications/%s" % segment(app_object_id)


def template_path(template_id):
    return "/applicationTemplates/%s" % segment(template_id)


def assignments_path(sp_id):
    return "%s/appRoleAssignedTo" % sp_path(sp_id)


def jobs_path(sp_id):
    return "%s/synchronization/jobs" % sp_path(sp_id)


def job_path(sp_id, job_id):
    return "%s/%s" % (jobs_path(sp_id), segment(job_id))


def secrets_path(sp_id):
    return "%s/synchronization/secrets" % sp_path(sp_id)


# ---------------------------------------------------------------------------------------------- marker
def marker_of(sp):
    """``{managed, account_id}``: whether the service principal carries this collection's marker tag, and the Cloudflare
    account its account tag names (None without one)."""
    tags = [str(tag) for tag in (sp or {}).get("tags") or []]
    accounts = [tag[len(ACCOUNT_TAG_PREFIX):] for tag in tags if tag.startswith(ACCOUNT_TAG_PREFIX)]
    return {"managed": MARKER_TAG in tags, "account_id": accounts[0] if accounts else None}


def marked_tags(sp, account_id=None):
    """The service principal's tags with the marker (and the account tag) added; the other tags kept in order."""
    tags = [str(tag) for tag in (sp or {}).get("tags") or []]
    wanted = [MARKER_TAG] + ([ACCOUNT_TAG_PREFIX + account_id] if account_id else [])
    return tags + [tag for tag in wanted if tag not in tags]


def needs_marking(sp, account_id=None):
    marker = marker_of(sp)
    return not marker["managed"] or bool(account_id and not marker["account_id"])


# ---------------------------------------------------------------------------------------------- lookups
class MultipleServicePrincipals(ReportedError):
    """Several service principals have the name: their ids are listed, none is picked."""

    code = "MultipleServicePrincipals"


def find_service_principal(client, display_name, application_template_id=None):
    """The service principal named exactly ``display_name`` (made from ``application_template_id`` when given): a dict,
    None, or ``MultipleServicePrincipals`` listing the ids when several match."""
    query = "displayName eq %s" % odata_quote(display_name)
    if application_template_id:
        query += " and applicationTemplateId eq %s" % odata_quote(application_template_id)
    with error_step("list service principals"):
        matches = client.list("/servicePrincipals", params={"$filter": query, "$select": SERVICE_PRINCIPAL_FIELDS})
    matches = [sp for sp in matches if sp.get("displayName") == display_name]
    if len(matches) > 1:
        ids = sorted(sp["id"] for sp in matches)
        raise MultipleServicePrincipals("Failed to find the service principal: %d service principals are named %r (ids %s); pass "
                                        "service_principal_id to pick one" % (len(matches), display_name, ", ".join(ids)),
                                        service_principal_ids=ids)
    return matches[0] if matches else None


def service_principal_of_app(client, app_id):
    """The service principal of the application with this application (client) id, or None."""
    with error_step("list service principals"):
        sps = client.list("/servicePrincipals", params={"$filter": "appId eq %s" % odata_quote(app_id), "$select": SERVICE_PRINCIPAL_FIELDS})
    return sps[0] if sps else None


def read_service_principal(client, sp_id):
    """The service principal ``sp_id``, or None when it does not exist."""
    try:
        with error_step("read service principal"):
            return client.get(sp_path(sp_id), params={"$select": SERVICE_PRINCIPAL_FIELDS})
    except GraphError as err:
        if is_not_found(err):
            return None
        raise

"""Microsoft Graph v1.0 subset: applications, service principals, instantiate, appRoleAssignedTo, users, groups and
provisioning logs. Synchronization (jobs, secrets, templates) is in sync.py; ``$batch`` in app.py.

Each handler names the upstream page it follows: ``api/...`` and ``resources/...`` are under ``api-reference/v1.0/`` of
microsoftgraph/microsoft-graph-docs-contrib, ``concepts/...`` at its root; type and property names come from the CSDL
(microsoftgraph/msgraph-metadata ``schemas/v1.0-Prod.csdl``); docs/emulator.md, "Sources", lists them all. Handlers run
with the state lock held and return ``(status, body, headers)`` or raise ``GraphError``.
"""

import base64
import math
import os
import re
import time

from . import permissions as perms
from .errors import GraphError, bad_request, iso, new_id, not_found, throttled, unavailable
from .odata import Collection, list_response
from .state import GUID_RE, Meta

# Non-gallery ("custom") application template ids per cloud (api/applicationtemplate-instantiate.md).
NON_GALLERY_TEMPLATES = {
    "8adf8e6e-67b2-4cf2-a259-e3dc5476c621": "global",
    "4602d0b4-76bb-404b-bca9-2652e1a39c6d": "usgovernment",
    "5a532e38-1581-4918-9658-008dc27c1d68": "china",
}
# The two app roles of a non-gallery service principal (concepts/application-saml-sso-configure-api.md).
USER_ROLE_ID = "18d14569-c3bd-439b-9a66-3a2aee01d14f"
MSIAM_ACCESS_ROLE_ID = "b9632174-c057-4f7e-951b-be3adc52bfe6"
DEFAULT_ACCESS_ROLE_ID = "00000000-0000-0000-0000-000000000000"  # "Default Access": the all-zero appRoleId (resources/approleassignment.md)


def app_roles():
    return [
        {"allowedMemberTypes": ["User"], "description": "User", "displayName": "User", "id": USER_ROLE_ID, "isEnabled": True,
         "origin": "Application", "value": None},
        {"allowedMemberTypes": ["User"], "description": "msiam_access", "displayName": "msiam_access", "id": MSIAM_ACCESS_ROLE_ID,
         "isEnabled": True, "origin": "Application", "value": None},
    ]


# ---------------------------------------------------------------------------------------------- object shapes
def new_application(app_id, display_name, template_id, service_management_reference, tenant_domain):
    """application resource (Graph v1.0; property names per the CSDL and resources/application.md)."""
    return {
        "id": new_id(), "deletedDateTime": None, "appId": app_id, "applicationTemplateId": template_id, "disabledByMicrosoftStatus": None,
        "createdDateTime": iso(), "displayName": display_name, "description": None, "groupMembershipClaims": None, "identifierUris": [],
        "isDeviceOnlyAuthSupported": None, "isFallbackPublicClient": None, "nativeAuthenticationApisEnabled": None, "notes": None,
        "publisherDomain": tenant_domain, "serviceManagementReference": service_management_reference, "signInAudience": "AzureADMyOrg",
        "tags": [], "tokenEncryptionKeyId": None, "uniqueName": None, "samlMetadataUrl": None, "defaultRedirectUri": None,
        "certification": None, "optionalClaims": None, "requestSignatureVerification": None, "addIns": [],
        "api": {"acceptMappedClaims": None, "knownClientApplications": [], "requestedAccessTokenVersion": None,
                "oauth2PermissionScopes": [], "preAuthorizedApplications": []},
        "appRoles": app_roles(),
        "info": {"logoUrl": None, "marketingUrl": None, "privacyStatementUrl": None, "supportUrl": None, "termsOfServiceUrl": None},
        "keyCredentials": [], "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
        "passwordCredentials": [], "publicClient": {"redirectUris": []}, "requiredResourceAccess": [],
        "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None},
        "web": {"homePageUrl": None, "logoutUrl": None, "redirectUris": [], "redirectUriSettings": [],
                "implicitGrantSettings": {"enableAccessTokenIssuance": False, "enableIdTokenIssuance": False}},
        "spa": {"redirectUris": []},
    }


def new_service_principal(app, tenant_id):
    """servicePrincipal of a template-created app: appRoleAssignmentRequired true, the User/msiam_access roles,
    applicationTemplateId (api/applicationtemplate-instantiate.md sample; Cloudflare's guide, cloudflare-docs
    src/content/docs/fundamentals/account/account-security/scim-setup/entra.mdx, shows applicationTemplateId on the SP too)."""
    return {
        "id": new_id(), "deletedDateTime": None, "accountEnabled": True, "alternativeNames": [], "appDisplayName": app["displayName"],
        "appDescription": None, "appId": app["appId"], "applicationTemplateId": app["applicationTemplateId"],
        "appOwnerOrganizationId": tenant_id, "appRoleAssignmentRequired": True, "description": None,
        "disabledByMicrosoftStatus": None, "displayName": app["displayName"], "homepage": None, "loginUrl": None, "logoutUrl": None,
        "notes": None, "notificationEmailAddresses": [], "preferredSingleSignOnMode": None, "preferredTokenSigningKeyThumbprint": None,
        "replyUrls": [], "servicePrincipalNames": [app["appId"]], "servicePrincipalType": "Application", "signInAudience": "AzureADMyOrg",
        "tags": ["WindowsAzureActiveDirectoryCustomSingleSignOnApplication", "WindowsAzureActiveDirectoryIntegratedApp"],
        "tokenEncryptionKeyId": None, "samlSingleSignOnSettings": None, "addIns": [], "appRoles": app_roles(), "info": dict(app["info"]),
        "keyCredentials": [], "oauth2PermissionScopes": [], "passwordCredentials": [], "resourceSpecificApplicationPermissions": [],
        "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None},
    }


# ---------------------------------------------------------------------------------------------- collections
APPLICATIONS = Collection("application", tuple(new_application("a", "a", None, None, "d")),
                          {"displayName": ("eq", "startswith"), "appId": ("eq",), "applicationTemplateId": ("eq",), "id": ("eq",),
                           "uniqueName": ("eq",), "signInAudience": ("eq",)}, advanced=("ne", "endswith"))
_SP_SAMPLE = new_service_principal(new_application("a", "a", None, None, "d"), "t")
SERVICE_PRINCIPALS = Collection("servicePrincipal", tuple(_SP_SAMPLE),
                                {"displayName": ("eq", "startswith"), "appId": ("eq",), "applicationTemplateId": ("eq",), "id": ("eq",),
                                 "servicePrincipalType": ("eq",), "accountEnabled": ("eq",), "preferredSingleSignOnMode": ("eq",)},
                                advanced=("ne", "endswith"))
USER_PROPERTIES = ("id", "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
                   "preferredLanguage", "surname", "userPrincipalName", "accountEnabled", "mailNickname", "createdDateTime")
# Graph v1.0 returns this default property set for users unless $select asks for more (accountEnabled needs $select).
USER_DEFAULT_SELECT = USER_PROPERTIES[:11]
USERS = Collection("user", USER_PROPERTIES,
                   {"userPrincipalName": ("eq", "startswith"), "mail": ("eq", "startswith"), "displayName": ("eq", "startswith"),
                    "id": ("eq",), "accountEnabled": ("eq",), "mailNickname": ("eq", "startswith"), "givenName": ("eq", "startswith"),
                    "surname": ("eq", "startswith")}, advanced=("ne", "endswith"), default_select=USER_DEFAULT_SELECT)
GROUP_PROPERTIES = ("id", "createdDateTime", "description", "displayName", "groupTypes", "mail", "mailEnabled", "mailNickname",
                    "securityEnabled", "visibility")
GROUPS = Collection("group", GROUP_PROPERTIES,
                    {"displayName": ("eq", "startswith"), "id": ("eq",), "mailNickname": ("eq", "startswith"),
                     "securityEnabled": ("eq",), "mailEnabled": ("eq",)}, advanced=("ne", "endswith"))
MEMBERS = Collection("directoryObject", ("@odata.type",) + tuple(sorted(set(USER_PROPERTIES) | set(GROUP_PROPERTIES))), {"id": ("eq",)},
                     advanced=("ne",))
ASSIGNMENT_PROPERTIES = ("id", "deletedDateTime", "appRoleId", "createdDateTime", "principalDisplayName", "principalId",
                         "principalType", "resourceDisplayName", "resourceId")
ASSIGNMENTS = Collection("appRoleAssignment", ASSIGNMENT_PROPERTIES, {}, countable=False)
LOG_PROPERTIES = ("id", "activityDateTime", "tenantId", "jobId", "cycleId", "changeId", "provisioningAction", "durationInMilliseconds",
                  "provisioningStatusInfo", "provisioningSteps", "modifiedProperties", "servicePrincipal", "sourceSystem", "targetSystem",
                  "sourceIdentity", "targetIdentity", "initiatedBy")
# api/provisioningobjectsummary-list.md: eq, contains, gt, lt (case-sensitive), $orderby, $top, $skiptoken; $count not supported.
PROVISIONING_LOGS = Collection(
    "provisioningObjectSummary", LOG_PROPERTIES,
    {"jobId": ("eq", "contains"), "cycleId": ("eq", "contains"), "changeId": ("eq", "contains"), "id": ("eq", "contains"),
     "activityDateTime": ("gt", "lt", "ge", "le"), "servicePrincipal/id": ("eq",), "servicePrincipal/displayName": ("eq", "contains"),
     "provisioningStatusInfo/status": ("eq",), "provisioningAction": ("eq",), "initiatedBy/displayName": ("eq", "contains"),
     "sourceIdentity/id": ("eq",), "sourceIdentity/displayName": ("eq", "contains"), "targetIdentity/id": ("eq",),
     "targetIdentity/displayName": ("eq", "contains")},
    case_sensitive=True, max_top=1000, countable=False, orderby=("activityDateTime",))


# ---------------------------------------------------------------------------------------------- body validation
def require_object(ctx, allow_empty=False):
    body = ctx.json_body()
    if body is None and allow_empty:
        return {}
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def reject_unknown(body, allowed):
    for key in body:
        if key.startswith("@odata."):
            continue
        if key not in allowed:
            # Directory services refuse undeclared properties with 400 Request_BadRequest (observed Graph answer, not documented).
            raise bad_request("Property '%s' does not exist as a declared property or extension property." % key)


def _invalid_value(prop, resource):
    return bad_request("Invalid value specified for property '%s' of resource '%s'." % (prop, resource))


def check_type(prop, value, kind, resource, max_length=None):
    """Validate one property value; ``kind`` is str, str?, bool, bool?, [str]."""
    nullable = kind.endswith("?")
    base = kind.rstrip("?")
    if value is None:
        if nullable:
            return
        raise _invalid_value(prop, resource)
    if base == "str" and not isinstance(value, str):
        raise _invalid_value(prop, resource)
    if base == "bool" and not isinstance(value, bool):
        raise _invalid_value(prop, resource)
    if base == "[str]" and (not isinstance(value, list) or not all(isinstance(item, str) for item in value)):
        raise _invalid_value(prop, resource)
    if max_length is not None and isinstance(value, str) and len(value) > max_length:
        raise bad_request("Invalid value specified for property '%s' of resource '%s'. Maximum length is %d." % (prop, resource, max_length))


def apply_patch(obj, body, patchable, read_only, resource):
    """PATCH semantics for directory objects: only the given properties change; unknown/read-only/ill-typed -> 400."""
    for key, value in body.items():
        if key.startswith("@odata."):
            continue
        if key in patchable:
            kind, max_length = patchable[key]
            check_type(key, value, kind, resource, max_length)
        elif key in read_only or key in obj:
            raise bad_request("Property '%s' is read-only and cannot be set." % key if key in read_only
                              else "Updating property '%s' is not supported by the emulator." % key)
        else:
            raise bad_request("Property '%s' does not exist as a declared property or extension property." % key)
    if "displayName" in body and not body["displayName"]:
        raise bad_request("Invalid value specified for property 'displayName' of resource '%s'." % resource)
    for key, value in body.items():
        if not key.startswith("@odata."):
            obj[key] = value


# Updatable properties (Graph "Update application" / "Update servicePrincipal" pages), with their types.
APPLICATION_PATCHABLE = {
    "displayName": ("str", 256), "description": ("str?", 1024), "notes": ("str?", 1024), "tags": ("[str]", None),
    "serviceManagementReference": ("str?", None), "identifierUris": ("[str]", None), "isFallbackPublicClient": ("bool?", None),
    "groupMembershipClaims": ("str?", None), "signInAudience": ("str", None), "uniqueName": ("str?", None),
}
APPLICATION_READ_ONLY = ("id", "appId", "applicationTemplateId", "createdDateTime", "deletedDateTime", "publisherDomain")
SERVICE_PRINCIPAL_PATCHABLE = {
    "accountEnabled": ("bool", None), "appRoleAssignmentRequired": ("bool", None), "description": ("str?", 1024),
    "displayName": ("str", 256), "homepage": ("str?", None), "loginUrl": ("str?", None), "logoutUrl": ("str?", None),
    "notes": ("str?", 1024), "notificationEmailAddresses": ("[str]", None), "preferredSingleSignOnMode": ("str?", None),
    "replyUrls": ("[str]", None), "servicePrincipalNames": ("[str]", None), "tags": ("[str]", None),
}
SERVICE_PRINCIPAL_READ_ONLY = ("id", "appId", "appDisplayName", "applicationTemplateId", "appOwnerOrganizationId", "deletedDateTime",
                               "servicePrincipalType", "signInAudience")


# ---------------------------------------------------------------------------------------------- resolvers
def _key(raw):
    """``{id}`` or alternate key ``appId=...`` (from ``servicePrincipals(appId='...')``, api/serviceprincipal-get.md)."""
    if raw.startswith("appId="):
        return "appId", raw[len("appId="):]
    if not GUID_RE.match(raw):
        # Directory object ids are GUIDs; anything else is a malformed key.
        raise GraphError(400, "Request_BadRequest", "Invalid object identifier '%s'." % raw)
    return "id", raw.lower()


def resolve_sp(ctx, raw, owned=False):
    """Find a visible service principal or raise 404 (404 while not replicated: "Designing for Eventual Consistency for
    Microsoft Entra", devblogs.microsoft.com/identity)."""
    state = ctx.state
    kind, value = _key(raw)
    sp = state.sp_by_app_id(value) if kind == "appId" else state.service_principals.get(value)
    if sp is None or not state.sp_meta[sp["id"]].visible():
        raise not_found(value)
    if owned:
        ctx.require_owner(state.sp_meta[sp["id"]].owners)
    return sp


def resolve_app(ctx, raw, owned=False):
    state = ctx.state
    kind, value = _key(raw)
    if kind == "appId":
        app = next((a for a in state.applications.values() if a["appId"] == value), None)
    else:
        app = state.applications.get(value)
    if app is None or not state.app_meta[app["id"]].visible():
        raise not_found(value)
    if owned:
        ctx.require_owner(state.app_meta[app["id"]].owners)
    return app


def _context(ctx, fragment):
    return "%s/v1.0/$metadata#%s" % (ctx.base_url, fragment)


def _entity(ctx, fragment, obj, query=None, collection=None):
    body = {"@odata.context": _context(ctx, fragment)}
    fields = query.select(collection) if query is not None and collection is not None else None
    body.update({field: obj.get(field) for field in fields} if fields is not None else obj)
    return body


# ---------------------------------------------------------------------------------------------- applications
def list_applications(ctx, match):
    state = ctx.state
    items = [app for app_id, app in state.applications.items() if state.app_meta[app_id].visible()]
    return 200, list_response(items, ctx.query(), APPLICATIONS, ctx.graph_root, "/applications", _context(ctx, "applications"), ctx.page_size)


def get_application(ctx, match):
    app = resolve_app(ctx, match["app"])
    return 200, _entity(ctx, "applications/$entity", app, ctx.query(), APPLICATIONS)


def patch_application(ctx, match):
    app = resolve_app(ctx, match["app"], owned=True)
    body = require_object(ctx)
    apply_patch(app, body, APPLICATION_PATCHABLE, APPLICATION_READ_ONLY, "Application")
    if "displayName" in body:
        for sp_id, app_object_id in ctx.state.sp_application.items():
            if app_object_id == app["id"]:
                ctx.state.service_principals[sp_id]["appDisplayName"] = body["displayName"]
    return 204, None


def delete_application(ctx, match):
    # api/application-delete.md: DELETE /applications/{id} -> 204; its service principal goes with it.
    app = resolve_app(ctx, match["app"], owned=True)
    ctx.state.delete_application(app["id"])
    return 204, None


# ---------------------------------------------------------------------------------------------- service principals
def list_service_principals(ctx, match):
    state = ctx.state
    items = [sp for sp_id, sp in state.service_principals.items() if state.sp_meta[sp_id].visible()]
    return 200, list_response(items, ctx.query(), SERVICE_PRINCIPALS, ctx.graph_root, "/servicePrincipals",
                              _context(ctx, "servicePrincipals"), ctx.page_size)


def get_service_principal(ctx, match):
    sp = resolve_sp(ctx, match["sp"])
    return 200, _entity(ctx, "servicePrincipals/$entity", sp, ctx.query(), SERVICE_PRINCIPALS)


def patch_service_principal(ctx, match):
    # The collection keeps a token fingerprint in ``notes`` (max 1024 characters); unknown properties -> 400.
    sp = resolve_sp(ctx, match["sp"], owned=True)
    apply_patch(sp, require_object(ctx), SERVICE_PRINCIPAL_PATCHABLE, SERVICE_PRINCIPAL_READ_ONLY, "ServicePrincipal")
    return 204, None


def delete_service_principal(ctx, match):
    sp = resolve_sp(ctx, match["sp"], owned=True)
    ctx.state.delete_service_principal(sp["id"])
    return 204, None


# ---------------------------------------------------------------------------------------------- instantiate
def instantiate(ctx, match):
    """api/applicationtemplate-instantiate.md: POST /applicationTemplates/{id}/instantiate -> 201 with application + servicePrincipal.

    Not idempotent: every call creates a new pair. Faults: replication lag (new objects answer 404 for a while),
    ``instantiate_404_rate`` (objects created, answer 404; hashicorp/terraform-provider-azuread PR #1406) and
    ``instantiate_503_after_create`` (objects created, answer 503 ``serviceNotAvailable``: a 503 is the gateway's
    answer and says nothing about whether the backend acted; faults.py names the sources)."""
    template_id = match["template"].lower()
    if template_id not in NON_GALLERY_TEMPLATES:
        raise not_found(match["template"])
    body = require_object(ctx)
    reject_unknown(body, ("displayName", "serviceManagementReference"))
    if not isinstance(body.get("displayName"), str) or not body["displayName"].strip():
        raise bad_request("Required parameter 'displayName' is missing or empty.")
    check_type("serviceManagementReference", body.get("serviceManagementReference"), "str?", "Application")
    state = ctx.state
    lag = ctx.faults.replication_lag_seconds()
    domain = sorted(state.tenant_domains)[0] if state.tenant_domains else "emulator.onmicrosoft.com"
    app = new_application(new_id(), body["displayName"], template_id, body.get("serviceManagementReference"), domain)
    sp = new_service_principal(app, state.tenant_id)
    owners = [ctx.principal["client_id"]]
    state.applications[app["id"]] = app
    state.app_meta[app["id"]] = Meta(lag, owners)
    state.service_principals[sp["id"]] = sp
    state.sp_meta[sp["id"]] = Meta(lag, owners)
    state.sp_application[sp["id"]] = app["id"]
    # The provisioning service learns about the SP a little after the directory does (observed; terraform-provider-azuread
    # retries synchronization calls on 403/409 for this).
    state.sync_visible_at[sp["id"]] = time.monotonic() + lag * 1.5
    outage = ctx.faults.instantiate_503_after_create()
    if outage is not None:
        # The objects exist (and replicate like any others); only the answer is lost.
        raise unavailable(outage[1])
    if ctx.faults.instantiate_lies():
        raise not_found(app["id"])
    return 201, {"@odata.context": _context(ctx, "microsoft.graph.applicationServicePrincipal"), "application": app, "servicePrincipal": sp}


def get_application_template(ctx, match):
    template_id = match["template"].lower()
    if template_id not in NON_GALLERY_TEMPLATES:
        raise not_found(match["template"])
    return 200, {"@odata.context": _context(ctx, "applicationTemplates/$entity"), "id": template_id,
                 "displayName": "Custom", "homePageUrl": "http://www.microsoft.com", "supportedSingleSignOnModes": ["password", "saml", "external"],
                 "supportedProvisioningTypes": ["sync"], "logoUrl": None, "categories": [], "publisher": "Microsoft Corporation",
                 "description": None}


# ---------------------------------------------------------------------------------------------- appRoleAssignedTo
def _assignment_id():
    # Real ids are 43-character base64url strings.
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii").rstrip("=")


def list_assignments(ctx, match):
    """The list lags behind recent grants (api/serviceprincipal-list-approleassignedto.md): new assignments show up after the
    replication lag."""
    sp = resolve_sp(ctx, match["sp"])
    now = time.monotonic()
    items = [a for a in ctx.state.assignments.get(sp["id"], []) if ctx.state.assignment_visible_at.get(a["id"], 0.0) <= now]
    return 200, list_response(items, ctx.query(), ASSIGNMENTS, ctx.graph_root, "/servicePrincipals/%s/appRoleAssignedTo" % sp["id"],
                              _context(ctx, "servicePrincipals('%s')/appRoleAssignedTo" % sp["id"]), ctx.page_size)


def create_assignment(ctx, match):
    """api/serviceprincipal-post-approleassignedto.md: POST appRoleAssignedTo {principalId, resourceId, appRoleId} -> 201;
    duplicate -> 400 "Permission being assigned already exists on the object" (observed, not documented)."""
    sp = resolve_sp(ctx, match["sp"])
    body = require_object(ctx)
    reject_unknown(body, ("principalId", "resourceId", "appRoleId", "principalType", "principalDisplayName", "resourceDisplayName"))
    for key in ("principalId", "resourceId", "appRoleId"):
        if not isinstance(body.get(key), str) or not GUID_RE.match(body[key]):
            raise bad_request("Invalid value specified for property '%s' of resource 'AppRoleAssignment'." % key)
    if body["resourceId"].lower() != sp["id"]:
        raise bad_request("The resourceId in the request body does not match the service principal in the request URL.")
    role_id = body["appRoleId"].lower()
    if role_id != DEFAULT_ACCESS_ROLE_ID and role_id not in {role["id"] for role in sp["appRoles"]}:
        raise bad_request("Permission being assigned was not found on application '%s'." % sp["appId"])
    principal_type, principal = ctx.state.principal(body["principalId"].lower())
    if principal is None:
        raise not_found(body["principalId"])
    existing = ctx.state.assignments.setdefault(sp["id"], [])
    if any(a["principalId"] == principal["id"] and a["appRoleId"] == role_id for a in existing):
        raise bad_request("Permission being assigned already exists on the object")
    assignment = {"id": _assignment_id(), "deletedDateTime": None, "appRoleId": role_id, "createdDateTime": iso(),
                  "principalDisplayName": principal["displayName"], "principalId": principal["id"], "principalType": principal_type,
                  "resourceDisplayName": sp["displayName"], "resourceId": sp["id"]}
    existing.append(assignment)
    ctx.state.assignment_visible_at[assignment["id"]] = time.monotonic() + ctx.faults.replication_lag_seconds()
    return 201, dict({"@odata.context": _context(ctx, "servicePrincipals('%s')/appRoleAssignedTo/$entity" % sp["id"])}, **assignment)


def get_assignment(ctx, match):
    sp = resolve_sp(ctx, match["sp"])
    for assignment in ctx.state.assignments.get(sp["id"], []):
        if assignment["id"] == match["assignment"]:
            return 200, _entity(ctx, "servicePrincipals('%s')/appRoleAssignedTo/$entity" % sp["id"], assignment)
    raise not_found(match["assignment"])


def delete_assignment(ctx, match):
    # api/serviceprincipal-delete-approleassignedto.md: DELETE /servicePrincipals/{sp}/appRoleAssignedTo/{id} -> 204.
    sp = resolve_sp(ctx, match["sp"])
    items = ctx.state.assignments.get(sp["id"], [])
    for index, assignment in enumerate(items):
        if assignment["id"] == match["assignment"]:
            del items[index]
            ctx.state.assignment_visible_at.pop(assignment["id"], None)
            return 204, None
    raise not_found(match["assignment"])


# ---------------------------------------------------------------------------------------------- users and groups
def list_users(ctx, match):
    return 200, list_response(list(ctx.state.users.values()), ctx.query(), USERS, ctx.graph_root, "/users", _context(ctx, "users"),
                              ctx.page_size)


def get_user(ctx, match):
    # /users/{id | userPrincipalName}
    user = ctx.state.user_by_key(match["user"])
    if user is None:
        raise not_found(match["user"])
    query = ctx.query()
    fields = query.select(USERS)
    body = {"@odata.context": _context(ctx, "users/$entity")}
    body.update({field: user.get(field) for field in fields})
    return 200, body


def list_groups(ctx, match):
    return 200, list_response(list(ctx.state.groups.values()), ctx.query(), GROUPS, ctx.graph_root, "/groups", _context(ctx, "groups"),
                              ctx.page_size)


def _group(ctx, raw):
    group = ctx.state.groups.get(_key(raw)[1])
    if group is None:
        raise not_found(raw)
    return group


def get_group(ctx, match):
    group = _group(ctx, match["group"])
    return 200, _entity(ctx, "groups/$entity", group, ctx.query(), GROUPS)


def list_group_members(ctx, match):
    """Direct members only, each with ``@odata.type`` (nested groups are listed, not expanded; api/group-list-members.md)."""
    group = _group(ctx, match["group"])
    items = []
    for member_id in ctx.state.group_members.get(group["id"], []):
        kind, obj = ctx.state.principal(member_id)
        if kind == "User":
            items.append(dict({"@odata.type": "#microsoft.graph.user"}, **{k: obj.get(k) for k in USER_DEFAULT_SELECT}))
        elif kind == "Group":
            items.append(dict({"@odata.type": "#microsoft.graph.group"}, **obj))
    query = ctx.query()
    body = list_response(items, query, MEMBERS, ctx.graph_root, "/groups/%s/members" % group["id"], _context(ctx, "directoryObjects"),
                         ctx.page_size)
    if query.params.get("$select"):
        for item, source in zip(body["value"], items):
            item["@odata.type"] = source["@odata.type"]
    return 200, body


# ---------------------------------------------------------------------------------------------- provisioning logs
def list_provisioning_logs(ctx, match):
    """api/provisioningobjectsummary-list.md; newest first (our choice: the page states no order); reports are throttled at
    5 requests per 10 s per app (concepts/throttling-limits.md, "Identity and access reports")."""
    limit, window = ctx.faults.reports_throttle()
    if limit:
        now = time.monotonic()
        calls = ctx.state.reports_calls.setdefault(ctx.principal["client_id"], [])
        calls[:] = [moment for moment in calls if now - moment < window]
        if len(calls) >= limit:
            raise throttled(max(1, int(math.ceil(window - (now - calls[0])))))
        calls.append(now)
    items = list(reversed(ctx.state.provisioning_logs))
    return 200, list_response(items, ctx.query(), PROVISIONING_LOGS, ctx.graph_root, "/auditLogs/provisioning",
                              _context(ctx, "auditLogs/provisioning"), ctx.page_size)


# ---------------------------------------------------------------------------------------------- routes
ID = r"(?P<%s>[^/]+)"


def _pattern(template):
    regex = re.sub(r"\{(\w+)\}", lambda m: ID % m.group(1), template)
    return re.compile("^" + regex + "$", re.IGNORECASE)


class Route:
    def __init__(self, method, template, operation, requirement, handler, write=False):
        self.method = method
        self.template = template
        self.regex = _pattern(template)
        self.operation = operation
        self.requirement = requirement
        self.handler = handler
        self.write = write


ROUTES = [
    Route("GET", "/applications", "applications.list", perms.APP_READ, list_applications),
    Route("GET", "/applications/{app}", "applications.get", perms.APP_READ, get_application),
    Route("PATCH", "/applications/{app}", "applications.patch", perms.APP_WRITE, patch_application, True),
    Route("DELETE", "/applications/{app}", "applications.delete", perms.APP_WRITE, delete_application, True),
    Route("GET", "/servicePrincipals", "servicePrincipals.list", perms.APP_READ, list_service_principals),
    Route("GET", "/servicePrincipals/{sp}", "servicePrincipals.get", perms.APP_READ, get_service_principal),
    Route("PATCH", "/servicePrincipals/{sp}", "servicePrincipals.patch", perms.APP_WRITE, patch_service_principal, True),
    Route("DELETE", "/servicePrincipals/{sp}", "servicePrincipals.delete", perms.APP_WRITE, delete_service_principal, True),
    # applicationtemplate-get.md: "Additional permissions are not required to call this API" (any valid token).
    Route("GET", "/applicationTemplates/{template}", "applicationTemplates.get", perms.NONE, get_application_template),
    Route("POST", "/applicationTemplates/{template}/instantiate", "instantiate", perms.INSTANTIATE, instantiate, True),
    Route("POST", "/applicationTemplates/{template}/microsoft.graph.instantiate", "instantiate", perms.INSTANTIATE, instantiate, True),
    Route("GET", "/servicePrincipals/{sp}/appRoleAssignedTo", "appRoleAssignedTo.list", perms.ASSIGNMENT_READ, list_assignments),
    Route("POST", "/servicePrincipals/{sp}/appRoleAssignedTo", "appRoleAssignedTo.create", perms.ASSIGNMENT_WRITE, create_assignment, True),
    Route("GET", "/servicePrincipals/{sp}/appRoleAssignedTo/{assignment}", "appRoleAssignedTo.get", perms.ASSIGNMENT_READ, get_assignment),
    Route("DELETE", "/servicePrincipals/{sp}/appRoleAssignedTo/{assignment}", "appRoleAssignedTo.delete", perms.ASSIGNMENT_WRITE,
          delete_assignment, True),
    Route("GET", "/users", "users.list", perms.USERS_READ, list_users),
    Route("GET", "/users/{user}", "users.get", perms.USERS_READ, get_user),
    Route("GET", "/groups", "groups.list", perms.GROUPS_READ, list_groups),
    Route("GET", "/groups/{group}", "groups.get", perms.GROUPS_READ, get_group),
    Route("GET", "/groups/{group}/members", "groups.members", perms.GROUPS_READ, list_group_members),
    Route("GET", "/auditLogs/provisioning", "auditLogs.provisioning", perms.REPORTS_READ, list_provisioning_logs),
]


def normalize_path(path):
    """Rewrite alternate keys ``servicePrincipals(appId='x')`` / ``applications(appId='x')`` to ``.../appId=x``."""
    return re.sub(r"(?i)/(servicePrincipals|applications)\(appId='([^']*)'\)", lambda m: "/%s/appId=%s" % (m.group(1), m.group(2)), path)

# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight rules: what in an Entra app's provisioning scope will break Cloudflare SCIM provisioning.

Each rule is a small function that returns a list of findings ``{severity, code, object, message}``;
``read_scope`` collects what the rules look at (the service principal, its app role assignments, the assigned
users, the direct members of assigned groups and ``SyncAll``) and ``run_preflight`` puts both together.

Cloudflare facts (cloudflare/cloudflare-docs ``src/content/docs/fundamentals/account/account-security/scim-setup/``
``entra.mdx`` and ``index.mdx``): the user principal name and the e-mail must be identical (case-sensitive),
SCIM group names must not start with ``CF``, and the ``CF-<accountID> - <Role Name>`` virtual groups are
deprecated (``reference/migration-guides/scim-virtual-groups-migration.mdx``). Entra facts
(microsoftgraph/microsoft-graph-docs-contrib ``api-reference/v1.0/api/serviceprincipal-list-approleassignedto.md``,
MicrosoftDocs/entra-docs ``application-provisioning-config-problem-no-users-provisioned.md``): group assignment
scopes the group's direct members only, the default-access role may leave users "not effectively entitled", and
with ``SyncAll`` false only assigned users and groups are provisioned.
"""

from ._assignments import resolve_principals
from ._cloudflare import virtual_group_match
from ._consistency import is_not_found
from ._graph import batch_get
from ._service_principals import DEFAULT_ACCESS_ROLE_ID, segment, sp_path

SEVERITIES = ("error", "warning", "info")
FAIL_ON = ("error", "warning", "never")
USER_SELECT = "id,displayName,userPrincipalName,mail,accountEnabled"
MEMBER_SELECT = USER_SELECT
ASSIGNMENT_SELECT = "id,appRoleId,principalId,principalType,principalDisplayName"
SP_SELECT = "id,appId,displayName,appRoles"


def finding(severity, code, obj, message):
    """One finding; ``obj`` is ``{type, id, name}`` of the object it is about."""
    if severity not in SEVERITIES:
        raise ValueError("unknown severity %r" % (severity,))
    return {"severity": severity, "code": code, "object": obj, "message": message}


def user_ref(user):
    return {"type": "user", "id": user.get("id"), "name": user.get("userPrincipalName") or user.get("displayName") or user.get("id")}


def group_ref(group_id, name):
    return {"type": "group", "id": group_id, "name": name or group_id}


def _via(source):
    return " (member of assigned group '%s')" % source if source else ""


# ----------------------------------------------------------------------------------------------- user rules

def rule_mail_missing(user, source=None):
    """MAIL_MISSING: Cloudflare's userName is the e-mail; a user without ``mail`` cannot be matched or created."""
    if user.get("mail"):
        return []
    upn = user.get("userPrincipalName")
    return [finding("error", "MAIL_MISSING", user_ref(user),
                    "User '%s'%s has no mail attribute; Cloudflare needs an e-mail identical to the user principal name. "
                    "Set the user's mail to '%s' in Entra ID." % (upn, _via(source), upn))]


def rule_upn_mail_mismatch(user, source=None):
    """UPN_MAIL_MISMATCH: userPrincipalName and mail must be identical, compared case-sensitively."""
    upn = user.get("userPrincipalName")
    mail = user.get("mail")
    if not upn or not mail or upn == mail:
        return []
    detail = "they differ only in letter case, which Cloudflare treats as different" if upn.lower() == mail.lower() else "they differ"
    return [finding("error", "UPN_MAIL_MISMATCH", user_ref(user),
                    "User '%s'%s has mail '%s': %s. Cloudflare requires the user principal name and the e-mail to be "
                    "identical (case-sensitive); change the mail (or the UPN) so both read exactly the same."
                    % (upn, _via(source), mail, detail))]


def rule_user_disabled(user, source=None):
    """USER_DISABLED: a disabled account is provisioned as inactive (or removed), so the person cannot log in."""
    if user.get("accountEnabled") is not False:
        return []
    return [finding("warning", "USER_DISABLED", user_ref(user),
                    "User '%s'%s is disabled in Entra ID: Cloudflare will receive it as inactive and the person will not "
                    "be an account member. Enable the account or remove it from the assignment." % (user.get("userPrincipalName"), _via(source)))]


USER_RULES = (rule_mail_missing, rule_upn_mail_mismatch, rule_user_disabled)


def check_user(user, source=None):
    """All user rules for one user (``source`` = the assigned group it came through, if any)."""
    result = []
    for rule in USER_RULES:
        result.extend(rule(user, source))
    return result


# ---------------------------------------------------------------------------------------------- group rules

def rule_group_name(group_id, name):
    """DEPRECATED_VIRTUAL_GROUP / GROUP_NAME_RESERVED_CF: names starting with ``CF`` are refused by Cloudflare."""
    name = name or ""
    match = virtual_group_match(name)
    if match:
        return [finding("error", "DEPRECATED_VIRTUAL_GROUP", group_ref(group_id, name),
                        "Assigned group '%s' follows the CF-<accountID> - <Role Name> virtual-group pattern (role '%s'), "
                        "deprecated by Cloudflare since 2025-06-02 and end-of-life since 2025-12-02. Create a group with "
                        "another name, provision it as a SCIM user group and attach a permission policy to it in Cloudflare."
                        % (name, match["role"]))]
    if name.startswith("CF"):
        return [finding("error", "GROUP_NAME_RESERVED_CF", group_ref(group_id, name),
                        "Assigned group '%s' starts with 'CF', a prefix Cloudflare reserves: Cloudflare refuses the group "
                        "and the provisioning cycle reports an error for it. Rename the group (or assign another group)."
                        % name)]
    if name[:2].upper() == "CF":
        return [finding("warning", "GROUP_NAME_RESERVED_CF", group_ref(group_id, name),
                        "Assigned group '%s' starts with '%s', which only differs in letter case from the prefix 'CF' that "
                        "Cloudflare reserves. Rename the group to be safe." % (name, name[:2]))]
    return []


def rule_nested_group(group_id, group_name, member):
    """NESTED_GROUP: Entra provisioning does not expand groups nested in an assigned group."""
    return [finding("warning", "NESTED_GROUP", group_ref(member.get("id"), member.get("displayName")),
                    "Group '%s' is nested in assigned group '%s': Entra provisioning only takes an assigned group's direct "
                    "members, so the members of '%s' are not provisioned. Assign '%s' itself, or add its users directly."
                    % (member.get("displayName"), group_name, member.get("displayName"), member.get("displayName")))]


# ----------------------------------------------------------------------------------------- assignment rules

def rule_default_access(assignment, app_roles):
    """DEFAULT_ACCESS_ROLE: an assignment to the default-access role instead of the app's ``User`` role."""
    if assignment.get("appRoleId") != DEFAULT_ACCESS_ROLE_ID:
        return []
    # The roles of a new non-gallery app carry value null; the User role is found by value or display name.
    user_role = [role for role in app_roles or [] if "User" in (role.get("value"), role.get("displayName"))]
    hint = " (id %s)" % user_role[0].get("id") if user_role else ""
    principal_type = (assignment.get("principalType") or "principal").lower()
    obj = {"type": principal_type, "id": assignment.get("principalId"), "name": assignment.get("principalDisplayName")}
    return [finding("warning", "DEFAULT_ACCESS_ROLE", obj,
                    "%s '%s' is assigned with the default-access role: provisioning may skip it as not effectively "
                    "entitled. Assign the app's 'User' role%s instead (entrascim.cloudflare.entra_app_assignment does)."
                    % (principal_type.capitalize(), assignment.get("principalDisplayName"), hint))]


def rule_scope(assignments, sync_all, sp):
    """NO_ASSIGNMENTS when nothing is assigned and SyncAll is false; SYNC_ALL_ENABLED (info) when SyncAll is true."""
    obj = {"type": "service_principal", "id": sp.get("id"), "name": sp.get("displayName")}
    if sync_all:
        return [finding("info", "SYNC_ALL_ENABLED", obj,
                        "SyncAll is true: every user and group of the tenant is in scope, not only the assigned ones. Set "
                        "sync_all to false in entrascim.cloudflare.entra_sync_secrets to provision only assigned principals.")]
    principals = [item for item in assignments if item.get("principalType") in ("User", "Group")]
    if principals:
        return []
    return [finding("error", "NO_ASSIGNMENTS", obj,
                    "No user or group is assigned to '%s' and SyncAll is false: provisioning has nothing to send to "
                    "Cloudflare. Assign users or groups (entrascim.cloudflare.entra_app_assignment)." % sp.get("displayName"))]


def rule_principal_not_found(assignment):
    """PRINCIPAL_NOT_FOUND: an assignment whose user or group cannot be read (deleted, or not yet replicated)."""
    obj = {"type": (assignment.get("principalType") or "principal").lower(), "id": assignment.get("principalId"),
           "name": assignment.get("principalDisplayName")}
    return [finding("warning", "PRINCIPAL_NOT_FOUND", obj,
                    "Assigned %s '%s' (%s) could not be read from the directory: it was deleted or has not replicated "
                    "yet. Remove the stale assignment or run the check again later."
                    % (obj["type"], assignment.get("principalDisplayName"), assignment.get("principalId")))]


# ------------------------------------------------------------------------------------------------- the scope

def is_group(member):
    """A directory object from a members list is a group (by ``@odata.type``; without it, by the absence of a UPN)."""
    odata_type = member.get("@odata.type")
    if odata_type:
        return odata_type == "#microsoft.graph.group"
    return "userPrincipalName" not in member


def is_user(member):
    odata_type = member.get("@odata.type")
    if odata_type:
        return odata_type == "#microsoft.graph.user"
    return "userPrincipalName" in member


class Scope(object):
    """What the rules look at, as read from Graph (or built by a test)."""

    def __init__(self, service_principal, assignments, sync_all, users=None, missing=None, group_members=None):
        self.service_principal = service_principal
        self.assignments = assignments
        self.sync_all = sync_all
        self.users = users or {}                  # principalId -> user object (directly assigned users)
        self.missing = missing or []              # assignments whose principal could not be read
        self.group_members = group_members or {}  # group principalId -> direct members (users and groups)


def parse_sync_all(secrets):
    """``SyncAll`` from a GET synchronization/secrets answer; unset means the portal default, false."""
    for item in (secrets or {}).get("value") or []:
        if item.get("key") == "SyncAll":
            return str(item.get("value")).strip().lower() == "true"
    return False


def read_principals(client, assignments, scope):
    """The directly assigned users and the direct members (users and groups) of every assigned group, read with one
    ``$batch`` (20 per call). A user or group that is gone (404) goes to ``scope.missing``; another failed read is
    made again on its own, which fails with the step "read users" or "read group members"."""
    users, groups, seen = [], [], set()
    for assignment in assignments:
        kind, principal_id = assignment.get("principalType"), assignment.get("principalId")
        if kind in ("User", "Group") and (kind, principal_id) not in seen:
            seen.add((kind, principal_id))
            (users if kind == "User" else groups).append(assignment)
    reads = [("/users/%s" % segment(item["principalId"]), {"$select": USER_SELECT}, "read users") for item in users]
    reads += [("groups/%s/members" % segment(item["principalId"]), {"$select": MEMBER_SELECT}, "read group members") for item in groups]
    answers = batch_get(client, reads, again=lambda err: not is_not_found(err))
    for index, (assignment, (body, error)) in enumerate(zip(users + groups, answers)):
        if error is not None and not is_not_found(error):
            raise error
        if error is not None:
            scope.missing.append(assignment)
        elif index < len(users):
            scope.users[assignment["principalId"]] = body or {}
        else:
            scope.group_members[assignment["principalId"]] = (body or {}).get("value") or []


def read_scope(client, sp_id):
    """Read everything the rules need with two ``$batch`` requests: the service principal, its assignments and
    ``SyncAll`` (independent reads), then the assigned users and the members of the assigned groups. A read of the
    first three that failed is made again on its own, which fails with its own step and message; no saved secrets
    yet (404) is the default, ``SyncAll`` false."""
    path = sp_path(sp_id)
    (sp, sp_error), (listing, list_error), (secrets, secrets_error) = batch_get(client, [
        (path, {"$select": SP_SELECT}, "read service principal"),
        (path + "/appRoleAssignedTo", {"$select": ASSIGNMENT_SELECT}, "list app role assignments"),
        (path + "/synchronization/secrets", None, "read synchronization secrets")], again=lambda err: not is_not_found(err))
    for error in (sp_error, list_error, None if is_not_found(secrets_error) else secrets_error):
        if error is not None:
            raise error
    scope = Scope(sp, (listing or {}).get("value") or [], parse_sync_all(secrets))
    read_principals(client, scope.assignments, scope)
    return scope


# ------------------------------------------------------------------------------------------ evaluating rules

class _Tally(object):
    """Findings and counters collected while the rules walk a scope."""

    def __init__(self):
        self.findings = []
        self.checked_users = set()
        self.nested = set()
        self.groups = set()
        self.member_users = 0
        self.users = {}

    def user(self, data, source=None):
        if data.get("id") not in self.checked_users:
            self.checked_users.add(data.get("id"))
            self.users[data.get("id")] = data
            self.findings.extend(check_user(data, source))

    def provisioned_users(self):
        """UPNs of the enabled users in scope that no error finding keeps out of Cloudflare."""
        blocked = set(item["object"].get("id") for item in self.findings
                      if item["severity"] == "error" and item["object"].get("type") == "user")
        return sorted(data.get("userPrincipalName") for user_id, data in self.users.items()
                      if user_id not in blocked and data.get("accountEnabled") is not False and data.get("userPrincipalName"))


def _evaluate_group(scope, assignment, tally):
    group_id = assignment.get("principalId")
    name = assignment.get("principalDisplayName")
    tally.groups.add(group_id)
    tally.findings.extend(rule_group_name(group_id, name))
    for member in scope.group_members.get(group_id, []):
        if is_group(member):
            tally.nested.add(member.get("id"))
            tally.findings.extend(rule_nested_group(group_id, name, member))
        elif is_user(member):
            tally.member_users += 1
            tally.user(member, source=name)


def evaluate(scope):
    """Apply every rule to a scope; return ``(findings, counts)``."""
    findings, counts, dummy = evaluate_with_users(scope)
    return findings, counts


def evaluate_with_users(scope):
    """Apply every rule to a scope; return ``(findings, counts, provisioned_users)``."""
    tally = _Tally()
    sp = scope.service_principal
    tally.findings.extend(rule_scope(scope.assignments, scope.sync_all, sp))
    for assignment in scope.assignments:
        tally.findings.extend(rule_default_access(assignment, sp.get("appRoles") or []))
    for assignment in scope.missing:
        tally.findings.extend(rule_principal_not_found(assignment))
    for assignment in scope.assignments:
        if assignment.get("principalType") == "User" and assignment.get("principalId") in scope.users:
            tally.user(scope.users[assignment["principalId"]])
    for assignment in scope.assignments:
        if assignment.get("principalType") == "Group" and assignment.get("principalId") not in tally.groups:
            _evaluate_group(scope, assignment, tally)
    severities = [item["severity"] for item in tally.findings]
    counts = {
        "assignments": len(scope.assignments),
        "assigned_users": len(set(a.get("principalId") for a in scope.assignments if a.get("principalType") == "User")),
        "assigned_groups": len(tally.groups),
        "group_member_users": tally.member_users,
        "nested_groups": len(tally.nested),
        "users_checked": len(tally.checked_users),
        "errors": severities.count("error"),
        "warnings": severities.count("warning"),
        "infos": severities.count("info"),
    }
    return sort_findings(tally.findings), counts, tally.provisioned_users()


def sort_findings(findings):
    order = dict((severity, index) for index, severity in enumerate(SEVERITIES))
    return sorted(findings, key=lambda item: (order[item["severity"]], item["code"], str(item["object"].get("name"))))


def failing(findings, fail_on):
    """The findings that make the task fail under ``fail_on`` (error, warning or never)."""
    if fail_on not in FAIL_ON:
        raise ValueError("fail_on must be one of %s" % ", ".join(FAIL_ON))
    if fail_on == "never":
        return []
    levels = ("error",) if fail_on == "error" else ("error", "warning")
    return [item for item in findings if item["severity"] in levels]


def failure_summary(failed):
    """One line naming each failing finding: ``Preflight found 2 problem(s): UPN_MAIL_MISMATCH user a@b; ...``."""
    parts = ["%s %s %s" % (item["code"], item["object"].get("type"), item["object"].get("name")) for item in failed[:10]]
    more = "; and %d more" % (len(failed) - 10) if len(failed) > 10 else ""
    return "Preflight found %d problem(s) that break Cloudflare provisioning: %s%s (see findings for what to do)" % (
        len(failed), "; ".join(parts), more)


def read_planned_scope(client, principals, sync_all=False):
    """The scope an app will have once ``principals`` (entra_app_assignment's format) are assigned, read before the app
    exists: each principal is resolved by name or id (one ``$batch``; a name that matches no object, or several, raises
    ``AssignmentError`` naming it, as entra_app_assignment would after having written the app), then the users and the
    group members are read as for an existing app. The assignments are those entra_app_assignment makes (the ``User``
    role), so the default-access rule has nothing to find."""
    resolved, dummy = resolve_principals(client, principals)
    assignments = [{"id": None, "principalId": p["id"], "principalType": p["type"], "principalDisplayName": p["display_name"],
                    "appRoleId": None} for p in resolved]
    scope = Scope({"id": None, "appRoles": []}, assignments, sync_all)
    read_principals(client, assignments, scope)
    return scope


def run_preflight(client, sp_id, fail_on="error", principals=None, sync_all=False):
    """Read the scope (of the app ``sp_id``, or the planned one of ``principals``), apply the rules; return the module
    result and the failure message (None = passed)."""
    scope = read_scope(client, sp_id) if principals is None else read_planned_scope(client, principals, sync_all)
    findings, counts, provisioned = evaluate_with_users(scope)
    failed = failing(findings, fail_on)
    result = {
        "changed": False,
        "service_principal_id": sp_id,
        "sync_all": scope.sync_all,
        "findings": findings,
        "counts": counts,
        "provisioned_users": provisioned,
        "passed": not failing(findings, "error" if fail_on == "never" else fail_on),
    }
    return result, (failure_summary(failed) if failed else None)

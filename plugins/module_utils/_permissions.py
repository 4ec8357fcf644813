# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which Microsoft Graph permission each step of the collection needs.

Used by ``failure_message`` for 401/403 answers and as the source of docs/permissions.md.
Source: the "Permissions" tables of the v1.0 API pages in microsoftgraph/microsoft-graph-docs-contrib
(applicationtemplate-instantiate.md, serviceprincipal-list.md, synchronization-*.md,
serviceprincipal-post-approleassignedto.md, provisioningobjectsummary-list.md, user-list.md,
group-list.md, group-list-members.md); what ``Application.ReadWrite.OwnedBy`` covers: concepts/permissions-reference.md.
"""

_ADMIN_ROLES = "the Application Administrator or Cloud Application Administrator role"


class StepPermission:
    """Permissions for one step.

    ``required`` are all needed together (least privileged application permissions);
    ``alternatives`` are higher-privileged permissions that also work in place of the first
    required one; ``delegated_role`` is the Entra role a signed-in user needs for delegated tokens.
    """

    def __init__(self, required, alternatives=(), delegated_role=None, note=None):
        self.required = tuple(required)
        self.alternatives = tuple(alternatives)
        self.delegated_role = delegated_role
        self.note = note

    def as_dict(self):
        return {
            "required": list(self.required),
            "alternatives": list(self.alternatives),
            "delegated_role": self.delegated_role,
            "note": self.note,
        }


_OWNED_BY_NOTE = "Application.ReadWrite.OwnedBy only covers enterprise apps that the calling app owns."

_APP_READ = StepPermission(["Application.Read.All"], ["Application.ReadWrite.All", "Directory.Read.All"])
_APP_WRITE = StepPermission(
    ["Application.ReadWrite.OwnedBy"], ["Application.ReadWrite.All"], delegated_role=_ADMIN_ROLES, note=_OWNED_BY_NOTE,
)
_SYNC_READ = StepPermission(
    ["Application.ReadWrite.OwnedBy"], ["Synchronization.Read.All", "Synchronization.ReadWrite.All"],
    delegated_role=_ADMIN_ROLES, note=_OWNED_BY_NOTE,
)
_SYNC_WRITE = StepPermission(
    ["Application.ReadWrite.OwnedBy"], ["Synchronization.ReadWrite.All"], delegated_role=_ADMIN_ROLES, note=_OWNED_BY_NOTE,
)
_ASSIGN = StepPermission(
    ["AppRoleAssignment.ReadWrite.All", "Application.Read.All"], ["Directory.Read.All (in place of Application.Read.All)"],
    delegated_role=_ADMIN_ROLES,
)

STEP_PERMISSIONS = {
    "instantiate application": StepPermission(
        ["Application.ReadWrite.OwnedBy"], ["Application.ReadWrite.All", "Directory.ReadWrite.All"],
        delegated_role=_ADMIN_ROLES,
    ),
    "list applications": _APP_READ,
    "read application": _APP_READ,
    "list service principals": _APP_READ,
    "read service principal": _APP_READ,
    "update application": _APP_WRITE,
    "update service principal": _APP_WRITE,
    "mark the service principal as managed by entrascim.cloudflare": _APP_WRITE,
    "read application template": StepPermission(
        [], note="Needs no permission beyond a valid Microsoft Graph token (applicationtemplate-get.md)."),
    "delete application": _APP_WRITE,
    "list synchronization templates": _SYNC_READ,
    "list synchronization jobs": _SYNC_READ,
    "read synchronization job": _SYNC_READ,
    "read synchronization secrets": _SYNC_READ,
    "create synchronization job": _SYNC_WRITE,
    "delete synchronization job": _SYNC_WRITE,
    "start synchronization job": _SYNC_WRITE,
    "pause synchronization job": _SYNC_WRITE,
    "restart synchronization job": _SYNC_WRITE,
    "validate credentials": _SYNC_WRITE,
    "save synchronization secrets": _SYNC_WRITE,
    "list app role assignments": _APP_READ,
    "assign app role": _ASSIGN,
    "remove app role assignment": _ASSIGN,
    "read provisioning logs": StepPermission(
        ["AuditLog.Read.All", "Directory.Read.All"],
        delegated_role="a reports role (Reports Reader, Security Reader, Global Reader, Application Administrator or Cloud Application Administrator)",
    ),
    "read users": StepPermission(["User.Read.All"], ["Directory.Read.All"]),
    "read groups": StepPermission(["GroupMember.Read.All"], ["Group.Read.All", "Directory.Read.All"]),
    "read group members": StepPermission(["GroupMember.Read.All"], ["Group.Read.All", "Directory.Read.All"]),
}

GENERAL_ADVICE = (
    "Check that the credential's app registration has the Microsoft Graph application permissions this collection "
    "needs, with admin consent (Application.ReadWrite.All, Synchronization.ReadWrite.All, "
    "AppRoleAssignment.ReadWrite.All, AuditLog.Read.All, Directory.Read.All; see docs/permissions.md)."
)

_TOKEN_ADVICE = (
    "Microsoft Graph rejected the access token (expired, issued for another resource or cloud, or for another tenant)."
)


def permissions_for(step):
    """Return the ``StepPermission`` of ``step`` (exact name, else the longest known step it starts with), or None."""
    if not step:
        return None
    key = " ".join(str(step).lower().split())
    if key in STEP_PERMISSIONS:
        return STEP_PERMISSIONS[key]
    best = None
    for name in STEP_PERMISSIONS:
        if key.startswith(name + " ") and (best is None or len(name) > len(best)):
            best = name
    return STEP_PERMISSIONS[best] if best else None


def permission_hint(step, status=403):
    """Return the sentence telling which Graph permission(s) ``step`` needs (general advice if unknown)."""
    perm = permissions_for(step)
    prefix = _TOKEN_ADVICE + " " if status == 401 else ""
    if perm is None:
        return prefix + GENERAL_ADVICE
    if not perm.required:
        return prefix + (perm.note or GENERAL_ADVICE)
    if len(perm.required) > 1:
        needed = " and ".join(perm.required)
        text = "This step needs the Microsoft Graph application permissions %s" % needed
    else:
        text = "This step needs the Microsoft Graph application permission %s" % perm.required[0]
    if perm.alternatives:
        text += " (or a higher one: %s)" % ", ".join(perm.alternatives)
    text += ", granted with admin consent."
    if perm.note:
        text += " " + perm.note
    if perm.delegated_role:
        text += " With a delegated (user) token the signed-in user also needs %s." % perm.delegated_role
    return prefix + text


def permissions_table():
    """Return ``[(step, StepPermission), ...]`` sorted by step, for documentation."""
    return sorted(STEP_PERMISSIONS.items())

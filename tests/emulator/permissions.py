"""Which Graph application permissions each emulated operation needs.

Source: the "Permissions" tables (least privileged and higher privileged permissions; any of the listed permissions
grants) of the v1.0 API pages in microsoftgraph/microsoft-graph-docs-contrib ``api-reference/v1.0/api/``:
applicationtemplate-instantiate.md, application-list.md, serviceprincipal-list.md, serviceprincipal-get.md, the
synchronization-*.md pages, serviceprincipal-post-approleassignedto.md and -list-approleassignedto.md,
provisioningobjectsummary-list.md (AuditLog.Read.All and Directory.Read.All), user-list.md, group-list.md,
group-list-members.md. A requirement is a tuple of groups; every group must be satisfied by one of its permissions.
``Application.ReadWrite.OwnedBy`` satisfies a group only for objects the caller owns (concepts/permissions-reference.md;
the emulator makes the client that instantiated an app its owner, which is not verified on a tenant); the list and get
pages accept it too, so it still lets the caller list and read all apps.
"""

OWNED_BY = "Application.ReadWrite.OwnedBy"

APP_READ = (("Application.Read.All", "Application.ReadWrite.All", OWNED_BY, "Directory.Read.All", "Directory.ReadWrite.All"),)
APP_WRITE = (("Application.ReadWrite.All", OWNED_BY, "Directory.ReadWrite.All"),)
INSTANTIATE = (("Application.ReadWrite.All", OWNED_BY, "Directory.ReadWrite.All"),)
SYNC_READ = (("Synchronization.Read.All", "Synchronization.ReadWrite.All", OWNED_BY),)
SYNC_WRITE = (("Synchronization.ReadWrite.All", OWNED_BY),)
ASSIGNMENT_READ = (("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All",
                    "AppRoleAssignment.ReadWrite.All", OWNED_BY),)
ASSIGNMENT_WRITE = (("AppRoleAssignment.ReadWrite.All",),
                    ("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"))
USERS_READ = (("User.Read.All", "User.ReadBasic.All", "Directory.Read.All", "Directory.ReadWrite.All"),)
GROUPS_READ = (("Group.Read.All", "GroupMember.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"),)
REPORTS_READ = (("AuditLog.Read.All",), ("Directory.Read.All", "Directory.ReadWrite.All"))
NONE = ()


def evaluate(requirement, granted):
    """Return ``None`` when ``granted`` lacks a group, else whether the grant relies on OwnedBy (``True``/``False``)."""
    owned_only = False
    for group in requirement:
        held = set(group) & set(granted)
        if not held:
            return None
        if held == {OWNED_BY}:
            owned_only = True
    return owned_only

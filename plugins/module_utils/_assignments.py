# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""App role assignments of an enterprise app (users and groups in scope for provisioning).

Graph facts used here (microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/serviceprincipal-post-approleassignedto.md,
serviceprincipal-list-approleassignedto.md (the list may lag behind recent grants), serviceprincipal-delete-approleassignedto.md,
concepts/json-batching.md, concepts/application-saml-sso-configure-api.md):

* ``POST /servicePrincipals/{id}/appRoleAssignedTo`` ``{principalId, resourceId, appRoleId}`` -> 201; assigning
  twice answers 400 "Permission being assigned already exists on the object", which means "present" (observed
  behaviour that community scripts match on, not documented on the reference page).
* ``GET .../appRoleAssignedTo`` lists them (paged, no ``$filter``): we read it once per run, in one ``$batch`` with
  the service principal and the principal lookups (json-batching.md: independent requests in one call).
* ``DELETE .../appRoleAssignedTo/{assignment id}`` -> 204.
* The app roles of a template-made service principal (``User``, ``msiam_access``) have ``value: null``: a role is
  matched by id, then value, then display name. The all-zero id is "Default Access".
* Several independent writes go through ``$batch`` (at most 20 per call).
"""

import time


from ._consistency import is_not_found, is_replication_error, retry_replication
from ._errors import GraphError, ReportedError, error_step
from ._graph import batch_error, batch_get, odata_quote
from ._service_principals import DEFAULT_ACCESS_ROLE_ID, assignments_path, segment, sp_path

ALREADY_EXISTS = "already exists on the object"
ASSIGNMENT_FIELDS = "id,appRoleId,principalId,principalType,principalDisplayName,resourceId"
SERVICE_PRINCIPAL_FIELDS = "id,appId,displayName,appRoles"
PRINCIPAL_TYPES = {"user": "User", "group": "Group"}
IDENTIFIERS = ("id", "display_name", "user_principal_name")


class AssignmentError(ReportedError):
    """Bad input or an unresolvable principal/role (raised before anything is written); ``extra`` go to fail_json."""


class PartialFailure(GraphError):
    """A write failed after other writes of the same run succeeded: the failed write's GraphError (``error``), reported as
    that error, with the result so far (``result``; its keys but the diff go to fail_json)."""

    def __init__(self, error, result):
        super(PartialFailure, self).__init__(error.message, status=error.status, code=error.code, request_id=error.request_id,
                                             date=error.date, outer_code=error.outer_code, method=error.method, url=error.url,
                                             attempts=error.attempts)
        self.step = error.step
        self.error = error
        self.result = result
        self.extra = dict((key, value) for key, value in result.items() if key != "diff")


def is_lag(err):
    """Answers a write on a just-created service principal gives until it has replicated (not 403: that is a permission)."""
    return is_replication_error(err, forbidden=False)


def transient(err):
    """A ``$batch`` item that throttling or an outage kept from running (sent again alone, where the transport retries it)."""
    return isinstance(err, GraphError) and err.status in (429, 500, 502, 503, 504)


def already_exists(err):
    return isinstance(err, GraphError) and err.status == 400 and ALREADY_EXISTS in (err.message or "").lower()


# ---------------------------------------------------------------------------------------------- input
def validate_principals(principals):
    """Check each principal names its type and exactly one identifier valid for that type; raise AssignmentError."""
    problems = []
    for index, principal in enumerate(principals or []):
        kind = principal.get("type")
        given = [key for key in IDENTIFIERS if principal.get(key)]
        where = "principals[%d]" % index
        if kind not in PRINCIPAL_TYPES:
            problems.append("%s: type must be user or group" % where)
        elif len(given) != 1:
            problems.append("%s: give exactly one of id, %s" % (where, "display_name" if kind == "group" else "user_principal_name"))
        elif kind == "user" and given[0] == "display_name":
            problems.append("%s: a user is named by user_principal_name (or id), not display_name" % where)
        elif kind == "group" and given[0] == "user_principal_name":
            problems.append("%s: a group is named by display_name (or id), not user_principal_name" % where)
    if problems:
        raise AssignmentError("Invalid principals: " + "; ".join(problems))


def describe(principal):
    """``group 'Engineering'``, ``user 'ann@example.com'`` or ``group id <guid>``."""
    kind = principal["type"]
    if principal.get("id"):
        return "%s id %s" % (kind, principal["id"])
    if kind == "user":
        return "user '%s'" % principal["user_principal_name"]
    return "group '%s'" % principal["display_name"]


def lookup(principal):
    """``(path, params, step)`` of the Graph read that resolves one principal."""
    kind = principal["type"]
    if kind == "user":
        fields, step = "id,displayName,userPrincipalName", "read users"
        if principal.get("id"):
            return "/users/%s" % segment(principal["id"]), {"$select": fields}, step
        return "/users", {"$filter": "userPrincipalName eq %s" % odata_quote(principal["user_principal_name"]), "$select": fields}, step
    fields, step = "id,displayName", "read groups"
    if principal.get("id"):
        return "/groups/%s" % segment(principal["id"]), {"$select": fields}, step
    return "/groups", {"$filter": "displayName eq %s" % odata_quote(principal["display_name"]), "$select": fields}, step


def _found(principal, obj):
    return {"id": obj["id"].lower(), "type": PRINCIPAL_TYPES[principal["type"]], "display_name": obj.get("displayName"),
            "requested": describe(principal)}


def interpret(principal, body, error):
    """Turn one lookup answer into ``(resolved principal or None, problem or None)``; raise other Graph errors."""
    if error is not None:
        if is_not_found(error) and principal.get("id"):
            return None, "%s does not exist" % describe(principal)
        raise error
    if principal.get("id"):
        return _found(principal, body), None
    matches = (body or {}).get("value") or []
    if not matches:
        return None, "%s matches no %s" % (describe(principal), principal["type"])
    if len(matches) > 1:
        return None, "%s matches %d %ss (ids %s): name it by id" % (
            describe(principal), len(matches), principal["type"], ", ".join(m.get("id") for m in matches))
    return _found(principal, matches[0]), None


def lookup_answers(client, principals, answers=None):
    """``[(body, error)]``: the answer of each principal's lookup. ``answers`` are the results of those reads made
    already (in a ``$batch`` with other reads, see ``AssignmentService.read_all``); else they are made here
    (``batch_get``: one ``$batch`` when there are several; items that throttling or an outage kept from running are
    sent again alone)."""
    if answers is None:
        answers = batch_get(client, [lookup(p) for p in principals], again=transient)
    return answers


def resolve_principals(client, principals, missing_ok=False, answers=None):
    """Resolve every principal to ``{id, type, display_name, requested}`` (duplicates merged).

    One request per principal, through ``$batch`` when there are several (``answers``: see ``lookup_answers``). A
    name matching 0 or more than 1 object fails naming it (all problems at once); with ``missing_ok`` (state absent)
    a principal that does not exist is skipped and reported in the second return value.
    """
    validate_principals(principals)
    answers = lookup_answers(client, principals, answers)
    resolved, missing, problems = [], [], []
    seen = set()
    for principal, (body, error) in zip(principals, answers):
        found, problem = interpret(principal, body, error)
        if problem:
            if missing_ok and ("does not exist" in problem or "matches no" in problem):
                missing.append(problem)
            else:
                problems.append(problem)
        elif found["id"] not in seen:
            seen.add(found["id"])
            resolved.append(found)
    if problems:
        raise AssignmentError("Cannot resolve principals: %s. Nothing was assigned: check the names (a group's display name and a "
                              "user's principal name must match exactly, letter case aside) or give the id." % "; ".join(problems),
                              unresolved=problems)
    return resolved, missing


def resolve_role(sp, app_role):
    """The app role of ``sp`` named ``app_role`` (id, value or display name): ``{id, value, display_name}``."""
    wanted = str(app_role)
    if wanted.lower() == DEFAULT_ACCESS_ROLE_ID:
        return {"id": DEFAULT_ACCESS_ROLE_ID, "value": None, "display_name": "Default Access"}
    roles = sp.get("appRoles") or []
    for matches in (lambda r: (r.get("id") or "").lower() == wanted.lower(),
                    lambda r: r.get("value") is not None and r.get("value") == wanted,
                    lambda r: r.get("displayName") == wanted):
        found = [role for role in roles if matches(role)]
        if len(found) > 1:
            raise AssignmentError("App role '%s' is ambiguous on service principal %s: use its id (%s)"
                                  % (wanted, sp.get("id"), ", ".join(r.get("id") for r in found)))
        if found:
            role = found[0]
            if role.get("isEnabled") is False:
                raise AssignmentError("App role '%s' (%s) of service principal %s is disabled" % (wanted, role.get("id"), sp.get("id")))
            return {"id": role["id"].lower(), "value": role.get("value"), "display_name": role.get("displayName")}
    available = ", ".join("%s (%s)" % (r.get("value") or r.get("displayName"), r.get("id")) for r in roles) or "none"
    raise AssignmentError("Service principal %s has no app role '%s'; its app roles are: %s" % (sp.get("id"), wanted, available))


# ---------------------------------------------------------------------------------------------- results
def assignment_result(assignment):
    """One entry of the ``assignments`` return value."""
    return {
        "id": assignment.get("id"),
        "principal_id": (assignment.get("principalId") or "").lower() or None,
        "principal_type": assignment.get("principalType"),
        "principal_display_name": assignment.get("principalDisplayName"),
        "app_role_id": (assignment.get("appRoleId") or "").lower() or None,
    }


def _sort_key(assignment):
    return ((assignment.get("principalType") or ""), (assignment.get("principalDisplayName") or "").lower(),
            (assignment.get("principalId") or "").lower(), (assignment.get("appRoleId") or "").lower())


def principal_view(assignments, role_names):
    """The diff view: ``{"principals": ["group Engineering (<id>) as User", ...]}`` sorted."""
    lines = []
    for assignment in sorted(assignments, key=_sort_key):
        role_id = (assignment.get("appRoleId") or "").lower()
        lines.append("%s %s (%s) as %s" % ((assignment.get("principalType") or "principal").lower(), assignment.get("principalDisplayName"),
                                           assignment.get("principalId"), role_names.get(role_id, role_id)))
    return {"principals": lines}


def _key(assignment):
    return ((assignment.get("principalId") or "").lower(), (assignment.get("appRoleId") or "").lower())


def plan(existing, desired, role_id, state, purge):
    """``(to_add, to_remove)``: principals to assign ``role_id`` to, and existing assignments to delete.

    present: add each desired principal lacking ``role_id``; with ``purge`` remove every other assignment (other
    principals, and other roles of listed principals). absent: remove the listed principals' ``role_id`` assignments.
    """
    have = set(_key(a) for a in existing)
    wanted = set((p["id"], role_id) for p in desired)
    if state == "absent":
        return [], [a for a in existing if _key(a) in wanted]
    to_add = [p for p in desired if (p["id"], role_id) not in have]
    to_remove = [a for a in existing if _key(a) not in wanted] if purge else []
    return to_add, to_remove


# ---------------------------------------------------------------------------------------------- service
class AssignmentService:
    """Graph calls for one service principal's assignments, with injectable ``sleep``/``clock`` for tests."""

    def __init__(self, client, sp_id, wait_timeout=120, sleep=time.sleep, clock=time.monotonic, progress=None):
        self.client = client
        self.sp_id = sp_id
        self.base = assignments_path(sp_id)
        self.wait_timeout = wait_timeout
        self.sleep = sleep
        self.clock = clock
        self.progress = progress

    def _retry(self, call, what):
        return retry_replication(call, self.wait_timeout, sleep=self.sleep, clock=self.clock, progress=self.progress,
                                 what=what, retry_on=is_lag)

    def service_principal(self):
        def read():
            with error_step("read service principal"):
                return self.client.get(sp_path(self.sp_id), params={"$select": SERVICE_PRINCIPAL_FIELDS})
        return self._retry(read, "reading service principal %s" % self.sp_id)

    def list(self):
        with error_step("list app role assignments"):
            return self.client.list(self.base, params={"$select": ASSIGNMENT_FIELDS})

    def read_all(self, principals):
        """``(service principal, assignments, lookup answers)`` with one ``$batch`` request: the service principal (its
        app roles), its assignments and the lookup of every principal are independent reads. A read of the service
        principal or of its assignments that failed (still replicating, throttled, no permission) is made again on its
        own, which waits for replication and fails with that read's step and message."""
        reads = [(sp_path(self.sp_id), {"$select": SERVICE_PRINCIPAL_FIELDS}),
                 (self.base, {"$select": ASSIGNMENT_FIELDS})]
        reads.extend(lookup(p) for p in principals)
        answers = batch_get(self.client, reads, again=transient)
        (sp, sp_error), (listing, list_error) = answers[0], answers[1]
        if sp_error is not None:
            sp = self.service_principal()
        existing = self.list() if list_error is not None else (listing or {}).get("value") or []
        return sp, existing, answers[2:]

    def _create_one(self, principal, role_id):
        body = {"principalId": principal["id"], "resourceId": self.sp_id, "appRoleId": role_id}

        def call():
            with error_step("assign app role to %s %s" % (principal["type"].lower(), principal["display_name"])):
                return self.client.post(self.base, body)
        return self._retry(call, "assigning %s" % principal["requested"])

    def create(self, principals, role_id):
        """Assign ``role_id`` to each principal; return ``(created assignments, principals already assigned, first error)``."""
        created, present, failure = [], [], None
        if len(principals) > 1:
            requests = [{"method": "POST", "url": self.base,
                         "body": {"principalId": p["id"], "resourceId": self.sp_id, "appRoleId": role_id}} for p in principals]
            items = self.client.batch(requests)
        else:
            items = [None] * len(principals)
        for principal, item in zip(principals, items):
            try:
                error = batch_error(item) if item is not None else None
                if item is None or is_lag(error) or transient(error):
                    created.append(self._create_one(principal, role_id))
                elif error is not None:
                    error.step = "assign app role to %s %s" % (principal["type"].lower(), principal["display_name"])
                    raise error
                else:
                    created.append(item.get("body") or {})
            except GraphError as err:
                if already_exists(err):
                    present.append(principal)
                elif failure is None:
                    failure = err
        return created, present, failure

    def delete(self, assignments):
        """Delete the assignments; return ``(deleted assignments, first error)``. Already gone (404) is not an error."""
        deleted, failure = [], None
        if len(assignments) > 1:
            items = self.client.batch([{"method": "DELETE", "url": "%s/%s" % (self.base, segment(a["id"]))} for a in assignments])
        else:
            items = [None] * len(assignments)
        for assignment, item in zip(assignments, items):
            kind = (assignment.get("principalType") or "principal").lower()
            step = "remove app role assignment of %s %s" % (kind, assignment.get("principalDisplayName"))
            try:
                error = batch_error(item) if item is not None else None
                if item is None or transient(error):
                    with error_step(step):
                        self.client.delete("%s/%s" % (self.base, segment(assignment["id"])))
                elif error is not None:
                    error.step = step
                    raise error
                deleted.append(assignment)
            except GraphError as err:
                if not is_not_found(err) and failure is None:
                    failure = err
        return deleted, failure


def reserved_prefix_warnings(desired):
    """Cloudflare refuses SCIM groups whose name starts with ``CF`` (cloudflare-docs
    src/content/docs/fundamentals/account/account-security/scim-setup/entra.mdx). This module is not Cloudflare-specific,
    so it warns; the cloudflare_scim role refuses such groups."""
    return ["group '%s' starts with 'CF', a prefix Cloudflare reserves: when this app provisions to Cloudflare, Cloudflare "
            "refuses to create the group. Rename it in Entra ID, or assign another group." % p["display_name"]
            for p in desired if p["type"] == "Group" and str(p.get("display_name") or "").startswith("CF")]


def refuse_purge_to_empty(existing, desired, state, purge, allow_purge_all):
    """``purge`` with an empty list would remove every assignment, after which Entra deprovisions (in Cloudflare:
    deactivates) every user of the app at its next cycle. A misspelled variable gives exactly that empty list, so it needs
    ``allow_purge_all``. Raised before any write."""
    if state == "present" and purge and not desired and existing and not allow_purge_all:
        names = sorted(set("%s %s" % ((a.get("principalType") or "principal").lower(), a.get("principalDisplayName"))
                           for a in existing))
        raise AssignmentError(
            "Refusing to remove all %d assignments (%s): purge=true with an empty principals list would leave the app with "
            "no user or group, and the next provisioning cycle would deprovision every user it provisioned. If that is "
            "what you want, set allow_purge_all=true (role: cloudflare_scim_assignments_purge_all=true). Nothing was "
            "changed." % (len(existing), ", ".join(names)), assignments=[assignment_result(a) for a in existing])


def ensure_assignments(service, principals, app_role="User", state="present", purge=False, check_mode=False,
                       allow_purge_all=False):
    """Entry point of entra_app_assignment.

    Returns the module result: changed, assignments, app_role, added, removed, skipped_principals, warnings and diff.
    Raises AssignmentError before any write for bad input, GraphError when nothing was written, PartialFailure otherwise.
    New assignments are made before old ones are removed, so a failed create never leaves the app with fewer.
    """
    validate_principals(principals)
    sp, existing, answers = service.read_all(principals)
    role = resolve_role(sp, app_role)
    role_names = dict(((r.get("id") or "").lower(), r.get("value") or r.get("displayName")) for r in sp.get("appRoles") or [])
    role_names[DEFAULT_ACCESS_ROLE_ID] = "Default Access"
    desired, missing = resolve_principals(service.client, principals, missing_ok=(state == "absent"), answers=answers)
    refuse_purge_to_empty(existing, desired, state, purge, allow_purge_all)
    to_add, to_remove = plan(existing, desired, role["id"], state, purge)
    before = principal_view(existing, role_names)
    result = {"changed": bool(to_add or to_remove), "app_role": role, "skipped_principals": missing,
              "warnings": (reserved_prefix_warnings(desired) if state == "present" else [])
              + ["%s: nothing to remove" % skipped for skipped in missing]}
    planned = [{"id": None, "principalId": p["id"], "principalType": p["type"], "principalDisplayName": p["display_name"],
                "appRoleId": role["id"], "resourceId": service.sp_id} for p in to_add]
    if check_mode or not (to_add or to_remove):
        removed_ids = set(a["id"] for a in to_remove)
        after = [a for a in existing if a["id"] not in removed_ids] + planned
        return _finish(result, after, before, role_names, planned, to_remove)
    created, present, create_error = service.create(to_add, role["id"])
    deleted, delete_error = service.delete(to_remove) if create_error is None else ([], None)
    deleted_ids = set(a["id"] for a in deleted)
    after = [a for a in existing if a["id"] not in deleted_ids] + created
    if present:
        # Assigned meanwhile (or the list lagged): read the list again for their ids.
        current = dict((_key(a), a) for a in service.list())
        for principal in present:
            after.append(current.get((principal["id"], role["id"])) or {
                "id": None, "principalId": principal["id"], "principalType": principal["type"],
                "principalDisplayName": principal["display_name"], "appRoleId": role["id"]})
    result["changed"] = bool(created or deleted)
    result = _finish(result, after, before, role_names, created, deleted)
    error = create_error or delete_error
    if error is not None:
        if result["changed"]:
            raise PartialFailure(error, result)
        raise error
    return result


def _finish(result, after, before, role_names, added, removed):
    result["assignments"] = [assignment_result(a) for a in sorted(after, key=_sort_key)]
    result["added"] = [assignment_result(a) for a in sorted(added, key=_sort_key)]
    result["removed"] = [assignment_result(a) for a in sorted(removed, key=_sort_key)]
    result["diff"] = {"before": before, "after": principal_view(after, role_names)}
    return result

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""entra_app's decisions: which app the task is about (exact name, template, pin), adopt or create, delete only what
the collection marked, and the shapes of its result and diff. The Graph operations are in ``_app_service``."""

from ._app_service import AppError, _age, _ids
from ._cloudflare import valid_account_id
from ._errors import InputError
from ._service_principals import marked_tags, marker_of, needs_marking


def application_result(app):
    """The ``application`` return value: {id, app_id, display_name, application_template_id}."""
    if not app:
        return {}
    return {
        "id": app.get("id"),
        "app_id": app.get("appId"),
        "display_name": app.get("displayName"),
        "application_template_id": app.get("applicationTemplateId"),
    }


def service_principal_result(sp):
    """The ``service_principal`` return value: {id, app_id, display_name, app_roles [{id, value, display_name}]}."""
    if not sp:
        return {}
    marker = marker_of(sp)
    return {
        "id": sp.get("id"),
        "app_id": sp.get("appId"),
        "display_name": sp.get("displayName"),
        "managed": marker["managed"],
        "cloudflare_account_id": marker["account_id"],
        "app_roles": [
            {"id": role.get("id"), "value": role.get("value"), "display_name": role.get("displayName")}
            for role in sp.get("appRoles") or []
        ],
    }


def diff_view(app, sp, display_name, template_id):
    """One side of the diff: the app as a flat dict (state absent when there is none)."""
    if not app:
        return {"state": "absent", "display_name": display_name, "application_template_id": template_id}
    marker = marker_of(sp)
    return {
        "state": "present",
        "display_name": app.get("displayName"),
        "application_template_id": app.get("applicationTemplateId"),
        "application_id": app.get("id"),
        "app_id": app.get("appId"),
        "service_principal_id": (sp or {}).get("id"),
        "managed_by_collection": marker["managed"],
        "cloudflare_account_id": marker["account_id"],
    }


def _select(service, display_name, template_id, app_id):
    """Find the one app the task is about: ``(app or None, its service principal if already read, else None, apps whose
    name differs only in letter case)``; raise AppError for duplicates or a mismatched pin."""
    if app_id:
        app = service.find_by_app_id(app_id)
        if app and display_name is not None and app.get("displayName") != display_name:
            raise AppError("The application with app_id %s is named '%s', not '%s'. Fix display_name or app_id."
                           % (app_id, app.get("displayName"), display_name), application=application_result(app))
        return app, None, []
    listed, sps = service.find_by_name_with_service_principals(display_name, template_id)
    apps = [app for app in listed if app.get("displayName") == display_name]
    other_case = [app for app in listed if app.get("displayName") != display_name]
    if len(apps) > 1:
        raise AppError("Found %d applications named '%s' made from template %s: %s. Keep one: delete the extra ones (Entra admin "
                       "center > Enterprise applications, or entrascim.cloudflare.entra_app with state=absent and their app_id), or "
                       "pin the one to manage with app_id. When runs at the same time made them, keep the oldest: it is the one "
                       "they all configured." % (len(apps), display_name, template_id, _ids(sorted(apps, key=_age))),
                       duplicates=[application_result(app) for app in apps])
    if not apps:
        return None, None, other_case
    return apps[0], next((sp for sp in sps if sp.get("appId") == apps[0].get("appId")), None), other_case


def _other_case_text(apps):
    return ", ".join("'%s' (%s)" % (app.get("displayName"), app.get("id")) for app in sorted(apps, key=_age))


def _check_account(app, sp, account_id):
    """An app marked for another Cloudflare account is never adopted for this one (raised before any write)."""
    marked = marker_of(sp)["account_id"]
    if account_id and marked and marked != account_id:
        raise AppError("Application %s (app_id %s) named '%s' is marked for Cloudflare account %s, not %s: two accounts "
                       "would share one app. Give this account's app another display_name. Nothing was changed."
                       % (app["id"], app.get("appId"), app.get("displayName"), marked, account_id),
                       application=application_result(app))


def ensure_present(service, display_name, template_id, app_id=None, wait=True, check_mode=False, account_id=None):
    """Find or create the enterprise app, and mark it (a found app without the marker is adopted: a reported change);
    return the module result (changed, adopted, application, service_principal, diff)."""
    app, sp, other_case = _select(service, display_name, template_id, app_id)
    if app is None and app_id:
        raise AppError("No application with app_id %s exists. Remove app_id to create one named '%s'." % (app_id, display_name))
    if app is None and other_case:
        raise AppError("No application is named exactly '%s', but %s differ only in letter case. Microsoft Entra compares "
                       "names ignoring case, so a new app would look like a duplicate: set display_name to the existing "
                       "app's exact name to adopt it, or rename it. Nothing was changed." % (display_name, _other_case_text(other_case)),
                       similar=[application_result(item) for item in other_case])
    if app is not None:
        if sp is None:
            sp = service.wait_for_service_principal(app) if wait else service.service_principal_of(app["appId"])
        if sp is None:
            raise AppError("Application %s (app_id %s) has no service principal (it may still be replicating: use wait)."
                           % (app["id"], app["appId"]), application=application_result(app))
        _check_account(app, sp, account_id)
        before = diff_view(app, sp, display_name, template_id)
        adopted = needs_marking(sp, account_id)
        if adopted:
            sp = dict(sp, tags=marked_tags(sp, account_id)) if check_mode else service.mark(sp, account_id)
        warnings = []
        if adopted and not before["managed_by_collection"]:
            warnings.append("Adopted application %s (app_id %s), which had no entrascim.cloudflare marker: its service "
                            "principal is now tagged as managed by this collection (state=absent may delete it)."
                            % (app["id"], app.get("appId")))
        return {"changed": adopted, "adopted": adopted, "application": application_result(app),
                "service_principal": service_principal_result(sp), "warnings": warnings,
                "diff": {"before": before, "after": diff_view(app, sp, display_name, template_id)}}
    before = diff_view(None, None, display_name, template_id)
    service.check_template(template_id)
    if check_mode:
        planned = {"id": None, "appId": None, "displayName": display_name, "applicationTemplateId": template_id}
        planned_sp = {"id": None, "appId": None, "displayName": display_name, "appRoles": [], "tags": marked_tags({}, account_id)}
        return {"changed": True, "adopted": False, "application": application_result(planned),
                "service_principal": service_principal_result(planned_sp),
                "diff": {"before": before, "after": diff_view(planned, planned_sp, display_name, template_id)}}
    app, sp = service.instantiate(template_id, display_name)
    warnings = []
    if service.unclear:
        warnings.append("instantiate answered 404 and %d applications named '%s' (template %s) appeared: %s. This run cannot tell "
                        "which one it created and went on with the oldest; when the next run reports duplicates, delete the newer "
                        "ones." % (len(service.unclear), display_name, template_id, _ids(sorted(service.unclear, key=_age))))
    if wait or service.retried_create:
        # A create that was sent more than once (a 503 after Graph had acted) may have made two apps: settle it now,
        # with or without wait, as concurrent runs are settled.
        sp = service.wait_until_consistent(app, sp, display_name, template_id) or sp
        if not service.unclear:
            created = app
            app, sp, deleted = service.settle_race(app, sp)
            if app is not created:
                warnings.append("Another application named '%s' (template %s) was created before this run's became visible, by a "
                                "concurrent run, by a run killed right after it created one, or by an earlier attempt of this "
                                "run's own request: adopted the oldest, %s; this run's, %s, %s." % (
                                    display_name, template_id, _ids([app]), _ids([created]),
                                    "was deleted" if any(d.get("id") == created.get("id") for d in deleted) else "was already gone"))
            extra = [d for d in deleted if d.get("id") != created.get("id")]
            if extra:
                warnings.append("The instantiate request was sent again after an answer that did not say whether Graph had "
                                "acted (HTTP 503), and Graph had: deleted the extra application(s) made meanwhile, %s; kept %s."
                                % (_ids(extra), _ids([app])))
    _check_account(app, sp, account_id)
    if needs_marking(sp, account_id):
        sp = service.mark(sp, account_id)
    return {"changed": True, "adopted": False, "application": application_result(app), "service_principal": service_principal_result(sp),
            "diff": {"before": before, "after": diff_view(app, sp, display_name, template_id)}, "warnings": warnings}


def ensure_absent(service, display_name, template_id, app_id=None, wait=True, check_mode=False, account_id=None,
                  delete_unmarked=False):
    """Delete the enterprise app if it exists and this collection created or adopted it (its marker, for this account
    when ``account_id`` is given); an unmarked app is left alone, with a warning, unless it is pinned by ``app_id`` with
    ``delete_unmarked``. Returns the module result."""
    app, sp, other_case = _select(service, display_name, template_id, app_id)
    warnings = []
    if other_case:
        warnings.append("Left alone: %s, whose name differs from '%s' only in letter case (names are matched exactly)."
                        % (_other_case_text(other_case), display_name))
    if app is None:
        view = diff_view(None, None, display_name, template_id)
        return {"changed": False, "application": {}, "service_principal": {}, "warnings": warnings,
                "diff": {"before": view, "after": view}}
    if sp is None:
        sp = service.service_principal_of(app["appId"])
    before = diff_view(app, sp, display_name, template_id)
    marker = marker_of(sp)
    refusal = None
    if not marker["managed"] and not (app_id and delete_unmarked):
        refusal = ("Left alone: application %s (app_id %s) named '%s' has no entrascim.cloudflare marker, so this collection "
                   "did not create or adopt it. To delete it anyway, pin it with app_id and set delete_unmarked=true."
                   % (app["id"], app.get("appId"), app.get("displayName")))
    elif marker["managed"] and account_id and marker["account_id"] and marker["account_id"] != account_id:
        refusal = ("Left alone: application %s (app_id %s) named '%s' is marked for Cloudflare account %s, not %s."
                   % (app["id"], app.get("appId"), app.get("displayName"), marker["account_id"], account_id))
    if refusal:
        return {"changed": False, "application": application_result(app), "service_principal": service_principal_result(sp),
                "left_alone": refusal, "warnings": warnings + [refusal], "diff": {"before": before, "after": before}}
    after = diff_view(None, None, app.get("displayName"), app.get("applicationTemplateId"))
    changed = True
    if not check_mode:
        changed = service.delete(app)
        if changed and wait:
            service.wait_until_gone(app)
    return {"changed": changed, "application": application_result(app), "service_principal": service_principal_result(sp),
            "warnings": warnings, "diff": {"before": before, "after": after}}


def ensure_app(service, state, display_name, template_id, app_id=None, wait=True, check_mode=False, account_id=None,
               delete_unmarked=False):
    """Entry point of the entra_app module."""
    if account_id is not None and not valid_account_id(account_id):
        raise InputError("account_id must be the 32 hexadecimal characters of a Cloudflare account ID, got %r" % account_id)
    if delete_unmarked and not (app_id and state == "absent"):
        raise InputError("delete_unmarked needs state=absent and app_id: it deletes one exact app, never one found by name")
    account_id = account_id.lower() if account_id else None
    if state == "absent":
        return ensure_absent(service, display_name, template_id, app_id=app_id, wait=wait, check_mode=check_mode,
                             account_id=account_id, delete_unmarked=delete_unmarked)
    return ensure_present(service, display_name, template_id, app_id=app_id, wait=wait, check_mode=check_mode,
                          account_id=account_id)

"""Admin API for tests (loopback only, no auth): seed, state dump, request log, faults, state mutations, cycles.

It is not part of any real service; its requests are not written to the request log.
"""

from .cloudflare import CloudflareAccount
from .errors import new_id
from .faults import FaultConfigError
from .graph import new_application, new_service_principal
from .state import Meta, SeedError
from .sync import pause
from .web import Response

LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


class AdminError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _body(request):
    try:
        return request.json()
    except ValueError as exc:
        raise AdminError(400, "body is not JSON: %s" % exc) from None


def handle(app, request):
    if request.client_address[0] not in LOOPBACK:
        return Response.json(403, {"error": "the admin API answers loopback clients only"})
    routes = {
        ("POST", "/_admin/seed"): seed,
        ("GET", "/_admin/state"): lambda a, r: (200, a.state.dump()),
        ("GET", "/_admin/requests"): lambda a, r: (200, a.requests_log()),
        ("POST", "/_admin/requests/reset"): reset_requests,
        ("GET", "/_admin/faults"): lambda a, r: (200, a.faults.snapshot()),
        ("POST", "/_admin/faults"): set_faults,
        ("POST", "/_admin/mutate"): mutate,
        ("POST", "/_admin/run_cycle"): run_cycle,
        ("GET", "/_admin/health"): lambda a, r: (200, {"status": "ok"}),
    }
    handler = routes.get((request.method, request.path.rstrip("/")))
    if handler is None:
        known = sorted("%s %s" % key for key in routes)
        return Response.json(404, {"error": "unknown admin endpoint %s %s" % (request.method, request.path), "endpoints": known})
    try:
        with app.state.lock:
            status, payload = handler(app, request)
    except AdminError as exc:
        return Response.json(exc.status, {"error": exc.message})
    return Response.json(status, payload)


def seed(app, request):
    body = _body(request)
    try:
        return 200, app.state.apply_seed(body, CloudflareAccount)
    except (SeedError, ValueError) as exc:
        raise AdminError(400, str(exc)) from None


def reset_requests(app, request):
    app.reset_log()
    return 200, {"reset": True}


def set_faults(app, request):
    body = _body(request)
    if isinstance(body, dict) and set(body) == {"profile"} and isinstance(body["profile"], str):
        body = body["profile"]
    try:
        return 200, app.faults.set(body)
    except FaultConfigError as exc:
        raise AdminError(400, str(exc)) from None


def run_cycle(app, request):
    body = _body(request) or {}
    if not isinstance(body, dict) or set(body) - {"sp_id"}:
        raise AdminError(400, "run_cycle takes an optional {\"sp_id\": ...}")
    sp_id = body.get("sp_id")
    if sp_id is not None and sp_id not in app.state.service_principals:
        raise AdminError(404, "unknown service principal %s" % sp_id)
    return 200, {"jobs": app.engine.run_cycle(sp_id)}


# ---------------------------------------------------------------------------------------------- mutations (drift)
def _need(body, *keys):
    for key in keys:
        if not isinstance(body.get(key), str) or not body[key]:
            raise AdminError(400, "%s needs a string %r" % (body.get("op"), key))
    return [body[key] for key in keys]


def _sp(app, sp_id):
    if sp_id not in app.state.service_principals:
        raise AdminError(404, "unknown service principal %s" % sp_id)
    return app.state.service_principals[sp_id]


def _jobs(app, body):
    sp_id = _need(body, "sp_id")[0]
    _sp(app, sp_id)
    jobs = app.state.jobs.get(sp_id, {})
    job_id = body.get("job_id")
    selected = [job for key, job in jobs.items() if job_id in (None, key)]
    if not selected:
        raise AdminError(404, "no synchronization job on %s%s" % (sp_id, " with id %s" % job_id if job_id else ""))
    return sp_id, selected


def _account(app, body):
    account_id = _need(body, "account_id")[0]
    account = app.state.cloudflare.get(account_id)
    if account is None:
        raise AdminError(404, "unknown cloudflare account %s" % account_id)
    return account


def op_pause_job(app, body):
    _sp_id, jobs = _jobs(app, body)
    for job in jobs:
        pause(job)
    return {"paused": [job.graph["id"] for job in jobs]}


def op_delete_job(app, body):
    sp_id, jobs = _jobs(app, body)
    for job in jobs:
        del app.state.jobs[sp_id][job.graph["id"]]
    return {"deleted": [job.graph["id"] for job in jobs]}


def op_quarantine_job(app, body):
    sp_id, jobs = _jobs(app, body)
    for job in jobs:
        app.engine.quarantine_job(sp_id, job, body.get("reason", "QuarantinedOnDemand"), body.get("code", "QuarantinedOnDemand"),
                                  body.get("message", "The job was quarantined by the emulator admin API."))
    return {"quarantined": [job.graph["id"] for job in jobs]}


def op_set_secret(app, body):
    sp_id, key = _need(body, "sp_id", "key")
    _sp(app, sp_id)
    value = body.get("value")
    if not isinstance(value, str):
        raise AdminError(400, "set_secret needs a string 'value' (\"\" deletes the key)")
    secrets = app.state.secrets.setdefault(sp_id, {})
    if value == "":
        secrets.pop(key, None)
    else:
        secrets[key] = value
    return {"sp_id": sp_id, "key": key, "deleted": value == ""}


def op_remove_assignment(app, body):
    sp_id, principal_id = _need(body, "sp_id", "principal_id")
    _sp(app, sp_id)
    items = app.state.assignments.get(sp_id, [])
    kept = [a for a in items if a["principalId"] != principal_id.lower()]
    removed = len(items) - len(kept)
    if not removed:
        raise AdminError(404, "no assignment of %s on %s" % (principal_id, sp_id))
    app.state.assignments[sp_id] = kept
    return {"removed": removed}


def op_revoke_cloudflare_token(app, body):
    account = _account(app, body)
    hits = account.revoke(token=body.get("token"), token_fingerprint=body.get("token_fingerprint"))
    if not hits:
        raise AdminError(404, "no such token on account %s" % account.account_id)
    return {"revoked": hits}


def op_add_cloudflare_token(app, body):
    account = _account(app, body)
    token = _need(body, "token")[0]
    account.add_token(token, body.get("scim_permission", True))
    return {"account_id": account.account_id, "added": True}


def op_create_duplicate_app(app, body):
    """An app + SP with the same display name as an existing one, created "out of band" (e.g. in the portal)."""
    display_name = _need(body, "display_name")[0]
    state = app.state
    template_id = body.get("template_id", "8adf8e6e-67b2-4cf2-a259-e3dc5476c621")
    application = new_application(new_id(), display_name, template_id, None, "emulator.onmicrosoft.com")
    sp = new_service_principal(application, state.tenant_id)
    state.applications[application["id"]] = application
    state.app_meta[application["id"]] = Meta(0.0, ())
    state.service_principals[sp["id"]] = sp
    state.sp_meta[sp["id"]] = Meta(0.0, ())
    state.sp_application[sp["id"]] = application["id"]
    return {"application_id": application["id"], "app_id": application["appId"], "sp_id": sp["id"]}


def op_delete_app(app, body):
    display_name = _need(body, "display_name")[0]
    doomed = [a["id"] for a in app.state.applications.values() if a["displayName"] == display_name]
    if not doomed:
        raise AdminError(404, "no application named %r" % display_name)
    for app_object_id in doomed:
        app.state.delete_application(app_object_id)
    return {"deleted": doomed}


def op_expire_tokens(app, body):
    """Make issued access tokens expire now (optionally only those of ``client_id``) to test 401 handling."""
    expired = 0
    for info in app.state.tokens.values():
        if body.get("client_id") in (None, info["client_id"]):
            info["expires"] = 0
            expired += 1
    return {"expired": expired}


def op_set_user(app, body):
    """Change directory users (e.g. mail or accountEnabled) to test UPN/mail drift."""
    key = _need(body, "user")[0]
    user = app.state.user_by_key(key)
    if user is None:
        raise AdminError(404, "unknown user %s" % key)
    changes = body.get("changes")
    allowed = {"mail", "displayName", "givenName", "surname", "accountEnabled", "userPrincipalName", "mailNickname"}
    if not isinstance(changes, dict) or set(changes) - allowed:
        raise AdminError(400, "set_user needs 'changes' with keys among %s" % ", ".join(sorted(allowed)))
    user.update(changes)
    return {"user": user["id"]}


OPERATIONS = {
    "pause_job": op_pause_job, "delete_job": op_delete_job, "quarantine_job": op_quarantine_job, "set_secret": op_set_secret,
    "remove_assignment": op_remove_assignment, "revoke_cloudflare_token": op_revoke_cloudflare_token,
    "add_cloudflare_token": op_add_cloudflare_token, "create_duplicate_app": op_create_duplicate_app, "delete_app": op_delete_app,
    "expire_tokens": op_expire_tokens, "set_user": op_set_user,
}


def mutate(app, request):
    body = _body(request)
    if not isinstance(body, dict) or body.get("op") not in OPERATIONS:
        raise AdminError(400, "mutate needs {\"op\": one of %s, ...}" % ", ".join(sorted(OPERATIONS)))
    return 200, OPERATIONS[body["op"]](app, body)

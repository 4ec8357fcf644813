"""Synchronization API (jobs, secrets, templates) and the provisioning engine that pushes to the Cloudflare side.

Sources (``api/`` and ``resources/`` are under ``api-reference/v1.0/`` of microsoftgraph/microsoft-graph-docs-contrib; the
full list is in docs/emulator.md, "Sources"): templates and jobs api/synchronization-synchronization-list-templates.md,
-list-jobs.md, -post-jobs.md, api/synchronization-synchronizationjob-get.md and -delete.md; job, status, schedule and
quarantine shapes resources/synchronization-synchronizationjob.md, -synchronizationstatus.md, -synchronizationschedule.md,
-synchronizationquarantine.md; secrets api/synchronization-serviceprincipal-put-synchronization.md; validateCredentials
api/synchronization-synchronizationjob-validatecredentials.md; start/pause/restart api/synchronization-synchronizationjob-start.md,
-pause.md, -restart.md, resources/synchronization-synchronizationjobrestartcriteria.md; scope (direct members of assigned groups)
and cycles MicrosoftDocs/entra-docs docs/identity/app-provisioning/how-provisioning-works.md; provisioning log entries
resources/provisioningobjectsummary.md; type, property and enum names the CSDL, microsoftgraph/msgraph-metadata
schemas/v1.0-Prod.csdl; what Cloudflare accepts cloudflare/cloudflare-docs
src/content/docs/fundamentals/account/account-security/scim-setup/ (index.mdx, entra.mdx). Handlers run with the state lock held.
"""

import datetime
import hashlib
import json
import time
import urllib.parse
import uuid

from . import permissions as perms
from .cloudflare import GROUP_SCHEMA, USER_SCHEMA
from .errors import GraphError, bad_request, iso, new_id, not_found, sync_unknown_error, utc_now
from .graph import Route, require_object, reject_unknown, resolve_sp
from .odata import Collection, list_response
from .state import SENSITIVE_SECRET_KEYS, Job
from .web import Request

NEVER = "P10675199DT2H48M5.4775807S"  # new job's interval (synchronization-synchronization-post-jobs.md): .NET TimeSpan.MaxValue
# Cycles "approximately every 40 minutes" (MicrosoftDocs/entra-docs docs/identity/saas-apps/ provisioning tutorials; the
# cloudflare-docs entra.mdx sample job shows PT40M); the emulator itself cycles every --cycle-interval seconds.
ACTIVE_INTERVAL = "PT40M"
ZERO_TIME = "0001-01-01T00:00:00Z"
SCIM_TEMPLATE = "scim"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
# CSDL enum synchronizationSecret (microsoftgraph/msgraph-metadata schemas/v1.0-Prod.csdl).
SECRET_KEYS = frozenset((
    "None", "UserName", "Password", "SecretToken", "AppKey", "BaseAddress", "ClientIdentifier", "ClientSecret", "SingleSignOnType",
    "Sandbox", "Url", "Domain", "ConsumerKey", "ConsumerSecret", "TokenKey", "TokenExpiration", "Oauth2AccessToken",
    "Oauth2AccessTokenCreationTime", "Oauth2RefreshToken", "SyncAll", "InstanceName", "Oauth2ClientId", "Oauth2ClientSecret",
    "CompanyId", "UpdateKeyOnSoftDelete", "SynchronizationSchedule", "SystemOfRecord", "SandboxName", "EnforceDomain",
    "SyncNotificationSettings", "SkipOutOfScopeDeletions", "Oauth2AuthorizationCode", "Oauth2RedirectUri",
    "ApplicationTemplateIdentifier", "Oauth2TokenExchangeUri", "Oauth2AuthorizationUri", "AuthenticationType", "Server",
    "PerformInboundEntitlementGrants", "HardDeletesEnabled", "SyncAgentCompatibilityKey", "SyncAgentADContainer", "ValidateDomain",
    "TestReferences", "ConnectionString",
))
# CSDL enum synchronizationJobRestartScope (IsFlags; meanings in resources/synchronization-synchronizationjobrestartcriteria.md).
RESET_SCOPE_FLAGS = ("None", "ConnectorDataStore", "Escrows", "Watermark", "QuarantineState", "Full", "ForceDeletes")
# An empty resetScope = the portal's "Restart provisioning" (resources/synchronization-synchronizationjobrestartcriteria.md).
DEFAULT_RESET_SCOPE = ("QuarantineState", "Watermark", "Escrows")
CREDENTIAL_ERROR = "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable"
CONNECTION_ERROR = "SystemForCrossDomainIdentityManagementServiceUnavailable"
MAX_LOG_ENTRIES = 5000
JOBS = Collection("synchronizationJob", ("id", "templateId", "schedule", "status", "synchronizationJobSettings"), {}, countable=False)


# ---------------------------------------------------------------------------------------------- helpers
def _context(ctx, sp_id, suffix):
    return "%s/v1.0/$metadata#servicePrincipals('%s')/synchronization/%s" % (ctx.base_url, sp_id, suffix)


def sync_gate(ctx, sp):
    """Right after instantiate the provisioning service does not know the SP yet: 403/409/400 UnknownError (observed, not
    documented; terraform-provider-azuread retries synchronization calls on 403/409)."""
    visible_at = ctx.state.sync_visible_at.get(sp["id"], 0.0)
    if time.monotonic() >= visible_at:
        return
    kind = ctx.faults.choice(("403", "409", "400"))
    if kind == "403":
        raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    if kind == "409":
        raise GraphError(409, "Conflict", "The service principal is being updated by another operation. Please retry later.")
    raise sync_unknown_error("ServicePrincipalNotReady", "An error occurred while processing the service principal '%s'." % sp["id"])


def _sp_for_sync(ctx, match):
    sp = resolve_sp(ctx, match["sp"], owned=True)
    sync_gate(ctx, sp)
    return sp


def _job(ctx, sp, job_id):
    job = ctx.state.jobs.get(sp["id"], {}).get(job_id)
    if job is None or not job.meta.visible():
        raise not_found(job_id)
    return job


def _validate_pairs(items, name):
    """A list of synchronizationSecretKeyStringValuePair: ``[{"key": <enum>, "value": <string>}]``."""
    if not isinstance(items, list):
        raise bad_request("Invalid value specified for property '%s': a collection is expected." % name)
    pairs = []
    for item in items:
        if not isinstance(item, dict) or set(item) - {"key", "value"} or "key" not in item:
            raise bad_request("Invalid value specified for property '%s': items are {\"key\", \"value\"} objects." % name)
        if item["key"] not in SECRET_KEYS:
            raise bad_request("The value '%s' is not a valid synchronizationSecret." % item["key"])
        value = item.get("value")
        if value is not None and not isinstance(value, str):
            raise bad_request("Invalid value specified for the secret '%s': the value is a string." % item["key"])
        pairs.append((item["key"], value if value is not None else ""))
    return pairs


def _blank_status():
    return {"code": "NotConfigured", "countSuccessiveCompleteFailures": 0, "escrowsPruned": False, "lastExecution": None,
            "lastSuccessfulExecution": None, "lastSuccessfulExecutionWithExports": None, "progress": [], "quarantine": None,
            "steadyStateFirstAchievedTime": ZERO_TIME, "steadyStateLastAchievedTime": ZERO_TIME, "synchronizedEntryCountByType": [],
            "troubleshootingUrl": None}


# ---------------------------------------------------------------------------------------------- templates and jobs
def list_templates(ctx, match):
    # The non-gallery SCIM app has the "scim" template (cloudflare-docs entra.mdx: the SCIM templateId "is an Entra provided template").
    sp = _sp_for_sync(ctx, match)
    template = {"id": SCIM_TEMPLATE, "applicationId": sp["applicationTemplateId"], "default": True, "description": "SCIM 2.0 provisioning",
                "discoverable": True, "factoryTag": SCIM_TEMPLATE, "metadata": []}
    return 200, {"@odata.context": _context(ctx, sp["id"], "templates"), "value": [template]}


def list_jobs(ctx, match):
    sp = _sp_for_sync(ctx, match)
    items = [job.graph for job in ctx.state.jobs.get(sp["id"], {}).values() if job.meta.visible()]
    return 200, list_response(items, ctx.query(), JOBS, ctx.graph_root, "/servicePrincipals/%s/synchronization/jobs" % sp["id"],
                              _context(ctx, sp["id"], "jobs"), ctx.page_size)


def create_job(ctx, match):
    """api/synchronization-synchronization-post-jobs.md: {"templateId": "scim"} -> 201, Disabled / NotConfigured / never interval.

    A second job with the same templateId is created as a duplicate (the docs are silent; not verified on a tenant; a
    Microsoft sample script warns about "multiple synchronization jobs" on one SP, so duplicates can exist)."""
    sp = _sp_for_sync(ctx, match)
    body = require_object(ctx)
    reject_unknown(body, ("templateId",))
    if body.get("templateId") != SCIM_TEMPLATE:
        raise bad_request("The template '%s' does not exist for this application; available templates: %s." % (body.get("templateId"), SCIM_TEMPLATE))
    job_id = "%s.%s.%s" % (SCIM_TEMPLATE, uuid.uuid4().hex, sp["appId"])
    graph = {"id": job_id, "templateId": SCIM_TEMPLATE, "schedule": {"expiration": None, "interval": NEVER, "state": "Disabled"},
             "status": _blank_status(),
             "synchronizationJobSettings": [{"name": "AzureIngestionAttributeOptimization", "value": "False"},
                                            {"name": "LookaheadQueryEnabled", "value": "False"},
                                            {"name": "QuarantineTooManyDeletesThreshold", "value": "500"}]}
    ctx.state.jobs.setdefault(sp["id"], {})[job_id] = Job(sp["id"], graph, ctx.faults.replication_lag_seconds())
    return 201, dict({"@odata.context": _context(ctx, sp["id"], "jobs/$entity")}, **graph)


def get_job(ctx, match):
    sp = _sp_for_sync(ctx, match)
    job = _job(ctx, sp, match["job"])
    return 200, dict({"@odata.context": _context(ctx, sp["id"], "jobs/$entity")}, **job.graph)


def delete_job(ctx, match):
    # api/synchronization-synchronizationjob-delete.md: 204; the job's state is gone, provisioned accounts stay in the target.
    sp = _sp_for_sync(ctx, match)
    _job(ctx, sp, match["job"])
    del ctx.state.jobs[sp["id"]][match["job"]]
    return 204, None


def start_job(ctx, match):
    """api/synchronization-synchronizationjob-start.md: starts a disabled job, resumes a paused one, clears quarantine. 204, no body."""
    sp = _sp_for_sync(ctx, match)
    job = _job(ctx, sp, match["job"])
    if ctx.json_body() not in (None, {}):
        raise bad_request("The action 'start' does not take parameters.")
    if job.graph["schedule"]["state"] == "Active" and job.graph["status"]["code"] != "Quarantine":
        # Microsoft warns against calling start on a running job; count it so tests can see it happen.
        job.starts_while_active += 1
    activate(job)
    return 204, None


def activate(job):
    graph = job.graph
    graph["schedule"]["state"] = "Active"
    graph["schedule"]["interval"] = ACTIVE_INTERVAL
    status = graph["status"]
    status["quarantine"] = None
    status["code"] = "Active" if status["lastExecution"] else "NotRun"
    job.next_attempt = 0.0


def pause_job(ctx, match):
    sp = _sp_for_sync(ctx, match)
    job = _job(ctx, sp, match["job"])
    if ctx.json_body() not in (None, {}):
        raise bad_request("The action 'pause' does not take parameters.")
    pause(job)
    return 204, None


def pause(job):
    job.graph["schedule"]["state"] = "Paused"
    job.graph["status"]["code"] = "Paused"


def restart_job(ctx, match):
    """api/synchronization-synchronizationjob-restart.md: {"criteria": {"resetScope": "<comma-separated flags>"}}; empty =
    QuarantineState, Watermark, Escrows (resources/synchronization-synchronizationjobrestartcriteria.md)."""
    sp = _sp_for_sync(ctx, match)
    job = _job(ctx, sp, match["job"])
    body = require_object(ctx, allow_empty=True)
    reject_unknown(body, ("criteria",))
    criteria = body.get("criteria") or {}
    if not isinstance(criteria, dict):
        raise bad_request("Invalid value specified for parameter 'criteria'.")
    reject_unknown(criteria, ("resetScope",))
    raw = criteria.get("resetScope")
    if raw is not None and not isinstance(raw, str):
        raise bad_request("Invalid value specified for property 'resetScope'.")
    flags = [flag.strip() for flag in (raw or "").split(",") if flag.strip()]
    for flag in flags:
        if flag not in RESET_SCOPE_FLAGS:
            raise bad_request("The value '%s' is not a valid synchronizationJobRestartScope; valid flags: %s." % (flag, ", ".join(RESET_SCOPE_FLAGS)))
    scope = set(flags or DEFAULT_RESET_SCOPE)
    if "Full" in scope:
        scope |= {"ConnectorDataStore", "Escrows", "Watermark", "QuarantineState"}
    if "ConnectorDataStore" in scope:
        job.connector.clear()
    if "Escrows" in scope:
        job.escrows.clear()
    if "Watermark" in scope:
        job.watermark = False
    if "QuarantineState" in scope:
        job.graph["status"]["quarantine"] = None
        job.complete_failures = 0
    job.last_reset_scope = sorted(scope)
    activate(job)
    return 204, None


# ---------------------------------------------------------------------------------------------- validateCredentials
def _credentials(ctx, sp, body):
    reject_unknown(body, ("useSavedCredentials", "credentials", "applicationIdentifier", "templateId"))
    saved = body.get("useSavedCredentials", False)
    if not isinstance(saved, bool):
        raise bad_request("Invalid value specified for parameter 'useSavedCredentials'.")
    given = dict(_validate_pairs(body.get("credentials", []) or [], "credentials"))
    if saved:
        return dict(ctx.state.secrets.get(sp["id"], {}))
    return given


def _validate(ctx, credentials):
    ok, detail = ctx.engine.probe(credentials.get("BaseAddress"), credentials.get("SecretToken"))
    if not ok:
        # The portal reports HTTP 400 CredentialValidationUnavailable with the failed target request (observed, not documented).
        raise GraphError(400, "CredentialValidationUnavailable",
                         "Error validating credentials. %s Please confirm the Tenant URL and Secret Token are correct." % detail)
    return 204, None


def validate_job_credentials(ctx, match):
    """api/synchronization-synchronizationjob-validatecredentials.md: POST .../jobs/{id}/validateCredentials -> 204, or 400 when
    the target rejects them (the 400 is observed). No state change."""
    sp = _sp_for_sync(ctx, match)
    _job(ctx, sp, match["job"])
    return _validate(ctx, _credentials(ctx, sp, require_object(ctx)))


def validate_credentials_without_job(ctx, match):
    # Collection-bound variant: needs applicationIdentifier (appId) and templateId (in the CSDL, not on the reference page).
    sp = _sp_for_sync(ctx, match)
    body = require_object(ctx)
    if body.get("applicationIdentifier") != sp["appId"] or body.get("templateId") != SCIM_TEMPLATE:
        raise bad_request("applicationIdentifier must be the application's appId and templateId a template of the application.")
    return _validate(ctx, _credentials(ctx, sp, body))


# ---------------------------------------------------------------------------------------------- secrets
def put_secrets(ctx, match):
    """api/synchronization-serviceprincipal-put-synchronization.md: 204. Observed, not documented: per-key upsert; "" deletes
    a key (terraform-provider-azuread deletes secrets that way); SyncNotificationSettings "" -> 400 UnknownError wrapping
    InvalidNotificationSettings (microsoftgraph/msgraph-metadata issue #347). Works without a job (the secrets live on the
    SP's synchronization; not verified on a tenant)."""
    sp = _sp_for_sync(ctx, match)
    body = require_object(ctx)
    reject_unknown(body, ("value",))
    if "value" not in body:
        raise bad_request("The request body must contain the property 'value'.")
    pairs = _validate_pairs(body["value"], "value")
    for key, value in pairs:
        if key == "SyncNotificationSettings":
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                raise sync_unknown_error("InvalidNotificationSettings", "The notification settings '%s' are not valid." % value)
    secrets = ctx.state.secrets.setdefault(sp["id"], {})
    for key, value in pairs:
        if value == "":
            secrets.pop(key, None)
        else:
            secrets[key] = value
    return 204, None


def get_secrets(ctx, match):
    """Not in the v1.0 reference but works (observed: MicrosoftDocs/azure-docs issue #55184, microsoftgraph/msgraph-metadata
    issue #347): sensitive values read back as "*" (terraform-provider-azuread synchronization.go keeps its own value then)."""
    sp = _sp_for_sync(ctx, match)
    values = [{"key": key, "value": "*" if key in SENSITIVE_SECRET_KEYS else value}
              for key, value in ctx.state.secrets.get(sp["id"], {}).items()]
    return 200, {"@odata.context": _context(ctx, sp["id"], "secrets"), "value": values}


_JOB = "/servicePrincipals/{sp}/synchronization/jobs/{job}"
ROUTES = [
    Route("GET", "/servicePrincipals/{sp}/synchronization/templates", "sync.templates.list", perms.SYNC_READ, list_templates),
    Route("GET", "/servicePrincipals/{sp}/synchronization/jobs", "sync.jobs.list", perms.SYNC_READ, list_jobs),
    Route("POST", "/servicePrincipals/{sp}/synchronization/jobs", "sync.jobs.create", perms.SYNC_WRITE, create_job, True),
    Route("POST", "/servicePrincipals/{sp}/synchronization/jobs/validateCredentials", "sync.jobs.validateCredentials", perms.SYNC_WRITE,
          validate_credentials_without_job),
    Route("POST", "/servicePrincipals/{sp}/synchronization/jobs/microsoft.graph.validateCredentials", "sync.jobs.validateCredentials",
          perms.SYNC_WRITE, validate_credentials_without_job),
    Route("GET", _JOB, "sync.jobs.get", perms.SYNC_READ, get_job),
    Route("DELETE", _JOB, "sync.jobs.delete", perms.SYNC_WRITE, delete_job, True),
    Route("PUT", "/servicePrincipals/{sp}/synchronization/secrets", "sync.secrets.put", perms.SYNC_WRITE, put_secrets, True),
    Route("GET", "/servicePrincipals/{sp}/synchronization/secrets", "sync.secrets.get", perms.SYNC_READ, get_secrets),
]
for _name, _handler, _write in (("start", start_job, True), ("pause", pause_job, True), ("restart", restart_job, True),
                                ("validateCredentials", validate_job_credentials, False)):
    for _prefix in ("", "microsoft.graph."):
        ROUTES.append(Route("POST", _JOB + "/" + _prefix + _name, "sync.jobs." + _name, perms.SYNC_WRITE, _handler, _write))


# ---------------------------------------------------------------------------------------------- provisioning engine
def _digest(payload):
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


class ScimFailure(Exception):
    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Cycle:
    """Counters and log entries of one provisioning cycle of one job."""

    def __init__(self, engine, sp, job):
        self.engine = engine
        self.sp = sp
        self.job = job
        self.cycle_id = new_id()
        self.began = utc_now()
        self.entitled = 0
        self.exported = 0
        self.escrowed = 0
        self.imported = 0

    def log(self, kind, source, target_id, target_name, action, error=None, modified=None):
        """Append a provisioningObjectSummary (resources/provisioningobjectsummary.md; property names from the CSDL)."""
        state = self.engine.state
        started = time.monotonic()
        upn = source.get("userPrincipalName") if kind == "User" else None
        status = "failure" if error else "success"
        steps = [
            {"name": "EntryImport%s" % ("Add" if action == "create" else "Update"), "provisioningStepType": "import", "status": "success",
             "description": "Received %s '%s' from Microsoft Entra ID" % (kind.lower(), source["displayName"]), "details": {}},
            {"name": "EntrySynchronizationScoping", "provisioningStepType": "scoping", "status": "success",
             "description": "Determine if %s is in scope by evaluating against each scoping filter" % source["displayName"],
             "details": {"Active in the source system": "True", "Assigned to the application": str(action != "disable")}},
            {"name": "EntryExportMatching", "provisioningStepType": "matching", "status": "success",
             "description": "Matching %s in the target by %s" % (source["displayName"], "userName" if kind == "User" else "displayName"),
             "details": {}},
            {"name": "EntryExport%s" % action.capitalize(), "provisioningStepType": "export", "status": status,
             "description": (error["reason"] if error else "%s '%s' was %s in the target" % (kind, source["displayName"], {
                 "create": "created", "update": "updated", "disable": "disabled", "delete": "deleted"}.get(action, "processed"))),
             "details": {}},
        ]
        entry = {
            "id": new_id(), "activityDateTime": iso(), "tenantId": state.tenant_id, "jobId": self.job.graph["id"], "cycleId": self.cycle_id,
            "changeId": new_id(), "provisioningAction": action, "durationInMilliseconds": max(1, int((time.monotonic() - started) * 1000)),
            "provisioningStatusInfo": {"status": status, "errorInformation": dict(error, errorCategory="failure") if error else None},
            "provisioningSteps": steps, "modifiedProperties": modified or [],
            "servicePrincipal": {"id": self.sp["id"], "displayName": self.sp["displayName"]},
            "sourceSystem": {"id": state.tenant_id, "displayName": "Microsoft Entra ID", "details": {}},
            "targetSystem": {"id": self.sp["appId"], "displayName": self.sp["displayName"],
                             "details": {"ApplicationId": self.sp["appId"], "ServicePrincipalId": self.sp["id"],
                                         "ServicePrincipalDisplayName": self.sp["displayName"]}},
            "sourceIdentity": {"id": source["id"], "displayName": source["displayName"], "identityType": kind,
                               "details": {"UserPrincipalName": upn} if upn else {}},
            "targetIdentity": {"id": target_id or "", "displayName": target_name,
                               "identityType": USER_SCHEMA if kind == "User" else GROUP_SCHEMA, "details": {}},
            "initiatedBy": {"id": "", "displayName": "Microsoft.Azure.SyncFabric", "initiatorType": "system"},
        }
        state.provisioning_logs.append(entry)
        if len(state.provisioning_logs) > MAX_LOG_ENTRIES:
            del state.provisioning_logs[:len(state.provisioning_logs) - MAX_LOG_ENTRIES]

    def execution(self, state_name, error=None):
        """synchronizationTaskExecution (CSDL) of this cycle."""
        return {"activityIdentifier": self.cycle_id, "countEntitled": self.entitled, "countEntitledForProvisioning": self.entitled,
                "countEscrowed": self.escrowed, "countEscrowedRaw": self.escrowed, "countExported": self.exported,
                "countExports": self.exported, "countImported": self.imported, "countImportedDeltas": self.imported,
                "countImportedReferenceDeltas": 0, "error": error, "state": state_name, "timeBegan": iso(self.began), "timeEnded": iso()}


def _scim_error(status, body):
    if isinstance(body, dict):
        if body.get("detail"):
            return str(body["detail"])
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return "%s: %s" % (errors[0].get("code"), errors[0].get("message"))
    return "HTTP %d" % status


def _error_code(status):
    # Target-side SCIM failure codes in provisioning logs: <App>EntryConflict for a 409 as in Example 2 of
    # api/provisioningobjectsummary-list.md; the SystemForCrossDomainIdentityManagement* names are observed, not documented.
    if status == 409:
        return "SystemForCrossDomainIdentityManagementEntryConflict"
    if status == 404:
        return "SystemForCrossDomainIdentityManagementResourceNotFound"
    if status >= 500:
        return "SystemForCrossDomainIdentityManagementServiceUnavailable"
    return "SystemForCrossDomainIdentityManagementBadRequest"


class CredentialsRejected(Exception):
    pass


class ProvisioningEngine:
    """Runs cycles for started jobs: Entra users/groups in scope -> the Cloudflare account named by the SAVED BaseAddress."""

    def __init__(self, state, scim, cycle_interval):
        self.state = state
        self.scim = scim
        self.cycle_interval = cycle_interval

    # -------------------------------------------------------------- target access
    def _call(self, target, token, method, path, body=None, query=""):
        account_path, _compliant = target
        request = Request(method, account_path + path, query,
                          {"Authorization": "Bearer %s" % token, "Content-Type": "application/scim+json", "User-Agent": "Microsoft.Azure.SyncFabric"},
                          json.dumps(body).encode("utf-8") if body is not None else b"")
        response = self.scim.handle(request)
        payload = response.json_body() if response.body else None
        if response.status in (401, 403):
            raise CredentialsRejected("The SCIM endpoint answered HTTP %d (%s)." % (response.status, _scim_error(response.status, payload)))
        if response.status >= 400:
            raise ScimFailure(response.status, _scim_error(response.status, payload))
        return payload

    def probe(self, base_address, token):
        """What "Test Connection" does: query the target for a user that does not exist with the bearer token."""
        target = self.scim.resolve_base_address(base_address)
        if target is None:
            return False, "The request to the target system failed: could not connect to '%s'." % (base_address or "")
        if not token:
            return False, "The secret token is missing."
        try:
            self._call(target, token, "GET", "/Users", query="filter=userName+eq+%22" + uuid.uuid4().hex + "%40example.invalid%22")
        except CredentialsRejected as exc:
            return False, "You appear to have entered invalid credentials. %s" % exc
        except ScimFailure as exc:
            return False, "The target system answered HTTP %d: %s" % (exc.status, exc.detail)
        return True, ""

    # -------------------------------------------------------------- scope
    def scope(self, sp_id):
        """Users and groups in scope: SyncAll=true -> everyone; else assigned users + direct user members of assigned groups."""
        state = self.state
        secrets = state.secrets.get(sp_id, {})
        users, groups = {}, {}
        if secrets.get("SyncAll", "false").lower() == "true":
            users = dict(state.users)
            groups = dict(state.groups)
        else:
            for assignment in state.assignments.get(sp_id, []):
                kind, principal = state.principal(assignment["principalId"])
                if kind == "User":
                    users[principal["id"]] = principal
                elif kind == "Group":
                    groups[principal["id"]] = principal
                    for member_id in state.group_members.get(principal["id"], []):
                        if member_id in state.users:  # nested groups are not expanded (how-provisioning-works.md)
                            users[member_id] = state.users[member_id]
        return users, groups

    @staticmethod
    def desired_user(user):
        """Entra's default SCIM attribute mappings for users (userName = UPN, emails[work] = mail, name, active)."""
        payload = {"schemas": [USER_SCHEMA], "externalId": user.get("mailNickname") or user["userPrincipalName"].split("@")[0],
                   "userName": user["userPrincipalName"], "active": bool(user.get("accountEnabled", True)),
                   "displayName": user.get("displayName"),
                   "name": {"givenName": user.get("givenName"), "familyName": user.get("surname")}}
        if user.get("mail"):
            payload["emails"] = [{"type": "work", "primary": True, "value": user["mail"]}]
        payload["name"] = {k: v for k, v in payload["name"].items() if v}
        return payload

    @staticmethod
    def _patch(compliant, operations):
        """Entra's PATCH dialect: capitalised ops and string booleans, unless the BaseAddress carries ?aadOptscim062020."""
        ops = []
        for op, path, value in operations:
            if not compliant:
                op = op.capitalize()
                if isinstance(value, bool):
                    value = "True" if value else "False"
            item = {"op": op, "path": path}
            if value is not None:
                item["value"] = value
            ops.append(item)
        return {"schemas": [PATCH_SCHEMA], "Operations": ops}

    # -------------------------------------------------------------- cycle
    def run_job(self, sp_id, job):
        """One cycle of one started job; returns a summary dict."""
        state = self.state
        sp = state.service_principals[sp_id]
        cycle = Cycle(self, sp, job)
        secrets = state.secrets.get(sp_id, {})
        target = self.scim.resolve_base_address(secrets.get("BaseAddress"))
        token = secrets.get("SecretToken")
        users, groups = self.scope(sp_id)
        cycle.entitled = len(users) + len(groups)
        cycle.imported = cycle.entitled
        if target is None or not token:
            message = ("The provisioning service could not connect to '%s'." % secrets.get("BaseAddress", "")
                       if target is None else "No SecretToken is saved for the application.")
            return self._complete_failure(cycle, CONNECTION_ERROR, message, users, groups)
        try:
            self._call(target, token, "GET", "/Users", query="count=1")
            self._sync_users(cycle, target, token, users)
            self._sync_groups(cycle, target, token, groups, sp_id)
        except CredentialsRejected as exc:
            return self._quarantine(cycle, "EncounteredQuarantineException", CREDENTIAL_ERROR,
                                    "Error validating credentials. %s Verify the Secret Token of the application." % exc)
        return self._finish(cycle)

    def _sync_users(self, cycle, target, token, users):
        job = cycle.job
        compliant = target[1]
        for user_id, user in users.items():
            desired = self.desired_user(user)
            entry = job.connector.get(user_id)
            digest = _digest(desired)
            if entry is not None and entry["hash"] == digest and job.watermark and user_id not in job.escrows:
                continue
            action = "create"
            try:
                if entry is None:
                    found = self._call(target, token, "GET", "/Users", query="filter=userName+eq+%22" + _q(user["userPrincipalName"]) + "%22")
                    if found and found.get("Resources"):
                        entry = {"type": "User", "target_id": found["Resources"][0]["id"], "hash": "", "name": user["userPrincipalName"]}
                if entry is None:
                    created = self._call(target, token, "POST", "/Users", desired)
                    entry = {"type": "User", "target_id": created["id"], "name": user["userPrincipalName"]}
                else:
                    action = "update"
                    operations = [("replace", "userName", desired["userName"]), ("replace", "active", desired["active"]),
                                  ("replace", "displayName", desired["displayName"]), ("replace", "externalId", desired["externalId"])]
                    for sub in ("givenName", "familyName"):
                        if desired["name"].get(sub):
                            operations.append(("replace", "name." + sub, desired["name"][sub]))
                    if desired.get("emails"):
                        operations.append(("replace", 'emails[type eq "work"].value', desired["emails"][0]["value"]))
                    self._call(target, token, "PATCH", "/Users/" + entry["target_id"], self._patch(compliant, operations))
                entry["hash"] = digest
                entry["active"] = desired["active"]
                job.connector[user_id] = entry
                job.escrows.pop(user_id, None)
                cycle.exported += 1
                cycle.log("User", user, entry["target_id"], user["userPrincipalName"], action,
                          modified=[{"displayName": "userName", "oldValue": None, "newValue": desired["userName"]},
                                    {"displayName": "active", "oldValue": None, "newValue": str(desired["active"])}])
            except ScimFailure as exc:
                self._escrow(cycle, "User", user, user_id, user["userPrincipalName"], action, exc)
        # Out of scope (assignment removed): disable in the target, active=false (how-provisioning-works.md; cloudflare-docs
        # scim-setup/index.mdx: account membership removal needs active: false).
        for user_id, entry in list(job.connector.items()):
            if entry["type"] != "User" or user_id in users or not entry.get("active"):
                continue
            source = self.state.users.get(user_id) or {"id": user_id, "displayName": entry["name"], "userPrincipalName": entry["name"]}
            try:
                self._call(target, token, "PATCH", "/Users/" + entry["target_id"], self._patch(compliant, [("replace", "active", False)]))
                entry["active"] = False
                entry["hash"] = ""
                cycle.exported += 1
                cycle.log("User", source, entry["target_id"], entry["name"], "disable",
                          modified=[{"displayName": "active", "oldValue": "True", "newValue": "False"}])
            except ScimFailure as exc:
                self._escrow(cycle, "User", source, user_id, entry["name"], "disable", exc)

    def _sync_groups(self, cycle, target, token, groups, sp_id):
        job = cycle.job
        compliant = target[1]
        for group_id, group in groups.items():
            members = sorted(job.connector[m]["target_id"] for m in self.state.group_members.get(group_id, [])
                             if m in job.connector and job.connector[m]["type"] == "User" and job.connector[m].get("active"))
            desired = {"displayName": group["displayName"], "externalId": group["id"], "members": members}
            digest = _digest(desired)
            entry = job.connector.get(group_id)
            if entry is not None and entry["hash"] == digest and job.watermark and group_id not in job.escrows:
                continue
            action = "create"
            try:
                if entry is None:
                    found = self._call(target, token, "GET", "/Groups",
                                       query="filter=displayName+eq+%22" + _q(group["displayName"]) + "%22&excludedAttributes=members")
                    if found and found.get("Resources"):
                        entry = {"type": "Group", "target_id": found["Resources"][0]["id"], "members": None, "name": group["displayName"]}
                if entry is None:
                    created = self._call(target, token, "POST", "/Groups",
                                         {"schemas": [GROUP_SCHEMA], "displayName": group["displayName"], "externalId": group["id"],
                                          "members": []})
                    entry = {"type": "Group", "target_id": created["id"], "members": [], "name": group["displayName"]}
                else:
                    action = "update"
                current = entry.get("members")
                if current is None:
                    fetched = self._call(target, token, "GET", "/Groups/" + entry["target_id"])
                    current = sorted(m["value"] for m in (fetched or {}).get("members") or [])
                operations = []
                if entry["name"] != group["displayName"]:
                    operations.append(("replace", "displayName", group["displayName"]))
                added = [m for m in members if m not in current]
                removed = [m for m in current if m not in members]
                if added:
                    operations.append(("add", "members", [{"value": m} for m in added]))
                if removed:
                    operations.append(("remove", "members", [{"value": m} for m in removed]))
                if operations:
                    self._call(target, token, "PATCH", "/Groups/" + entry["target_id"], self._patch(compliant, operations))
                entry.update(members=members, hash=digest, name=group["displayName"])
                job.connector[group_id] = entry
                job.escrows.pop(group_id, None)
                cycle.exported += 1
                cycle.log("Group", group, entry["target_id"], group["displayName"], action,
                          modified=[{"displayName": "members", "oldValue": None, "newValue": str(len(members))}])
            except ScimFailure as exc:
                self._escrow(cycle, "Group", group, group_id, group["displayName"], action, exc)
        skip_deletes = self.state.secrets.get(sp_id, {}).get("SkipOutOfScopeDeletions", "false").lower() == "true"
        for group_id, entry in list(job.connector.items()):
            if entry["type"] != "Group" or group_id in groups or skip_deletes:
                continue
            source = self.state.groups.get(group_id) or {"id": group_id, "displayName": entry["name"]}
            try:
                self._call(target, token, "DELETE", "/Groups/" + entry["target_id"])
            except ScimFailure as exc:
                if exc.status != 404:
                    self._escrow(cycle, "Group", source, group_id, entry["name"], "delete", exc)
                    continue
            del job.connector[group_id]
            cycle.exported += 1
            cycle.log("Group", source, entry["target_id"], entry["name"], "delete")

    # -------------------------------------------------------------- outcomes
    def _escrow(self, cycle, kind, source, source_id, name, action, exc):
        cycle.job.escrows[source_id] = cycle.job.escrows.get(source_id, 0) + 1
        cycle.escrowed += 1
        error = {"errorCode": _error_code(exc.status), "reason": "The SCIM endpoint rejected the request (HTTP %d): %s" % (exc.status, exc.detail),
                 "additionalDetails": exc.detail, "recommendedAction": "Correct the source object and retry; see the Cloudflare SCIM requirements."}
        cycle.log(kind, source, None, name, action, error=error)

    def _finish(self, cycle):
        job = cycle.job
        status = job.graph["status"]
        execution = cycle.execution("EntryLevelErrors" if cycle.escrowed else "Succeeded")
        now = iso()
        status.update(code="Active", quarantine=None, lastExecution=execution, lastSuccessfulExecution=execution,
                      countSuccessiveCompleteFailures=0, steadyStateLastAchievedTime=now)
        if cycle.exported:
            status["lastSuccessfulExecutionWithExports"] = execution
        if status["steadyStateFirstAchievedTime"] == ZERO_TIME:
            status["steadyStateFirstAchievedTime"] = now
        users = sum(1 for entry in job.connector.values() if entry["type"] == "User" and entry.get("active"))
        groups = sum(1 for entry in job.connector.values() if entry["type"] == "Group")
        status["synchronizedEntryCountByType"] = [{"key": "user to %s" % USER_SCHEMA, "value": users},
                                                  {"key": "group to %s" % GROUP_SCHEMA, "value": groups}]
        job.complete_failures = 0
        job.watermark = True
        job.next_attempt = 0.0
        return {"result": execution["state"], "exported": cycle.exported, "escrowed": cycle.escrowed}

    def _complete_failure(self, cycle, code, message, users, groups):
        job = cycle.job
        job.complete_failures += 1
        for source_id, source in list(users.items()) + list(groups.items()):
            kind = "User" if source_id in users else "Group"
            job.escrows[source_id] = job.escrows.get(source_id, 0) + 1
            cycle.escrowed += 1
            cycle.log(kind, source, None, source.get("userPrincipalName") or source["displayName"],
                      "create" if source_id not in job.connector else "update",
                      error={"errorCode": code, "reason": message, "additionalDetails": message,
                             "recommendedAction": "Check the Tenant URL (BaseAddress) of the application."})
        status = job.graph["status"]
        error = {"code": code, "message": message, "tenantActionable": True}
        status["lastExecution"] = cycle.execution("Failed", error)
        status["countSuccessiveCompleteFailures"] = job.complete_failures
        if job.complete_failures >= 3:
            return self._quarantine(cycle, "EncounteredTotalEscrowThreshold", code, message, record_execution=False)
        return {"result": "Failed", "exported": 0, "escrowed": cycle.escrowed}

    def _quarantine(self, cycle, reason, code, message, record_execution=True):
        """status.code Quarantine with status.quarantine {reason, error, currentBegan, nextAttempt, ...}
        (resources/synchronization-synchronizationstatus.md, -synchronizationquarantine.md)."""
        job = cycle.job
        status = job.graph["status"]
        error = {"code": code, "message": message, "tenantActionable": True}
        if record_execution:
            job.complete_failures += 1
            status["lastExecution"] = cycle.execution("Failed", error)
            status["countSuccessiveCompleteFailures"] = job.complete_failures
        previous = status.get("quarantine") or {}
        backoff = max(4 * self.cycle_interval, 1.0)
        job.next_attempt = time.monotonic() + backoff
        now = utc_now()
        status["code"] = "Quarantine"
        status["quarantine"] = {"currentBegan": iso(now), "nextAttempt": iso(now + datetime.timedelta(seconds=backoff)),
                                "reason": reason, "seriesBegan": previous.get("seriesBegan") or iso(now),
                                "seriesCount": int(previous.get("seriesCount") or 0) + 1, "error": error}
        return {"result": "Quarantine", "exported": cycle.exported, "escrowed": cycle.escrowed}

    def quarantine_job(self, sp_id, job, reason, code, message):
        """Quarantine a job on demand (admin API), as the service does after a critical error."""
        return self._quarantine(Cycle(self, self.state.service_principals[sp_id], job), reason, code, message, record_execution=False)

    def run_cycle(self, sp_id=None, honour_backoff=False):
        """Run one cycle of every started job (``schedule.state == Active``), optionally only those of ``sp_id``."""
        results = []
        with self.state.lock:
            for job_sp_id, jobs in list(self.state.jobs.items()):
                if sp_id is not None and job_sp_id != sp_id:
                    continue
                for job in list(jobs.values()):
                    if job.graph["schedule"]["state"] != "Active":
                        continue
                    if honour_backoff and job.graph["status"]["code"] == "Quarantine" and time.monotonic() < job.next_attempt:
                        continue
                    summary = self.run_job(job_sp_id, job)
                    summary.update(servicePrincipalId=job_sp_id, jobId=job.graph["id"], status=job.graph["status"]["code"])
                    results.append(summary)
        return results


def _q(value):
    return urllib.parse.quote(value.replace('"', '\\"'), safe="")

"""In-memory state of the emulated tenant and Cloudflare accounts, the seed format, and the admin state dump.

One re-entrant lock guards everything; request handlers and the provisioning engine hold it while they work
(all work is in memory, so it is held for microseconds), and injected latency is slept outside of it.
Secret values (client secrets, identity header, Cloudflare tokens, sync SecretToken) are kept only where a
check needs them and are dumped as ``sha256:<first 12 hex>`` fingerprints.
"""

import collections
import hashlib
import re
import threading
import time

from .errors import iso, new_id
from .tls import certificate_thumbprints

GRAPH_PERMISSIONS = (
    "Application.Read.All", "Application.ReadWrite.All", "Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All",
    "AuditLog.Read.All", "Directory.Read.All", "Directory.ReadWrite.All", "Synchronization.Read.All",
    "Synchronization.ReadWrite.All", "User.Read.All", "User.ReadBasic.All", "Group.Read.All", "GroupMember.Read.All",
)
ACCOUNT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class SeedError(ValueError):
    pass


def fingerprint(value):
    """``sha256:<first 12 hex>`` of a secret: identifies it in dumps and logs without revealing it."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


def _check_keys(kind, item, allowed, required=()):
    if not isinstance(item, dict):
        raise SeedError("%s entries are JSON objects" % kind)
    unknown = sorted(set(item) - set(allowed))
    if unknown:
        raise SeedError("unknown %s keys: %s (allowed: %s)" % (kind, ", ".join(unknown), ", ".join(sorted(allowed))))
    for key in required:
        if not isinstance(item.get(key), str) or not item.get(key):
            raise SeedError("%s entries need a non-empty string %r" % (kind, key))


def _check_permissions(kind, permissions):
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise SeedError("%s permissions are a list of strings" % kind)
    unknown = sorted(set(permissions) - set(GRAPH_PERMISSIONS))
    if unknown:
        raise SeedError("unknown Graph application permissions %s (known: %s)" % (", ".join(unknown), ", ".join(GRAPH_PERMISSIONS)))
    return frozenset(permissions)


class Meta:
    """Emulator-only facts about a directory object: when it becomes visible (replication lag) and its owners."""

    def __init__(self, lag_s=0.0, owners=()):
        self.visible_at = time.monotonic() + lag_s
        self.owners = set(owners)

    def visible(self):
        return time.monotonic() >= self.visible_at


class Job:
    """A synchronization job: the Graph representation plus the provisioning engine's private memory."""

    def __init__(self, sp_id, graph, lag_s):
        self.sp_id = sp_id
        self.graph = graph
        self.meta = Meta(lag_s)
        self.connector = {}  # source object id -> {"type", "target_id", "hash", "active", "name"} (connector data store)
        self.escrows = {}  # source object id -> count of failed attempts
        self.watermark = True  # False after restart with Watermark: next cycle re-evaluates and re-exports everything
        self.complete_failures = 0
        self.next_attempt = 0.0  # monotonic time before which a quarantined job is not retried by the background loop
        # "start" calls on a running job; Microsoft warns against them (microsoftgraph/microsoft-graph-docs-contrib
        # api-reference/v1.0/api/synchronization-synchronizationjob-start.md).
        self.starts_while_active = 0
        self.last_reset_scope = None


class State:
    def __init__(self):
        self.lock = threading.RLock()
        self.tenant_id = None
        self.tenant_domains = set()
        self.clients = collections.OrderedDict()
        self.managed_identities = collections.OrderedDict()
        self.identity_header = None
        self.tokens = {}
        self.users = collections.OrderedDict()
        self.groups = collections.OrderedDict()
        self.group_members = {}
        self.applications = collections.OrderedDict()
        self.app_meta = {}
        self.service_principals = collections.OrderedDict()
        self.sp_meta = {}
        self.sp_application = {}  # sp id -> application object id
        self.jobs = collections.OrderedDict()  # sp id -> OrderedDict(job id -> Job)
        self.secrets = {}  # sp id -> OrderedDict(key -> value)
        self.sync_visible_at = {}  # sp id -> monotonic time the provisioning service knows the SP (replication lag)
        self.assignments = collections.OrderedDict()  # sp id -> [appRoleAssignment]
        self.assignment_visible_at = {}  # assignment id -> monotonic time it shows up in lists (replication lag)
        self.provisioning_logs = []
        self.cloudflare = collections.OrderedDict()  # account id -> CloudflareAccount (cloudflare.py)
        self.request_log = []
        self.counts = collections.Counter()
        self.reports_calls = {}

    # ------------------------------------------------------------------ lookups
    def user_by_key(self, key):
        if key in self.users:
            return self.users[key]
        lowered = key.lower()
        for user in self.users.values():
            if user["userPrincipalName"].lower() == lowered:
                return user
        return None

    def group_by_key(self, key):
        if key in self.groups:
            return self.groups[key]
        for group in self.groups.values():
            if group["displayName"] == key:
                return group
        return None

    def principal(self, object_id):
        if object_id in self.users:
            return "User", self.users[object_id]
        if object_id in self.groups:
            return "Group", self.groups[object_id]
        return None, None

    def sp_by_app_id(self, app_id):
        for sp in self.service_principals.values():
            if sp["appId"] == app_id:
                return sp
        return None

    # ------------------------------------------------------------------ seed
    def apply_seed(self, seed, cloudflare_factory):
        """Merge a seed document into the state (see docs/emulator.md "Seed format"); return a summary with ids."""
        if not isinstance(seed, dict):
            raise SeedError("the seed is a JSON object")
        _check_keys("seed", seed, ("tenant_id", "tenant_domains", "clients", "managed_identities", "identity_header", "users",
                                   "groups", "cloudflare_accounts", "description"))
        for key in ("clients", "managed_identities", "users", "groups", "cloudflare_accounts", "tenant_domains"):
            if key in seed and not isinstance(seed[key], list):
                raise SeedError("seed %r is a list" % key)
        # Validate everything before changing anything, so a bad seed leaves the state as it was.
        staged_clients = [self._stage_client(item) for item in seed.get("clients", [])]
        staged_mis = [self._stage_managed_identity(item) for item in seed.get("managed_identities", [])]
        for item in seed.get("users", []):
            _check_keys("user", item, ("id", "userPrincipalName", "mail", "displayName", "givenName", "surname", "accountEnabled",
                                       "mailNickname", "jobTitle"), required=("userPrincipalName",))
            if "id" in item and not GUID_RE.match(str(item["id"])):
                raise SeedError("user id %r is not a GUID" % item["id"])
        incoming = {str(u.get(k)).lower() for u in seed.get("users", []) for k in ("id", "userPrincipalName") if u.get(k)}
        incoming |= {str(g.get(k)) for g in seed.get("groups", []) for k in ("id", "displayName") if g.get(k)}
        for item in seed.get("groups", []):
            _check_keys("group", item, ("id", "displayName", "description", "members", "mailNickname"), required=("displayName",))
            members = item.get("members", [])
            if not isinstance(members, list) or not all(isinstance(member, str) for member in members):
                raise SeedError("group members are a list of UPNs, group display names or object ids")
            for member in members:
                if member.lower() not in incoming and member not in incoming and not (self.user_by_key(member) or self.group_by_key(member)):
                    raise SeedError("group member %r is neither a known user (UPN or id) nor a group (displayName or id)" % member)
        for item in seed.get("cloudflare_accounts", []):
            _check_keys("cloudflare account", item, ("account_id", "tokens", "groups", "users"), required=("account_id",))
            if not ACCOUNT_ID_RE.match(item["account_id"]):
                raise SeedError("cloudflare account_id %r is not 32 lowercase hex characters" % item["account_id"])
            for token in item.get("tokens", []):
                _check_keys("cloudflare token", token, ("value", "scim_permission"), required=("value",))
            for group in item.get("groups", []):
                _check_keys("cloudflare group", group, ("id", "displayName"), required=("displayName",))
            for user in item.get("users", []):
                _check_keys("cloudflare user", user, ("userName", "active"), required=("userName",))
        if "tenant_id" in seed:
            if not isinstance(seed["tenant_id"], str) or not GUID_RE.match(seed["tenant_id"]):
                raise SeedError("tenant_id is a GUID")
            self.tenant_id = seed["tenant_id"].lower()
        for domain in seed.get("tenant_domains", []):
            self.tenant_domains.add(str(domain).lower())
        if "identity_header" in seed:
            if not isinstance(seed["identity_header"], str) or not seed["identity_header"]:
                raise SeedError("identity_header is a non-empty string")
            self.identity_header = seed["identity_header"]
        for client in staged_clients:
            self.clients[client["client_id"]] = client
        for identity in staged_mis:
            self.managed_identities[identity["key"]] = identity
        summary = {"tenant_id": self.tenant_id, "users": {}, "groups": {}, "clients": [c["client_id"] for c in staged_clients],
                   "managed_identities": [m["client_id"] for m in staged_mis], "cloudflare_accounts": []}
        for item in seed.get("users", []):
            user = self._upsert_user(item)
            summary["users"][user["userPrincipalName"]] = user["id"]
        pending_members = []
        for item in seed.get("groups", []):
            group = self._upsert_group(item)
            summary["groups"][group["displayName"]] = group["id"]
            if "members" in item:
                pending_members.append((group["id"], item["members"]))
        for group_id, members in pending_members:
            resolved = []
            for member in members:
                target = self.user_by_key(member) or self.group_by_key(member)
                if target["id"] not in resolved:
                    resolved.append(target["id"])
            self.group_members[group_id] = resolved
        for item in seed.get("cloudflare_accounts", []):
            account = self.cloudflare.get(item["account_id"])
            if account is None:
                account = cloudflare_factory(item["account_id"])
                self.cloudflare[item["account_id"]] = account
            account.seed(item)
            summary["cloudflare_accounts"].append(item["account_id"])
        return summary

    def _stage_client(self, item):
        _check_keys("client", item, ("client_id", "client_secret", "certificate_pem", "permissions", "display_name"),
                    required=("client_id",))
        certificates = item.get("certificate_pem") or []
        if isinstance(certificates, str):
            certificates = [certificates]
        staged_certs = []
        for pem in certificates:
            try:
                staged_certs.append({"pem": pem, "thumbprints": certificate_thumbprints(pem)})
            except ValueError as exc:
                raise SeedError("client %s certificate_pem is not a PEM certificate: %s" % (item["client_id"], exc)) from None
        secret = item.get("client_secret")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise SeedError("client_secret is a non-empty string")
        return {"client_id": item["client_id"], "client_secret": secret, "certificates": staged_certs,
                "permissions": _check_permissions("client", item.get("permissions", [])),
                "display_name": item.get("display_name", "client " + item["client_id"][:8])}

    def _stage_managed_identity(self, item):
        _check_keys("managed identity", item, ("client_id", "permissions"))
        client_id = item.get("client_id")
        return {"key": client_id or "system", "client_id": client_id or new_id(), "user_assigned": bool(client_id),
                "permissions": _check_permissions("managed identity", item.get("permissions", []))}

    def _upsert_user(self, item):
        existing = self.users.get(item.get("id")) if item.get("id") else self.user_by_key(item["userPrincipalName"])
        upn = item["userPrincipalName"]
        user = existing or {
            "id": (item.get("id") or new_id()).lower(), "businessPhones": [], "displayName": None, "givenName": None, "jobTitle": None,
            "mail": None, "mobilePhone": None, "officeLocation": None, "preferredLanguage": None, "surname": None,
            "userPrincipalName": upn, "accountEnabled": True, "mailNickname": upn.split("@")[0], "createdDateTime": iso(),
        }
        for key in ("userPrincipalName", "mail", "displayName", "givenName", "surname", "accountEnabled", "mailNickname", "jobTitle"):
            if key in item:
                user[key] = item[key]
        if user["displayName"] is None:
            user["displayName"] = " ".join(part for part in (user["givenName"], user["surname"]) if part) or upn
        self.users[user["id"]] = user
        return user

    def _upsert_group(self, item):
        existing = self.groups.get(item.get("id")) if item.get("id") else self.group_by_key(item["displayName"])
        group = existing or {
            "id": (item.get("id") or new_id()).lower(), "createdDateTime": iso(), "description": None, "displayName": item["displayName"],
            "groupTypes": [], "mail": None, "mailEnabled": False, "mailNickname": re.sub(r"[^A-Za-z0-9]", "", item["displayName"]) or "group",
            "securityEnabled": True, "visibility": None,
        }
        for key in ("displayName", "description", "mailNickname"):
            if key in item:
                group[key] = item[key]
        self.groups[group["id"]] = group
        self.group_members.setdefault(group["id"], [])
        return group

    # ------------------------------------------------------------------ removal
    def delete_service_principal(self, sp_id):
        self.service_principals.pop(sp_id, None)
        self.sp_meta.pop(sp_id, None)
        self.sp_application.pop(sp_id, None)
        self.jobs.pop(sp_id, None)
        self.secrets.pop(sp_id, None)
        self.sync_visible_at.pop(sp_id, None)
        self.assignments.pop(sp_id, None)

    def delete_application(self, app_object_id):
        app = self.applications.pop(app_object_id, None)
        self.app_meta.pop(app_object_id, None)
        if app is not None:
            for sp_id, owner_app in list(self.sp_application.items()):
                if owner_app == app_object_id:
                    self.delete_service_principal(sp_id)
        return app

    # ------------------------------------------------------------------ dump
    def dump(self):
        """The admin state dump: everything, with secret values replaced by fingerprints."""
        return {
            "tenant_id": self.tenant_id,
            "tenant_domains": sorted(self.tenant_domains),
            "clients": [{"client_id": c["client_id"], "display_name": c["display_name"],
                         "client_secret": fingerprint(c["client_secret"]) if c["client_secret"] else None,
                         "certificates": [cert["thumbprints"]["x5t#S256"] for cert in c["certificates"]],
                         "permissions": sorted(c["permissions"])} for c in self.clients.values()],
            "managed_identities": [{"client_id": m["client_id"], "user_assigned": m["user_assigned"], "permissions": sorted(m["permissions"])}
                                   for m in self.managed_identities.values()],
            "identity_header": fingerprint(self.identity_header) if self.identity_header else None,
            "active_access_tokens": sum(1 for t in self.tokens.values() if t["expires"] > time.time()),
            "applications": [dict(app, **{"_owners": sorted(self.app_meta[app_id].owners)}) for app_id, app in self.applications.items()],
            "service_principals": [dict(sp, **{"_owners": sorted(self.sp_meta[sp_id].owners)}) for sp_id, sp in self.service_principals.items()],
            "jobs": [dict(job.graph, **{"servicePrincipalId": sp_id, "_connector_objects": len(job.connector), "_escrows": len(job.escrows),
                                        "_starts_while_active": job.starts_while_active, "_last_reset_scope": job.last_reset_scope})
                     for sp_id, jobs in self.jobs.items() for job in jobs.values()],
            "secrets": {sp_id: [{"key": key, "value": dump_secret(key, value)} for key, value in values.items()]
                        for sp_id, values in self.secrets.items()},
            "assignments": {sp_id: list(items) for sp_id, items in self.assignments.items()},
            "users": list(self.users.values()),
            "groups": [dict(group, members=list(self.group_members.get(group_id, []))) for group_id, group in self.groups.items()],
            "cloudflare_accounts": [account.dump() for account in self.cloudflare.values()],
            "provisioning_logs": list(reversed(self.provisioning_logs)),
        }


# synchronizationSecret keys whose values Graph never reads back in clear (observed: sensitive values read back as "*",
# MicrosoftDocs/azure-docs issue #55184; which keys beyond SecretToken/ClientSecret are masked is our assumption).
SENSITIVE_SECRET_KEYS = frozenset((
    "Password", "SecretToken", "AppKey", "ClientSecret", "ConsumerSecret", "TokenKey", "Oauth2AccessToken", "Oauth2RefreshToken",
    "Oauth2ClientSecret", "Oauth2AuthorizationCode", "ConnectionString",
))


def dump_secret(key, value):
    return fingerprint(value) if key in SENSITIVE_SECRET_KEYS else value

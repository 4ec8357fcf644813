"""Cloudflare SCIM v2, one store per account, under ``/client/v4/accounts/{account_id}/scim/v2/``.

Sources: the SCIM setup pages of cloudflare/cloudflare-docs (``src/content/docs/fundamentals/account/account-security/
scim-setup/index.mdx``, ``entra.mdx``, ``troubleshooting.mdx``; the virtual groups:
``src/content/docs/fundamentals/reference/migration-guides/scim-virtual-groups-migration.mdx``) and the SCIM operations
(``/accounts/{account_id}/scim/v2/...``) of cloudflare/api-schemas ``openapi.json``: bearer API token per account with
the "SCIM Provisioning" permission, ServiceProviderConfig / ResourceTypes / Schemas (User and Group core schemas
only), userName must be an e-mail equal to the primary e-mail
(Entra: "UPN and Email must be identical, case-sensitive"), ``active:false`` removes the member, group names must
not start with ``CF``, deprecated ``CF-<accountID> - <Role Name>`` virtual groups and ``cloudflare-v1-`` system
groups accept member operations only and cannot be deleted. Cloudflare API v4 error JSON for authentication
failures (``{"success": false, "errors": [{"code": 10000, "message": "Authentication error"}]}``, Cloudflare
Workers API docs), SCIM error JSON (RFC 7644 §3.12) for SCIM failures.

SCIM semantics (payload validation, PatchOp parsing and application, the Schemas documents) come from the
``scim2-models`` library (installed in the venv), so PATCH bodies are applied as RFC 7644 defines them; Cloudflare's
own rules are checked on top of it.
"""

import collections
import hashlib
import re
import urllib.parse
import uuid

from .errors import iso
from .state import fingerprint
from .web import Response

SCIM_CONTENT_TYPE = "application/scim+json; charset=utf-8"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ACCOUNT_PATH_RE = re.compile(r"^/client/v4/accounts/(?P<account>[^/]+)/scim/v2(?P<rest>/.*)?$")
BASE_PATH_RE = re.compile(r"^/client/v4/accounts/(?P<account>[0-9a-f]{32})/scim/v2/?$")
MAX_COUNT = 1000


def scim2():
    """The scim2-models module, imported on first use: it takes most of the emulator's start-up time, so the
    server imports it in the background after the ready file is written (``warm_up``)."""
    import scim2_models  # pylint: disable=import-outside-toplevel
    return scim2_models


def warm_up():
    scim2().User.to_schema()


def _token_hash(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ScimError(Exception):
    def __init__(self, status, detail, scim_type=None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type

    def response(self):
        body = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return Response.json(self.status, body, content_type=SCIM_CONTENT_TYPE)


def cloudflare_error(status, code, message):
    """Cloudflare API v4 error envelope."""
    return Response.json(status, {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None})


class CloudflareAccount:
    """One Cloudflare account: its API tokens (stored as hashes only) and its SCIM users and groups."""

    def __init__(self, account_id):
        self.account_id = account_id
        self.tokens = collections.OrderedDict()  # sha256 hex -> {"fingerprint", "scim_permission", "revoked"}
        self.users = collections.OrderedDict()  # id -> SCIM User JSON
        self.groups = collections.OrderedDict()  # id -> SCIM Group JSON
        self.group_kind = {}  # id -> "custom" | "virtual" (deprecated CF-<id> - <Role>) | "system" (cloudflare-v1-*)

    def add_token(self, token, scim_permission=True):
        self.tokens[_token_hash(token)] = {"fingerprint": fingerprint(token), "scim_permission": bool(scim_permission), "revoked": False}

    def revoke(self, token=None, token_fingerprint=None):
        """Mark a token revoked; return how many matched."""
        hits = 0
        for key, info in self.tokens.items():
            if (token is not None and key == _token_hash(token)) or (token_fingerprint is not None and info["fingerprint"] == token_fingerprint):
                info["revoked"] = True
                hits += 1
        return hits

    def seed(self, item):
        for token in item.get("tokens", []):
            self.add_token(token["value"], token.get("scim_permission", True))
        for group in item.get("groups", []):
            name = group["displayName"]
            if any(g["displayName"] == name for g in self.groups.values()):
                continue
            group_id = group.get("id") or uuid.uuid4().hex
            kind = "virtual" if name.startswith("CF-") else "system" if name.startswith("cloudflare-v1-") else "custom"
            self.groups[group_id] = {"schemas": [GROUP_SCHEMA], "id": group_id, "displayName": name, "members": [],
                                     "meta": {"resourceType": "Group", "created": iso(), "lastModified": iso()}}
            self.group_kind[group_id] = kind
        for user in item.get("users", []):
            if any(u["userName"].lower() == user["userName"].lower() for u in self.users.values()):
                continue
            user_id = uuid.uuid4().hex
            self.users[user_id] = {"schemas": [USER_SCHEMA], "id": user_id, "userName": user["userName"],
                                   "active": bool(user.get("active", True)),
                                   "emails": [{"type": "work", "primary": True, "value": user["userName"]}],
                                   "meta": {"resourceType": "User", "created": iso(), "lastModified": iso()}}

    def dump(self):
        return {"account_id": self.account_id,
                "tokens": [dict(info) for info in self.tokens.values()],
                "users": list(self.users.values()),
                "groups": [dict(group, _kind=self.group_kind.get(group_id, "custom")) for group_id, group in self.groups.items()]}


# ---------------------------------------------------------------------------------------------- filters
_FILTER_RE = re.compile(r'^\s*(?P<attr>[A-Za-z][\w.$]*(?:\[type eq "work"\])?(?:\.value)?)\s+(?P<op>eq|ne|co|sw|ew)\s+'
                        r'(?P<value>"(?:[^"\\]|\\.)*"|true|false|null)\s*$', re.IGNORECASE)
CASE_EXACT = {"id", "externalid"}


def _attribute(resource, attr):
    lowered = attr.lower()
    if lowered in ("emails.value", 'emails[type eq "work"].value'):
        return [e.get("value") for e in resource.get("emails") or [] if lowered == "emails.value" or e.get("type") == "work"]
    if lowered == "members.value":
        return [m.get("value") for m in resource.get("members") or []]
    for key, value in resource.items():
        if key.lower() == lowered:
            return value
    return None


def parse_filter(text):
    clauses = []
    for part in re.split(r"\s+and\s+", text, flags=re.IGNORECASE):
        match = _FILTER_RE.match(part)
        if not match:
            raise ScimError(400, "The filter '%s' is not supported: use attribute eq \"value\" (optionally joined with and)." % text,
                            "invalidFilter")
        raw = match.group("value")
        value = {"true": True, "false": False, "null": None}.get(raw.lower(), None) if not raw.startswith('"') else \
            raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        clauses.append((match.group("attr"), match.group("op").lower(), value))
    return clauses


def _compare(op, actual, expected, exact):
    if isinstance(actual, list):
        return any(_compare(op, item, expected, exact) for item in actual)
    if isinstance(actual, str) and isinstance(expected, str) and not exact:
        actual, expected = actual.lower(), expected.lower()
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if not isinstance(actual, str) or not isinstance(expected, str):
        return False
    return {"co": expected in actual, "sw": actual.startswith(expected), "ew": actual.endswith(expected)}[op]


def apply_filter(resources, text):
    clauses = parse_filter(text)
    return [r for r in resources if all(_compare(op, _attribute(r, attr), value, attr.lower() in CASE_EXACT) for attr, op, value in clauses)]


# ---------------------------------------------------------------------------------------------- service
def _validation_detail(exc):
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "Operations") or "request"
    return "%s: %s" % (location, first.get("msg")), ("invalidSyntax" if first.get("type") == "extra_forbidden" else "invalidValue")


def _parse(model, payload, context_name):
    """Validate ``payload`` as a scim2-models ``model`` in the named SCIM context; 400 SCIM error when invalid."""
    import pydantic  # pylint: disable=import-outside-toplevel
    if not isinstance(payload, dict):
        raise ScimError(400, "The request body must be a JSON object.", "invalidSyntax")
    try:
        return model.model_validate(payload, scim_ctx=getattr(scim2().Context, context_name))
    except pydantic.ValidationError as exc:
        detail, scim_type = _validation_detail(exc)
        raise ScimError(400, detail, scim_type) from None


def _dump(model):
    return model.model_dump(scim_ctx=scim2().Context.RESOURCE_QUERY_RESPONSE)


def _normalise_entra_patch(body):
    """Entra removes group members as ``{"op":"Remove","path":"members","value":[{"value":id}]}``; turn that into the
    RFC 7644 form ``members[value eq "id"]`` (Cloudflare accepts what Entra sends)."""
    if not isinstance(body, dict) or not isinstance(body.get("Operations"), list):
        return body
    operations = []
    for op in body["Operations"]:
        if (isinstance(op, dict) and str(op.get("op", "")).lower() == "remove" and str(op.get("path", "")).lower() == "members"
                and isinstance(op.get("value"), list)):
            for member in op["value"]:
                value = member.get("value") if isinstance(member, dict) else None
                if not isinstance(value, str):
                    raise ScimError(400, "members to remove need a value", "invalidValue")
                operations.append({"op": "remove", "path": 'members[value eq "%s"]' % value.replace('"', '\\"')})
        else:
            operations.append(op)
    return dict(body, Operations=operations)


class ScimService:
    def __init__(self, state):
        self.state = state
        self.own_netlocs = set()
        self.base_url = ""

    def set_address(self, base_url, netlocs):
        self.base_url = base_url
        self.own_netlocs = set(netlocs)

    def resolve_base_address(self, base_address):
        """``(account SCIM path, RFC-compliant PATCH flag)`` when the BaseAddress points at this emulator, else None."""
        if not base_address or not isinstance(base_address, str):
            return None
        parsed = urllib.parse.urlsplit(base_address.strip())
        match = BASE_PATH_RE.match(parsed.path)
        if parsed.scheme != "https" or parsed.netloc.lower() not in self.own_netlocs or not match:
            return None
        return "/client/v4/accounts/%s/scim/v2" % match.group("account"), "aadOptscim062020" in parsed.query

    # -------------------------------------------------------------- routing
    @staticmethod
    def classify(method, path):
        """Operation name of a request under /client/v4 (for latency, the request log and its counts)."""
        match = ACCOUNT_PATH_RE.match(path)
        if not match:
            return "cloudflare.unknown"
        parts = [p for p in (match.group("rest") or "").split("/") if p]
        if not parts:
            return "cloudflare.unknown"
        resource = parts[0]
        if resource in ("ServiceProviderConfig", "ResourceTypes", "Schemas"):
            return "cloudflare." + resource
        if resource in ("Users", "Groups"):
            verb = {"GET": "get" if len(parts) > 1 else "list", "POST": "create", "PATCH": "patch", "PUT": "put", "DELETE": "delete"}
            return "cloudflare.%s.%s" % (resource.lower(), verb.get(method, method.lower()))
        return "cloudflare.unknown"

    def handle(self, request):
        match = ACCOUNT_PATH_RE.match(request.path)
        if not match:
            return cloudflare_error(404, 7000, "No route for that URI")
        account_id = match.group("account")
        if not re.fullmatch(r"[0-9a-f]{32}", account_id):
            return cloudflare_error(404, 7003, "Could not route to %s, perhaps your object identifier is invalid?" % request.path)
        denied = self._authenticate(account_id, request.headers.get("Authorization"))
        if denied is not None:
            return denied
        account = self.state.cloudflare[account_id]
        parts = [urllib.parse.unquote(p) for p in (match.group("rest") or "").split("/") if p]
        query = dict(urllib.parse.parse_qsl(request.raw_query, keep_blank_values=True))
        location = "%s/client/v4/accounts/%s/scim/v2" % (self.base_url, account_id)
        try:
            return self._dispatch(account, request, parts, query, location)
        except ScimError as exc:
            return exc.response()

    def _authenticate(self, account_id, header):
        if not header:
            return cloudflare_error(400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
        scheme, _space, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return cloudflare_error(400, 6003, "Invalid request headers")
        digest = _token_hash(token.strip())
        for owner in self.state.cloudflare.values():
            info = owner.tokens.get(digest)
            if info is None:
                continue
            if info["revoked"]:
                return cloudflare_error(401, 10000, "Authentication error")
            if owner.account_id != account_id or not info["scim_permission"]:
                # Account-owned token of another account, or without "Account > SCIM Provisioning > Edit".
                return cloudflare_error(403, 10000, "Authentication error")
            return None
        return cloudflare_error(401, 10000, "Authentication error")

    def _dispatch(self, account, request, parts, query, location):
        resource = parts[0] if parts else ""
        method = request.method
        if resource == "ServiceProviderConfig" and len(parts) == 1 and method == "GET":
            return self._json(200, self.service_provider_config(location))
        if resource == "ResourceTypes" and method == "GET":
            return self._discovery(self.resource_types(location), parts)
        if resource == "Schemas" and method == "GET":
            return self._discovery(self.schemas(location), parts)
        if resource in ("Users", "Groups") and len(parts) <= 2:
            store = account.users if resource == "Users" else account.groups
            if len(parts) == 1:
                if method == "GET":
                    return self._list(store, query)
                if method == "POST":
                    return self._create(account, request, location, resource)
            else:
                item = store.get(parts[1])
                if method in ("GET", "PATCH", "DELETE", "PUT") and item is None:
                    raise ScimError(404, "Resource %s not found" % parts[1])
                if method == "GET":
                    return self._json(200, self._project(item, query))
                if method == "PATCH":
                    return self._patch_user(account, request, item) if resource == "Users" else self._patch_group(account, request, item)
                if method == "DELETE" and resource == "Groups":
                    return self._delete_group(account, item)
            raise ScimError(405, "Method %s is not supported on %s" % (method, "/".join(parts)))
        raise ScimError(404, "Endpoint /%s not found" % "/".join(parts))

    @staticmethod
    def _json(status, payload, headers=None):
        return Response.json(status, payload, headers=headers, content_type=SCIM_CONTENT_TYPE)

    # -------------------------------------------------------------- discovery
    @staticmethod
    def service_provider_config(location):
        return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
                "documentationUri": "https://developers.cloudflare.com/fundamentals/account/account-security/scim-setup/",
                "patch": {"supported": True}, "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
                "filter": {"supported": True, "maxResults": MAX_COUNT}, "changePassword": {"supported": False},
                "sort": {"supported": False}, "etag": {"supported": False},
                "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": True,
                                           "description": "Cloudflare API token with the Account > SCIM Provisioning > Edit permission"}],
                "meta": {"resourceType": "ServiceProviderConfig", "location": location + "/ServiceProviderConfig"}}

    @staticmethod
    def resource_types(location):
        return [{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": name, "name": name, "endpoint": "/" + name + "s",
                 "description": name, "schema": schema, "schemaExtensions": [],
                 "meta": {"resourceType": "ResourceType", "location": "%s/ResourceTypes/%s" % (location, name)}}
                for name, schema in (("User", USER_SCHEMA), ("Group", GROUP_SCHEMA))]

    @staticmethod
    def schemas(location):
        documents = []
        for model in (scim2().User, scim2().Group):
            schema = _dump(model.to_schema())
            schema["meta"] = {"resourceType": "Schema", "location": "%s/Schemas/%s" % (location, schema["id"])}
            documents.append(schema)
        return documents

    def _discovery(self, documents, parts):
        if len(parts) == 1:
            return self._json(200, {"schemas": [LIST_SCHEMA], "totalResults": len(documents), "startIndex": 1,
                                    "itemsPerPage": len(documents), "Resources": documents})
        for document in documents:
            if document["id"] == parts[1]:
                return self._json(200, document)
        raise ScimError(404, "Resource %s not found" % parts[1])

    # -------------------------------------------------------------- listing
    @staticmethod
    def _project(resource, query):
        excluded = {a.strip().lower() for a in query.get("excludedAttributes", "").split(",") if a.strip()}
        wanted = {a.strip().lower() for a in query.get("attributes", "").split(",") if a.strip()}
        always = {"id", "schemas", "meta"}
        return {k: v for k, v in resource.items()
                if k.lower() not in excluded and (not wanted or k.lower() in wanted or k.lower() in always)}

    def _list(self, store, query):
        resources = list(store.values())
        if query.get("filter"):
            resources = apply_filter(resources, query["filter"])
        try:
            start = max(1, int(query.get("startIndex", "1")))
            count = min(MAX_COUNT, max(0, int(query.get("count", "100"))))
        except ValueError:
            raise ScimError(400, "startIndex and count are integers", "invalidValue") from None
        page = resources[start - 1:start - 1 + count]
        return self._json(200, {"schemas": [LIST_SCHEMA], "totalResults": len(resources), "startIndex": start, "itemsPerPage": len(page),
                                "Resources": [self._project(r, query) for r in page]})

    # -------------------------------------------------------------- users
    @staticmethod
    def _check_user(user, account, own_id=None):
        """Cloudflare's user rules (cloudflare-docs scim-setup/entra.mdx: UPN and e-mail identical, case-sensitive; api-schemas
        SCIM Users operations): userName is an e-mail and equals the primary/work e-mail exactly."""
        user_name = user.get("userName") or ""
        if not EMAIL_RE.match(user_name):
            raise ScimError(400, "userName '%s' must be an email address" % user_name, "invalidValue")
        emails = user.get("emails") or []
        primary = next((e for e in emails if e.get("primary")), None) or next((e for e in emails if e.get("type") == "work"), None)
        if primary is not None and primary.get("value") != user_name:
            raise ScimError(400, "userName '%s' must match the primary email '%s' (case-sensitive)" % (user_name, primary.get("value")),
                            "invalidValue")
        for other_id, other in account.users.items():
            if other_id != own_id and other["userName"].lower() == user_name.lower():
                raise ScimError(409, "User with userName '%s' already exists" % user_name, "uniqueness")

    def _create(self, account, request, location, collection):
        """POST /Users or /Groups: validate with scim2-models, apply Cloudflare's rules, store, 201 with Location."""
        model = scim2().User if collection == "Users" else scim2().Group
        resource = _dump(_parse(model, self._body(request), "RESOURCE_CREATION_REQUEST"))
        resource.pop("id", None)
        if collection == "Users":
            resource.setdefault("active", True)
            self._check_user(resource, account)
        else:
            resource["members"] = [{"value": m["value"]} for m in resource.get("members") or []]
            self._check_group(resource, account)
        resource_id = uuid.uuid4().hex
        now = iso()
        location = "%s/%s/%s" % (location, collection, resource_id)
        resource.update(id=resource_id, schemas=[USER_SCHEMA if collection == "Users" else GROUP_SCHEMA],
                        meta={"resourceType": model.__name__, "created": now, "lastModified": now, "location": location})
        if collection == "Users":
            account.users[resource_id] = resource
        else:
            account.groups[resource_id] = resource
            account.group_kind[resource_id] = "custom"
        return self._json(201, resource, {"Location": location})

    @staticmethod
    def _apply_patch(model, body, resource):
        """Apply a PatchOp (RFC 7644 §3.5.2, via scim2-models) to a stored resource; return the updated copy."""
        patch = _parse(scim2().PatchOp[model], _normalise_entra_patch(body), "RESOURCE_PATCH_REQUEST")
        current = _parse(model, {k: v for k, v in resource.items() if k != "meta"}, "RESOURCE_QUERY_RESPONSE")
        try:
            patch.patch(current)
        except (ValueError, TypeError) as exc:
            raise ScimError(400, str(exc), "invalidValue") from None
        updated = _dump(current)
        updated["meta"] = dict(resource["meta"], lastModified=iso())
        return updated

    def _patch_user(self, account, request, user):
        body = self._body(request)
        updated = self._apply_patch(scim2().User, body, user)
        work_email = self._patched_work_email(body)
        if work_email is not None:
            # emails[type eq "work"].value is accepted as an alias of userName (cloudflare/api-schemas openapi.json, SCIM Users PATCH).
            updated["userName"] = work_email
        self._check_user(updated, account, user["id"])
        account.users[user["id"]] = updated
        return self._json(200, updated)

    @staticmethod
    def _patched_work_email(body):
        for op in body.get("Operations") or []:
            if isinstance(op, dict) and str(op.get("path", "")).replace(" ", "").lower() == 'emails[typeeq"work"].value':
                return op.get("value") if isinstance(op.get("value"), str) else None
        return None

    # -------------------------------------------------------------- groups
    @staticmethod
    def _check_group(group, account, own_id=None):
        name = group.get("displayName") or ""
        if not name.strip():
            raise ScimError(400, "displayName must not be empty", "invalidValue")
        if name.startswith("CF"):
            raise ScimError(400, "Group names starting with 'CF' are reserved: '%s'" % name, "invalidValue")
        for other_id, other in account.groups.items():
            if other_id != own_id and other["displayName"].lower() == name.lower():
                raise ScimError(409, "Group with displayName '%s' already exists" % name, "uniqueness")
        for member in group.get("members") or []:
            if member.get("value") not in account.users:
                raise ScimError(400, "Group member '%s' is not a user of this account" % member.get("value"), "invalidValue")

    def _patch_group(self, account, request, group):
        body = self._body(request)
        kind = account.group_kind.get(group["id"], "custom")
        if kind != "custom":
            for op in body.get("Operations") or []:
                if not isinstance(op, dict) or not str(op.get("path", "")).lower().startswith("members"):
                    raise ScimError(400, "Only member operations are allowed on the %s group '%s'" % (kind, group["displayName"]), "mutability")
        updated = self._apply_patch(scim2().Group, body, group)
        updated["members"] = [{"value": m["value"]} for m in updated.get("members") or []]
        if kind == "custom":
            self._check_group(updated, account, group["id"])
        account.groups[group["id"]] = updated
        return self._json(200, updated)

    def _delete_group(self, account, group):
        kind = account.group_kind.get(group["id"], "custom")
        if kind != "custom":
            raise ScimError(400, "The %s group '%s' cannot be deleted" % (kind, group["displayName"]), "mutability")
        del account.groups[group["id"]]
        account.group_kind.pop(group["id"], None)
        return Response.empty(204)

    @staticmethod
    def _body(request):
        try:
            body = request.json()
        except ValueError:
            raise ScimError(400, "The request body is not valid JSON", "invalidSyntax") from None
        if not isinstance(body, dict):
            raise ScimError(400, "The request body must be a JSON object", "invalidSyntax")
        return body

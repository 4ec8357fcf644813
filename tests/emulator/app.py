"""The emulator application: routes every request to login, Graph, Cloudflare or the admin API, applies injected
latency and faults, checks bearer tokens and permissions, runs ``$batch``, and keeps the request log.

Graph conventions applied here (pages of microsoftgraph/microsoft-graph-docs-contrib): error JSON with ``innerError`` +
``request-id`` header (concepts/errors.md), 401 ``InvalidAuthenticationToken`` for a missing/invalid/expired bearer, 403
``Authorization_RequestDenied`` without the permission (the permission tables, see permissions.py), ``$batch`` rules
(concepts/json-batching.md), 429/503 with ``Retry-After`` (concepts/throttling.md, concepts/throttling-limits.md).
"""

import functools
import json
import re
import threading
import time
import urllib.parse

from . import admin, graph, permissions, sync
from .cloudflare import ScimService
from .errors import GraphError, iso_precise, new_id, throttled, unavailable
from .identity import Identity
from .odata import Query
from .web import BodyError, Headers, Request, Response

GRAPH_CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
MAX_LOG_ENTRIES = 20000
BATCH_LIMIT = 20
TENANT_PATH = re.compile(r"^/(?P<tenant>[^/]+)/(?P<rest>v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token|discovery/v2\.0/keys)$")


class Ctx:
    """What a Graph handler needs: the request, the state, the caller and query/body helpers."""

    def __init__(self, app, request, principal, owned_only):
        self.app = app
        self.request = request
        self.state = app.state
        self.faults = app.faults
        self.engine = app.engine
        self.principal = principal
        self.owned_only = owned_only
        self.base_url = app.base_url
        self.graph_root = app.base_url + "/v1.0"
        self.page_size = app.page_size
        self._query = None

    def query(self):
        if self._query is None:
            self._query = Query(self.request.raw_query, self.request.headers)
        return self._query

    def json_body(self):
        try:
            body = self.request.json()
        except BodyError:
            body = BodyError
        content_type = (self.request.headers.get("Content-Type") or "").lower()
        if body is BodyError or (body is not None and "application/json" not in content_type):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload "
                             "is of valid JSON format.")
        return body

    def require_owner(self, owners):
        if self.owned_only and self.principal["client_id"] not in owners:
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


class App:
    def __init__(self, state, faults, page_size=100, cycle_interval=2.0, verbose=False):
        self.state = state
        self.faults = faults
        self.page_size = page_size
        self.verbose = verbose
        self.base_url = "https://127.0.0.1"
        self.scim = ScimService(state)
        self.identity = Identity(state, lambda: self.base_url)
        self.engine = sync.ProvisioningEngine(state, self.scim, cycle_interval)
        self.routes = graph.ROUTES + sync.ROUTES
        self.log_lock = threading.Lock()

    def set_port(self, port):
        self.base_url = "https://127.0.0.1:%d" % port
        self.scim.set_address(self.base_url, {"127.0.0.1:%d" % port, "localhost:%d" % port})

    # -------------------------------------------------------------- request log
    def record(self, request, operation, status, client_id, write, in_batch=False):
        entry = {"time": iso_precise(), "method": request.method, "path": request.path, "query": request.raw_query,
                 "operation": operation, "status": status, "client_id": client_id, "write": bool(write)}
        if in_batch:
            entry["in_batch"] = True
        with self.log_lock:
            self.state.request_log.append(entry)
            if len(self.state.request_log) > MAX_LOG_ENTRIES:
                del self.state.request_log[:len(self.state.request_log) - MAX_LOG_ENTRIES]
            self.state.counts[operation] += 1
            if not in_batch:
                self.state.counts["_writes" if write else "_reads"] += 1
                if operation.startswith("token"):
                    self.state.counts["_token_requests"] += 1

    def requests_log(self):
        with self.log_lock:
            counts = dict(self.state.counts)
            entries = list(self.state.request_log)
        return {"entries": entries,
                "counts": {"by_operation": {k: v for k, v in sorted(counts.items()) if not k.startswith("_")},
                           "reads": counts.get("_reads", 0), "writes": counts.get("_writes", 0),
                           "token_requests": counts.get("_token_requests", 0), "total": counts.get("_reads", 0) + counts.get("_writes", 0)}}

    def reset_log(self):
        with self.log_lock:
            self.state.request_log.clear()
            self.state.counts.clear()

    def _sleep(self, operation):
        self._pause(self.faults.latency_seconds(operation))

    @staticmethod
    def _pause(delay):
        if delay > 0:
            time.sleep(delay)  # outside the state lock: other requests keep flowing

    # -------------------------------------------------------------- entry point
    def handle(self, request):
        path = request.path
        if path == "/_admin" or path.startswith("/_admin/"):
            return admin.handle(self, request)
        if path == "/v1.0" or path.startswith("/v1.0/"):
            return self.graph_request(request)
        if path.startswith("/client/v4/") or path == "/client/v4":
            operation = self.scim.classify(request.method, path)
            self._sleep(operation)
            with self.state.lock:
                response = self.scim.handle(request)
            self.record(request, operation, response.status, None, request.method != "GET")
            return response
        return self.login_request(request)

    def _login_route(self, request):
        """``(operation, handler(request) -> Response, client_id)`` for a login request, or ``None``."""
        path, method = request.path, request.method
        query_client = dict(urllib.parse.parse_qsl(request.raw_query)).get("client_id")
        if path == "/msi/token" and method == "GET":
            return "token.managed_identity", self.identity.app_service_token, query_client
        if path == "/metadata/identity/oauth2/token" and method == "GET":
            return "token.managed_identity", self.identity.imds_token, query_client
        if path == "/common/discovery/instance" and method == "GET":
            return "login.instance_discovery", self.identity.instance_discovery, None
        match = TENANT_PATH.match(path)
        if match is None:
            return None
        tenant, rest = match.group("tenant"), match.group("rest")
        if rest.startswith("oauth2") and method == "POST":
            form_client = dict(urllib.parse.parse_qsl(request.body.decode("utf-8", "replace"))).get("client_id")
            return "token", functools.partial(self.identity.token, tenant), form_client
        if rest.startswith("v2.0") and method == "GET":
            return "login.openid_configuration", functools.partial(self.identity.openid_configuration, tenant), None
        if rest.startswith("discovery") and method == "GET":
            return "login.keys", functools.partial(self.identity.jwks, tenant), None
        return "login.method_not_allowed", self._login_method_not_allowed, None

    @staticmethod
    def _login_method_not_allowed(request):
        return Response.json(405, {"error": "invalid_request", "error_description": "Method %s is not allowed here." % request.method})

    def login_request(self, request):
        route = self._login_route(request)
        if route is None:
            return self._unknown_path(request)
        operation, handler, client_id = route
        self._sleep(operation)
        with self.state.lock:
            response = handler(request)
        self.record(request, operation, response.status, client_id, False)
        return response

    def _unknown_path(self, request):
        request_id = new_id()
        error = GraphError(404, "UnknownResource", "Resource not found for the segment '%s'." % request.path.strip("/").split("/")[0])
        self.record(request, "unknown", 404, None, False)
        return Response.json(404, error.body(request_id, request_id), headers={"request-id": request_id})

    # -------------------------------------------------------------- Graph
    def _match(self, method, sub_path):
        allowed = False
        for route in self.routes:
            match = route.regex.match(sub_path)
            if match:
                if route.method == method:
                    return route, match.groupdict(), True
                allowed = True
        return None, None, allowed

    def authenticate(self, request):
        header = request.headers.get("Authorization") or ""
        challenge = {"WWW-Authenticate": 'Bearer realm="", authorization_uri="%s/common/oauth2/authorize", '
                                         'client_id="00000003-0000-0000-c000-000000000000"' % self.base_url}
        scheme, _space, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", headers=challenge)
        with self.state.lock:
            info = self.state.tokens.get(token.strip())
        if info is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.", headers=challenge)
        if info["expires"] <= time.time():
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.", headers=challenge)
        return info

    def graph_request(self, request):
        request_id = new_id()
        client_request_id = request.headers.get("client-request-id") or request_id
        headers = {"request-id": request_id, "client-request-id": client_request_id, "x-ms-ags-diagnostic": '{"emulator": true}'}
        sub = graph.normalize_path(urllib.parse.unquote(request.path[len("/v1.0"):]) or "/")
        if sub.rstrip("/") == "/$batch":
            operation = "batch"
            self._sleep(operation)
            try:
                principal = self.authenticate(request)
                if request.method != "POST":
                    raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request uri.")
                status, body = self.batch(request, principal)
            except GraphError as exc:
                self.record(request, operation, exc.status, None, False)
                return self._error(exc, request_id, client_request_id, headers)
            self.record(request, operation, status, principal["client_id"], False)
            return Response.json(status, body, headers=headers, content_type=GRAPH_CONTENT_TYPE)
        status, body, extra, client_id, operation, write = self.graph_call(request, sub, request_id, client_request_id)
        headers.update(extra)
        self.record(request, operation, status, client_id, write)
        if body is None:
            return Response.empty(status, headers)
        return Response.json(status, body, headers=headers, content_type=GRAPH_CONTENT_TYPE)

    @staticmethod
    def _error(exc, request_id, client_request_id, headers):
        merged = dict(headers)
        merged.update(exc.headers)
        return Response.json(exc.status, exc.body(request_id, client_request_id), headers=merged, content_type=GRAPH_CONTENT_TYPE)

    def graph_call(self, request, sub, request_id, client_request_id, principal=None, sleep=True):
        """Run one Graph operation; return (status, body or None, headers, client_id, operation, write).

        ``sleep=False`` (items of a ``$batch``): the caller sleeps the operation's latency, see ``batch``.
        """
        route, match, method_exists = self._match(request.method, sub)
        if route is None:
            operation = "graph.method_not_allowed" if method_exists else "graph.unknown"
        else:
            operation = route.operation
        write = bool(route and route.write)
        if sleep:
            self._sleep(operation)
        client_id = principal["client_id"] if principal else None
        try:
            if principal is None:
                principal = self.authenticate(request)
                client_id = principal["client_id"]
            if route is None:
                if method_exists:
                    raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request uri.")
                segment = [s for s in sub.split("/") if s][-1] if sub.strip("/") else ""
                raise GraphError(400, "BadRequest", "Resource not found for the segment '%s'." % segment)
            fault = self.faults.throttle_or_outage(operation)
            if fault is not None:
                status, retry_after = fault
                raise throttled(retry_after) if status == 429 else unavailable(retry_after)
            owned_only = permissions.evaluate(route.requirement, principal["permissions"])
            if owned_only is None:
                raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
            with self.state.lock:
                status, body = route.handler(Ctx(self, request, principal, owned_only), match)
        except GraphError as exc:
            headers = dict(exc.headers)
            return exc.status, exc.body(request_id, client_request_id), headers, client_id, operation, write
        return status, body, {}, client_id, operation, write

    # -------------------------------------------------------------- $batch
    def batch(self, request, principal):
        """concepts/json-batching.md: <= 20 requests, unique ids, relative urls, headers required with a body, dependsOn -> 424."""
        try:
            body = request.json()
        except BodyError:
            body = None
        if not isinstance(body, dict) or set(body) != {"requests"} or not isinstance(body["requests"], list):
            raise GraphError(400, "BadRequest", "Invalid batch payload format: a JSON object with a 'requests' array is expected.")
        items = body["requests"]
        if not items:
            raise GraphError(400, "BadRequest", "Invalid batch payload format: the 'requests' array is empty.")
        if len(items) > BATCH_LIMIT:
            raise GraphError(400, "BadRequest", "The number of batch requests cannot exceed %d." % BATCH_LIMIT)
        ids = []
        for item in items:
            if not isinstance(item, dict) or set(item) - {"id", "method", "url", "headers", "body", "dependsOn", "atomicityGroup"}:
                raise GraphError(400, "BadRequest", "Invalid batch payload format: unknown property in a request.")
            if not isinstance(item.get("id"), str) or not item["id"]:
                raise GraphError(400, "BadRequest", "Invalid batch payload format: every request needs a string 'id'.")
            if item["id"] in ids:
                raise GraphError(400, "BadRequest", "Invalid batch payload format: request id '%s' is not unique." % item["id"])
            ids.append(item["id"])
            if item.get("method", "").upper() not in ("GET", "POST", "PATCH", "PUT", "DELETE"):
                raise GraphError(400, "BadRequest", "Invalid batch payload format: request '%s' has an invalid method." % item["id"])
            url = item.get("url")
            if not isinstance(url, str) or not url or re.match(r"(?i)^(https?://|/?v1\.0/|/?beta/)", url):
                raise GraphError(400, "BadRequest", "Invalid batch payload format: the url of request '%s' must be relative to the "
                                 "version, e.g. '/users'." % item["id"])
            headers = item.get("headers")
            if headers is not None and (not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values())):
                raise GraphError(400, "BadRequest", "Invalid batch payload format: headers of request '%s' must be an object." % item["id"])
            if "body" in item and not any(k.lower() == "content-type" for k in (headers or {})):
                raise GraphError(400, "BadRequest", "Invalid batch payload format: request '%s' has a body but no Content-Type header." % item["id"])
        for item in items:
            depends = item.get("dependsOn", [])
            if not isinstance(depends, list) or any(d not in ids or d == item["id"] for d in depends):
                raise GraphError(400, "BadRequest", "Invalid batch payload format: dependsOn of request '%s' names an unknown request." % item["id"])
        # Latency: Graph runs the items of a batch without dependsOn in parallel (json-batching.md: a batch should be "fully
        # sequential or fully parallel"; combining requests "can save the application significant network latency"), so
        # such a batch costs the latency of its slowest item; a sequential one (dependsOn) the sum.
        sequential = any(item.get("dependsOn") for item in items)
        delays = []
        results = {}
        responses = []
        pending = list(items)
        while pending:
            progressed = False
            for item in list(pending):
                depends = item.get("dependsOn", [])
                if any(d not in results for d in depends):
                    continue
                pending.remove(item)
                progressed = True
                if any(results[d] >= 400 for d in depends):
                    status, payload, headers = 424, {"error": {"code": "FailedDependency",
                                                               "message": "The request failed because a request it depends on failed."}}, {}
                else:
                    status, payload, headers, delay = self._batch_item(request, item, principal)
                    delays.append(delay)
                results[item["id"]] = status
                entry = {"id": item["id"], "status": status, "headers": headers}
                if payload is not None:
                    entry["body"] = payload
                responses.append(entry)
            if not progressed:
                raise GraphError(400, "BadRequest", "Invalid batch payload format: dependsOn forms a cycle.")
        self._pause((sum(delays) if sequential else max(delays)) if delays else 0.0)
        return 200, {"responses": responses}

    def _batch_item(self, outer, item, principal):
        url = item["url"] if item["url"].startswith("/") else "/" + item["url"]
        path, _mark, raw_query = url.partition("?")
        headers = dict(item.get("headers") or {})
        headers["Authorization"] = outer.headers.get("Authorization")
        body = json.dumps(item["body"]).encode("utf-8") if "body" in item else b""
        inner = Request(item["method"], "/v1.0" + path, raw_query, Headers(headers), body, outer.client_address)
        request_id = new_id()
        sub = graph.normalize_path(urllib.parse.unquote(path))
        if sub.rstrip("/") == "/$batch":
            status, payload, extra, client_id, operation, write = (400, GraphError(400, "BadRequest", "Nested batches are not supported.")
                                                                   .body(request_id, request_id), {}, principal["client_id"], "batch", False)
        else:
            status, payload, extra, client_id, operation, write = self.graph_call(inner, sub, request_id, request_id, principal,
                                                                                  sleep=False)
        self.record(inner, operation, status, client_id, write, in_batch=True)
        response_headers = {"Content-Type": GRAPH_CONTENT_TYPE} if payload is not None else {}
        response_headers.update(extra)
        return status, payload, response_headers, self.faults.latency_seconds(operation)

"""Error types and bodies shared by the emulator's services."""

import datetime
import json
import uuid


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment=None):
    """DateTimeOffset as Graph writes it: ``2025-01-30T00:37:44Z``."""
    return (moment or utc_now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_precise(moment=None):
    return (moment or utc_now()).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_id():
    return str(uuid.uuid4())


class GraphError(Exception):
    """A Graph error response: ``{"error": {"code", "message", "innerError": {...}}}`` (microsoftgraph/microsoft-graph-docs-contrib
    concepts/errors.md, "Error resource type")."""

    def __init__(self, status, code, message, headers=None, inner=None):
        super().__init__("%s %s: %s" % (status, code, message))
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.inner = dict(inner or {})

    def body(self, request_id, client_request_id):
        moment = utc_now()
        inner = {"date": moment.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": request_id, "client-request-id": client_request_id}
        inner.update(self.inner)
        return {"error": {"code": self.code, "message": self.message, "innerError": inner}}


def not_found(object_id):
    # The body of a 404 on a directory object, as Graph answers it (observed; quoted e.g. in
    # hashicorp/terraform-provider-azuread issue #1017).
    return GraphError(404, "Request_ResourceNotFound",
                      "Resource '%s' does not exist or one of its queried reference-property objects are not present." % object_id)


def bad_request(message):
    return GraphError(400, "Request_BadRequest", message)


def sync_unknown_error(inner_code, inner_message, status=400):
    """Synchronization errors wrap the real code as JSON inside ``message`` (observed, not documented; reported in
    microsoftgraph/msgraph-metadata issue #347)."""
    nested = {"error": {"code": inner_code, "message": inner_message, "innerError": {"date": utc_now().strftime("%Y-%m-%dT%H:%M:%S"),
                                                                                     "request-id": new_id()}}}
    return GraphError(status, "UnknownError", json.dumps(nested, separators=(",", ":")))


def throttled(retry_after):
    # The "Sample response" of microsoft-graph-docs-contrib concepts/throttling.md.
    inner = {"code": "429", "message": "Please retry after", "status": "429"}
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    headers["x-ms-throttle-information"] = "ResourceUnitLimitExceeded"  # concepts/throttling-limits.md, identity and access
    return GraphError(429, "TooManyRequests", "Please retry again later.", headers=headers, inner=inner)


def unavailable(retry_after):
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return GraphError(503, "serviceNotAvailable", "The service is temporarily unavailable. Please retry later.", headers=headers)

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors of the Microsoft Graph client and the one place that turns them into messages.

Modules never build messages from raw HTTP responses: module_utils raise ``GraphError`` /
``AuthError`` and the module's single ``try/except`` (``EntraModule.run``) calls
``failure_message(step, err)``.
"""

import contextlib
import json
import re

from ._permissions import permission_hint

REDACTED = "********"
# What to check when Microsoft Graph or the token endpoint could not be reached (transport error codes).
CONNECTION_ADVICE = ("Check graph_endpoint, authority_host and cloud, that this host can reach them (DNS, firewall) and the "
                     "proxy settings (HTTPS_PROXY, NO_PROXY).")

# Keys under which services nest the real error inside a JSON "message" (case-insensitive).
_INNER_CODE_KEYS = ("code", "errorcode", "error_code")
_INNER_MESSAGE_KEYS = ("message", "error_description", "errormessage", "description")


def secret_forms(secret):
    """Every form in which ``secret`` can show up in a message: as it is and stripped, JSON-escaped (a Graph 400 echoing
    the request body), ``repr``-escaped (a Python traceback of a header value) and URL-encoded (a query string).
    Longest first, so that a longer form is replaced before a shorter one inside it. Secrets under 4 characters are
    not redacted (they would blank out ordinary words)."""
    import json as _json
    from urllib.parse import quote, quote_plus

    forms = set()
    for value in (str(secret), str(secret).strip()):
        if len(value) < 4:
            continue
        forms.update((value, _json.dumps(value)[1:-1], _json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1],
                      quote(value, safe=""), quote_plus(value, safe="")))
        try:
            forms.add(repr(value.encode("utf-8"))[2:-1])
        except UnicodeError:
            pass
    return sorted(forms, key=len, reverse=True)


def _forms_of(secrets):
    """Every form of every secret (``secret_forms``), longest first, computed once per redaction."""
    forms = set()
    for secret in secrets or ():
        if secret:
            forms.update(secret_forms(secret))
    return sorted(forms, key=len, reverse=True)


def _replace_forms(text, forms):
    for form in forms:
        text = text.replace(form, REDACTED)
    return text


def redact(text, secrets):
    """Replace every occurrence of each secret (in every form of ``secret_forms``) in ``text`` with ``********``."""
    if text is None:
        return None
    return _replace_forms(str(text), _forms_of(secrets))


def redact_value(value, secrets):
    """``redact`` applied to every string inside ``value`` (dicts, lists and tuples walked; keys too); the forms of the
    secrets are computed once for the whole value."""
    forms = _forms_of(secrets)

    def walk(item):
        if isinstance(item, str):
            return _replace_forms(item, forms)
        if isinstance(item, dict):
            return dict((walk(key), walk(entry)) for key, entry in item.items())
        if isinstance(item, (list, tuple)):
            return [walk(entry) for entry in item]
        return item

    return walk(value)


CONTROL_CHARACTER_RE = re.compile("[\x00-\x1f\x7f]")


def clean_secret(option, value):
    """The secret option's value without surrounding whitespace (a vault value or a YAML ``|`` block ends with a
    newline: the user meant the value without it). Raises ``ValueError`` naming the option, never the value, when a
    control character is left inside it (no HTTP header and no token can carry one)."""
    if value is None:
        return None
    value = str(value).strip()
    if CONTROL_CHARACTER_RE.search(value):
        raise ValueError("%s holds a control character (a line break, tab or other non-printing character) inside its value, "
                         "which no token or secret can contain: check how it is stored (the value is not shown)" % option)
    return value


def _ci_get(mapping, keys):
    """Return the first non-empty value of ``mapping`` whose key matches one of ``keys`` ignoring case."""
    lowered = dict((str(k).lower(), v) for k, v in mapping.items())
    for key in keys:
        value = lowered.get(key)
        if value not in (None, ""):
            return value
    return None


def _json_in_text(text):
    """Return the first JSON object embedded in ``text`` (the whole text or starting at a ``{``), else None."""
    if not isinstance(text, str) or "{" not in text:
        return None
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, dummy = decoder.raw_decode(text[start:])
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


def unwrap_message(code, message):
    """Unwrap the JSON document that the synchronization service nests in ``UnknownError`` messages.

    Graph reports many synchronization failures as ``{"error": {"code": "UnknownError", "message":
    "{\\"error\\":{\\"code\\":\\"InvalidNotificationSettings\\",...}}"}}`` (observed behaviour of the
    synchronization API, not documented; reported in microsoftgraph/msgraph-metadata issue #347; other services use
    ``{"Code":..,"Message":..}`` or ``{"errorCode":..,"message":..}``).
    Returns ``(code, message, outer_code)``: the inner code and message when one is found, with
    ``outer_code`` set to the wrapping code, else the inputs unchanged and ``outer_code`` None.
    """
    outer_code = None
    for dummy in range(3):  # nested at most a few levels deep in practice
        if code != "UnknownError":
            break
        document = _json_in_text(message)
        if document is None:
            break
        inner = document
        nested = _ci_get(document, ("error",))
        if isinstance(nested, dict):
            inner = nested
        inner_code = _ci_get(inner, _INNER_CODE_KEYS)
        inner_message = _ci_get(inner, _INNER_MESSAGE_KEYS)
        if inner_code is None and inner_message is None:
            break
        outer_code = outer_code or code
        code = str(inner_code) if inner_code is not None else code
        message = str(inner_message) if inner_message is not None else message
    return code, message, outer_code


class CollectionError(Exception):
    """Base of every error that module_utils raise on purpose (``GraphError``, ``AuthError``, ``CloudflareError``, the
    resources' own errors): ``_runner.ModuleRunner`` turns one into ``fail_json``; any other exception is reported as
    unexpected.

    Every error has ``message``, ``step`` (what was being done), ``status`` (HTTP, None without an answer), ``code``
    (the service's error code), ``request_id`` (Graph ``request-id`` or Cloudflare ``cf-ray``) and ``extra`` (more
    ``fail_json`` keys). ``own_message`` errors (problems found by our own logic: duplicates, unresolvable names) are
    reported with their message as it is; the others as "Failed to <step>: <code>: <message> (request-id ...)".
    """

    own_message = False
    step = None
    status = None
    code = None
    request_id = None

    def __init__(self, message, step=None, **extra):
        super(CollectionError, self).__init__(message)
        self.message = message
        if step:
            self.step = step
        self.extra = extra


class ReportedError(CollectionError):
    """A problem our own logic found (bad input, duplicates, a name that matches nothing), raised before any write unless
    it says otherwise; its message is the whole sentence and ``extra`` go to fail_json."""

    own_message = True


class InputError(ReportedError, ValueError):
    """An option value that cannot work, found before anything is sent."""


class GraphError(CollectionError):
    """A failed Microsoft Graph call (or a transport failure while making one).

    Attributes: ``status`` (HTTP status, None for connection errors), ``code`` (Graph ``error.code``,
    unwrapped), ``message`` (unwrapped), ``outer_code`` (the wrapping code when unwrapped, e.g.
    ``UnknownError``), ``request_id``, ``client_request_id``, ``date``, ``retry_after`` (seconds, or
    None), ``method``, ``url``, ``attempts`` (HTTP attempts made) and ``step`` (what we were doing,
    set by ``error_step``).
    """

    def __init__(self, message, status=None, code=None, request_id=None, date=None, retry_after=None,
                 outer_code=None, client_request_id=None, method=None, url=None, attempts=None, details=None):
        code, message, unwrapped_outer = unwrap_message(code, message)
        super(GraphError, self).__init__(message)
        self.status = status
        self.code = code
        self.outer_code = outer_code or unwrapped_outer
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.date = date
        self.retry_after = retry_after
        self.method = method
        self.url = url
        self.attempts = attempts
        self.details = details or []
        self.step = None

    def __str__(self):
        parts = []
        if self.status is not None:
            parts.append("HTTP %s" % self.status)
        if self.code:
            parts.append(str(self.code))
        head = " ".join(parts)
        text = "%s: %s" % (head, self.message) if head else str(self.message)
        if self.request_id:
            text += " (request-id %s)" % self.request_id
        return text

    @classmethod
    def from_body(cls, status, body, headers=None, method=None, url=None, retry_after=None, secrets=None):
        """Build the error from a Graph error body (dict, JSON text or other text) and response headers."""
        headers = headers or {}
        lowered_headers = dict((str(k).lower(), v) for k, v in headers.items())
        document = body
        if isinstance(body, (bytes, bytearray)):
            body = body.decode("utf-8", "replace")
            document = body
        if isinstance(body, str):
            try:
                document = json.loads(body) if body.strip() else None
            except ValueError:
                document = None
        code = message = request_id = client_request_id = date = None
        details = []
        if isinstance(document, dict) and isinstance(document.get("error"), dict):
            error = document["error"]
            code = error.get("code")
            message = error.get("message")
            details = [d for d in error.get("details") or [] if isinstance(d, dict)]
            inner = error.get("innerError") or error.get("innererror") or {}
            if isinstance(inner, dict):
                request_id = inner.get("request-id")
                client_request_id = inner.get("client-request-id")
                date = inner.get("date")
        if message is None:
            if isinstance(body, str) and body.strip():
                message = " ".join(body.split())[:300]
            else:
                message = "HTTP %s with no error details in the response" % status
        request_id = request_id or lowered_headers.get("request-id")
        client_request_id = client_request_id or lowered_headers.get("client-request-id")
        date = date or lowered_headers.get("date")
        return cls(
            redact(message, secrets), status=status, code=code, request_id=request_id, date=date,
            retry_after=retry_after, client_request_id=client_request_id, method=method, url=url, details=details,
        )

    @classmethod
    def from_response(cls, response, retry_after=None, secrets=None):
        """Build the error from a ``requests.Response``."""
        request = getattr(response, "request", None)
        return cls.from_body(
            response.status_code, response.content, headers=response.headers,
            method=getattr(request, "method", None), url=getattr(request, "url", None) or response.url,
            retry_after=retry_after, secrets=secrets,
        )

    @classmethod
    def from_batch_item(cls, item, method=None, url=None):
        """Build the error from one ``$batch`` response item ``{id, status, headers, body}``."""
        return cls.from_body(item.get("status"), item.get("body"), headers=item.get("headers") or {}, method=method, url=url)


class AuthError(CollectionError):
    """Getting a Microsoft Graph access token failed.

    ``message`` keeps the identity platform's text (``AADSTS...`` codes included); it never holds a
    client secret, certificate password or token (callers pass their secrets to be redacted).
    ``code`` is the OAuth error (``invalid_client``...) when there is one.
    """

    def __init__(self, message, code=None, correlation_id=None, secrets=None):
        message = redact(message, secrets)
        super(AuthError, self).__init__(message)
        self.code = code
        self.correlation_id = correlation_id

    def __str__(self):
        return "%s: %s" % (self.code, self.message) if self.code else str(self.message)


@contextlib.contextmanager
def error_step(step):
    """Tag any GraphError/AuthError raised inside the block with ``step`` (unless already tagged).

    ``EntraModule.run`` uses the tag for "Failed to <step>: ..." messages::

        with error_step("create synchronization job"):
            client.post(...)
    """
    try:
        yield
    except (GraphError, AuthError) as err:
        if not err.step:
            err.step = step
        raise


def failure_message(step, err):
    """Return ``"Failed to <step>: <code>: <message> (request-id <id>)"``.

    For HTTP 401/403 the message also says which Microsoft Graph permission(s) the step needs
    (from ``_permissions``); an unknown step gets the general advice.
    """
    if getattr(err, "own_message", False):
        return err.message
    step = step or getattr(err, "step", None) or "call Microsoft Graph"
    if isinstance(err, AuthError):
        text = "Failed to %s: could not get a Microsoft Graph access token: %s" % (step, err)
        if err.code in ("ConnectionError", "Timeout"):
            text += " " + CONNECTION_ADVICE
        return text
    if not isinstance(err, GraphError):
        return "Failed to %s: %s" % (step, err)
    code = err.code or ("HTTP %s" % err.status if err.status is not None else "Error")
    text = "Failed to %s: %s: %s" % (step, code, err.message)
    if err.request_id:
        text += " (request-id %s)" % err.request_id
    if err.attempts and err.attempts > 1:
        text += " [gave up after %d attempts]" % err.attempts
    if err.status is None and err.code in ("ConnectionError", "Timeout"):
        text += " " + CONNECTION_ADVICE
    if err.status in (401, 403):
        text += " " + permission_hint(step, err.status)
    return text


def failure_details(err):
    """Return the extra ``fail_json`` keys for an error: ``status``, ``error_code``, ``request_id`` (+ ``date``)."""
    details = {
        "status": getattr(err, "status", None),
        "error_code": getattr(err, "code", None),
        "request_id": getattr(err, "request_id", None),
    }
    if getattr(err, "date", None):
        details["date"] = err.date
    if getattr(err, "outer_code", None):
        details["outer_error_code"] = err.outer_code
    return details

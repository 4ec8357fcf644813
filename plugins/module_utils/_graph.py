# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``GraphClient``: JSON requests against ``<graph_endpoint>/v1.0`` with paging, OData quoting and ``$batch``.

Graph behaviour implemented here (microsoft-graph-docs-contrib concepts/paging.md, json-batching.md,
query-parameters.md, errors.md):

* collections are followed through ``@odata.nextLink`` verbatim, re-sending our headers on each page
  (``ConsistencyLevel`` is not carried over by the link);
* ``$filter`` string literals double single quotes (``O'Brien`` -> ``'O''Brien'``) and the query
  string is percent-encoded (``%20`` for spaces, ``%2B`` for ``+``);
* ``$batch`` takes at most 20 requests, URLs relative to the version, answers in any order with
  one status per request; throttled items (429) are retried alone after their own Retry-After;
* errors carry ``request-id``/``date`` from ``error.innerError`` or else from the response headers.
"""

import json
import uuid

from urllib.parse import quote, urlencode, urlparse

from ._errors import GraphError
from ._transport import IDEMPOTENT_METHODS, parse_retry_after

BATCH_LIMIT = 20
MAX_PAGES = 10000


def odata_quote(value):
    """Return ``value`` as an OData string literal: ``O'Brien`` -> ``'O''Brien'``."""
    return "'%s'" % str(value).replace("'", "''")


def odata_literal(value):
    """An OData literal for a Python value: strings quoted, booleans ``true``/``false``, None ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return odata_quote(value)


def filter_eq(*mappings, **fields):
    """Build ``a eq 'x' and b eq 'y'`` from keyword arguments (and dicts, for names like ``servicePrincipal/id``)."""
    pairs = []
    for mapping in mappings:
        pairs.extend(mapping.items())
    pairs.extend(fields.items())
    if not pairs:
        raise ValueError("filter_eq needs at least one field")
    return " and ".join("%s eq %s" % (name, odata_literal(value)) for name, value in pairs)


def encode_query(params):
    """Percent-encode query parameters for Graph (``$`` and OData punctuation kept readable, spaces as %20)."""
    if not params:
        return ""
    items = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        items.append((key, str(value)))
    return urlencode(items, quote_via=quote, safe="$'(),/:@")


class GraphClient:
    """Microsoft Graph v1.0 client. See the module docstring.

    ``token_provider`` is an object with ``get_token()`` (and optionally ``invalidate(token)``
    returning True when a fresh token can be fetched), or a callable returning a token. A 401 with
    a cached token invalidates it once and retries. ``request_count`` counts the HTTP requests
    sent by this client (the transport's ``attempts`` also counts retries).
    """

    def __init__(self, transport, token_provider, graph_endpoint, api_version="v1.0"):
        self.transport = transport
        self.token_provider = token_provider
        self.graph_endpoint = graph_endpoint.rstrip("/")
        self.base_url = "%s/%s" % (self.graph_endpoint, api_version)
        self._host = urlparse(self.graph_endpoint).netloc.lower()
        self.request_count = 0
        self._token = None
        self.tokens = []  # every access token this client sent (secrets the module runner redacts)
        self.last_attempts = 0  # HTTP attempts the last request took (more than 1: it was retried)

    def _get_token(self):
        provider = self.token_provider
        getter = getattr(provider, "get_token", None)
        self._token = getter() if getter is not None else provider()
        if self._token not in self.tokens:
            self.tokens.append(self._token)
        return self._token

    def _invalidate(self, token):
        invalidate = getattr(self.token_provider, "invalidate", None)
        return bool(invalidate(token)) if invalidate is not None else False

    def url(self, path, params=None):
        """Absolute URL for ``path`` (relative to ``base_url``, or an absolute URL on the Graph host)."""
        if "://" in path.split("?", 1)[0]:
            parts = urlparse(path)
            if parts.scheme.lower() != "https" or parts.netloc.lower() != self._host:
                # An @odata.nextLink (or any follow-up URL) gets the bearer token: only over https, only to Graph.
                raise GraphError("Refusing to send the Graph token to %s://%s (only https://%s is trusted)"
                                 % (parts.scheme, parts.netloc, self._host), code="ForeignHost", url="%s://%s" % (parts.scheme, parts.netloc))
            url = path
        else:
            url = "%s/%s" % (self.base_url, path.lstrip("/"))
        query = encode_query(params)
        if query:
            url += ("&" if "?" in url else "?") + query
        return url

    def _send(self, method, url, body=None, headers=None, idempotent=None):
        """Send one request (refreshing the token once on 401); return the response or raise GraphError."""
        retried_401 = False
        while True:
            token = self._get_token()
            request_headers = {"Accept": "application/json", "client-request-id": str(uuid.uuid4())}
            request_headers.update(headers or {})
            request_headers["Authorization"] = "Bearer %s" % token
            data = None
            if body is not None:
                request_headers.setdefault("Content-Type", "application/json")
                data = json.dumps(body).encode("utf-8")
            self.request_count += 1
            response = self.transport.request(method, url, headers=request_headers, data=data, idempotent=idempotent)
            self.last_attempts = getattr(response, "retry_attempts", 1)
            if response.status_code == 401 and not retried_401 and self._invalidate(token):
                retried_401 = True
                response.close()
                continue
            if 300 <= response.status_code < 400:
                # Never a success, and never followed: the request carried the bearer token.
                response.close()
                raise GraphError("Microsoft Graph answered HTTP %s, a redirect (not followed: the request carries the access "
                                 "token). Check graph_endpoint and the proxy settings" % response.status_code,
                                 status=response.status_code, code="UnexpectedRedirect", method=method,
                                 url=url.split("?", 1)[0], request_id=response.headers.get("request-id"))
            if response.status_code >= 400:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                error = GraphError.from_response(response, retry_after=retry_after, secrets=[token])
                error.attempts = getattr(response, "retry_attempts", None)
                if not error.client_request_id:
                    error.client_request_id = request_headers["client-request-id"]
                raise error
            return response

    @staticmethod
    def _parse(response):
        if response.status_code == 204 or not response.content:
            return None
        content_type = response.headers.get("Content-Type", "")
        if "json" in content_type or response.content[:1] in (b"{", b"["):
            try:
                return response.json()
            except ValueError:
                raise GraphError("Graph answered HTTP %s with a body that is not valid JSON" % response.status_code,
                                 status=response.status_code, code="InvalidResponse",
                                 request_id=response.headers.get("request-id"))
        return response.text

    def request(self, method, path, params=None, body=None, headers=None, idempotent=None):
        """Send ``method path`` and return the parsed JSON (None for 204 / empty). Raises GraphError on non-2xx."""
        response = self._send(method.upper(), self.url(path, params), body=body, headers=headers, idempotent=idempotent)
        return self._parse(response)

    def get(self, path, params=None, headers=None, select=None):
        """GET; ``select`` (list of property names) becomes ``$select``."""
        return self.request("GET", path, params=self._with_select(params, select), headers=headers)

    def post(self, path, body=None, headers=None, idempotent=False):
        """POST (not retried on 5xx unless ``idempotent=True``, e.g. for actions that are safe to repeat)."""
        return self.request("POST", path, body=body, headers=headers, idempotent=idempotent)

    def patch(self, path, body, headers=None):
        return self.request("PATCH", path, body=body, headers=headers)

    def put(self, path, body, headers=None):
        return self.request("PUT", path, body=body, headers=headers)

    def delete(self, path, headers=None):
        return self.request("DELETE", path, headers=headers)

    @staticmethod
    def _with_select(params, select):
        if not select:
            return params
        params = dict(params or {})
        params["$select"] = ",".join(select) if isinstance(select, (list, tuple)) else str(select)
        return params

    def iter_pages(self, path, params=None, headers=None, select=None):
        """Yield each page (the parsed JSON document) of a collection, following ``@odata.nextLink``."""
        url = self.url(path, self._with_select(params, select))
        seen = set()
        for dummy in range(MAX_PAGES):
            page = self._parse(self._send("GET", url, headers=headers)) or {}
            if not isinstance(page, dict):
                raise GraphError("Expected a JSON collection from %s" % url, code="InvalidResponse", url=url)
            yield page
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            if next_link in seen:
                raise GraphError("Graph returned the same @odata.nextLink twice; stopping to avoid a loop",
                                 code="PagingLoop", url=next_link)
            seen.add(next_link)
            url = self.url(next_link)
        raise GraphError("More than %d pages; stopping" % MAX_PAGES, code="TooManyPages", url=url)

    def list(self, path, params=None, headers=None, select=None, max_items=None):
        """All items of a collection (``value`` of every page); stops early after ``max_items``."""
        items = []
        for page in self.iter_pages(path, params=params, headers=headers, select=select):
            items.extend(page.get("value") or [])
            if max_items is not None and len(items) >= max_items:
                return items[:max_items]
        return items

    def _relative(self, url):
        """A ``$batch`` item URL: relative to the version (``/users``), whatever form the caller used."""
        if url.startswith(self.base_url):
            url = url[len(self.base_url):]
        return "/" + url.lstrip("/")

    def batch(self, requests, max_attempts=5):
        """Run requests through ``$batch``; return ``[{id, status, headers, body}]`` in request order.

        Each request is ``{"method", "url", "body"?, "headers"?, "id"?, "dependsOn"?}``; ids default to
        the position ("1", "2", ...). Chunks of at most 20. Items answered 429 (or 503 with a
        Retry-After), and idempotent ones (GET, PUT, DELETE...) answered 500/502/503/504, are sent again, alone,
        after the largest Retry-After among them (back-off when absent), at most ``max_attempts`` times in all
        and within the transport's deadline; other failures are returned as they are (check each ``status``;
        ``GraphError.from_batch_item``).
        """
        prepared = []
        for index, item in enumerate(requests):
            entry = {"id": str(item.get("id") or index + 1), "method": item.get("method", "GET").upper(),
                     "url": self._relative(item["url"])}
            if item.get("body") is not None:
                entry["body"] = item["body"]
            headers = dict(item.get("headers") or {})
            if "body" in entry and not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
            if headers:
                entry["headers"] = headers
            if item.get("dependsOn"):
                entry["dependsOn"] = [str(d) for d in item["dependsOn"]]
            prepared.append(entry)
        ids = [entry["id"] for entry in prepared]
        if len(set(ids)) != len(ids):
            raise ValueError("batch request ids must be unique")
        results = {}
        for start in range(0, len(prepared), BATCH_LIMIT):
            results.update(self._batch_chunk(prepared[start:start + BATCH_LIMIT], max_attempts))
        return [results[i] for i in ids]

    def _batch_chunk(self, chunk, max_attempts):
        results = {}
        pending = list(chunk)
        started = self.transport.clock()
        attempt = 0
        while pending:
            attempt += 1
            done_ids = set(results) - set(entry["id"] for entry in pending)
            sent = []
            for entry in pending:
                entry = dict(entry)
                if entry.get("dependsOn"):
                    # A dependency answered in an earlier round is not in this batch: drop it.
                    entry["dependsOn"] = [d for d in entry["dependsOn"] if d not in done_ids]
                    if not entry["dependsOn"]:
                        del entry["dependsOn"]
                sent.append(entry)
            idempotent = all(entry["method"] in IDEMPOTENT_METHODS for entry in sent)
            document = self.request("POST", "$batch", body={"requests": sent}, idempotent=idempotent) or {}
            answered = {}
            for response in document.get("responses") or []:
                answered[str(response.get("id"))] = {
                    "id": str(response.get("id")), "status": response.get("status"),
                    "headers": response.get("headers") or {}, "body": response.get("body"),
                }
            retry = []
            waits = []
            for entry in pending:
                item = answered.get(entry["id"])
                if item is None:
                    item = {"id": entry["id"], "status": None, "headers": {},
                            "body": {"error": {"code": "MissingBatchResponse", "message": "Graph returned no response for this request"}}}
                results[entry["id"]] = item
                headers = dict((str(k).lower(), v) for k, v in item["headers"].items())
                retry_after = parse_retry_after(headers.get("retry-after"), now=self.transport.now())
                wait = self.transport.retry.delay(item["status"], retry_after, attempt, entry["method"] in IDEMPOTENT_METHODS,
                                                  self.transport.rand, batch_item=True)
                if wait is not None:
                    retry.append(entry)
                    waits.append(wait)
            if not retry or attempt >= max_attempts:
                break
            delay = max(waits)
            if self.transport.retry.exhausted(attempt, True, self.transport.clock() - started, delay):
                break
            self.transport.sleep(delay)
            self.transport.slept += delay
            pending = retry
        return results


def batch_get(client, reads, again=None):
    """GET independent resources with one ``$batch`` (chunks of 20) instead of one request each.

    ``reads`` is a list of ``(path, params)`` or ``(path, params, step)``. Returns ``[(body, error)]`` in the same
    order, ``error`` being the GraphError of a failed read (else None, tagged with ``step`` when given); throttled
    items were already retried by ``GraphClient.batch``. A collection page with an ``@odata.nextLink`` is completed
    with plain GETs, so ``body["value"]`` holds every item. A single read is sent as a plain GET. When the ``$batch``
    request itself answers an HTTP error, each read is sent on its own; connection failures (no answer at all)
    propagate. ``again(error)`` (optional) says which failed items to read again on their own, as plain GETs with the
    transport's retries: the one place where "try ``$batch``, re-read the failures one by one" is written.
    """
    reads = [(read[0], read[1], read[2] if len(read) > 2 else None) for read in reads]
    answers = None
    if len(reads) > 1:
        try:
            items = client.batch([{"method": "GET", "url": "%s?%s" % (path, encode_query(params)) if params else path}
                                  for path, params, dummy in reads])
        except GraphError as err:
            if err.status is None:
                raise
            items = None
        if items is not None:
            answers = []
            for (path, dummy, step), item in zip(reads, items):
                error = batch_error(item, step_url=path)
                if error is not None and step:
                    error.step = step
                answers.append((_all_pages(client, item.get("body")) if error is None else None, error))
    if answers is None:
        return [_plain_get(client, path, params, step) for path, params, step in reads]
    return [_plain_get(client, path, params, step) if error is not None and again is not None and again(error) else (body, error)
            for (path, params, step), (body, error) in zip(reads, answers)]


def _plain_get(client, path, params, step):
    """``(body, None)`` or ``(None, GraphError)`` of one GET (all pages), the error tagged with ``step``."""
    try:
        return _all_pages(client, client.get(path, params=params)), None
    except GraphError as err:
        if err.status is None:
            raise
        if step and not err.step:
            err.step = step
        return None, err


def _all_pages(client, body):
    """``body`` with the items of the pages behind its ``@odata.nextLink`` added to ``value``."""
    if not isinstance(body, dict) or not body.get("@odata.nextLink"):
        return body
    body = dict(body)
    values = list(body.get("value") or [])
    for page in client.iter_pages(body.pop("@odata.nextLink")):
        values.extend(page.get("value") or [])
    body["value"] = values
    return body


def batch_error(item, step_url=None):
    """A GraphError for a failed ``$batch`` item (None when the item succeeded)."""
    status = item.get("status")
    if status is not None and 200 <= status < 300:
        return None
    return GraphError.from_batch_item(item, url=step_url)

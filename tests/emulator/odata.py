"""OData query options as Microsoft Graph v1.0 applies them: $filter, $select, $top, $skiptoken, $count, $orderby.

Sources (paths in microsoftgraph/microsoft-graph-docs-contrib): directory objects, api-reference/v1.0/api/serviceprincipal-list.md
and application-list.md (eq on displayName/appId/applicationTemplateId) and concepts/aad-advanced-queries.md (advanced
queries need ``ConsistencyLevel: eventual`` + ``$count=true``); ``''`` escapes a quote in a string literal (OASIS OData
v4.01 URL Conventions); provisioning logs, api-reference/v1.0/api/provisioningobjectsummary-list.md (eq, contains, gt, lt,
case-sensitive, $orderby, $top, $skiptoken; no $count: CountRestrictions of microsoftgraph/msgraph-metadata
schemas/v1.0-Prod.csdl); paging, concepts/paging.md (``@odata.nextLink`` is a full URL with ``$skiptoken``; headers
are not carried over; ``@odata.count`` on the first page only).
"""

import base64
import hashlib
import re
import urllib.parse

from .errors import GraphError

ADVANCED_HINT = ("Operator '%s' is not supported because the required parameters might be missing. Try adding $count with a "
                 "value of true and the ConsistencyLevel header with a value of eventual.")
_TOKEN_RE = re.compile(r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<punct>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_/.]*)"
                       r"|(?P<bare>[0-9A-Fa-f][0-9A-Za-z:.+\-]*))")
COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
FUNCTIONS = ("startswith", "endswith", "contains")


def _bad_filter(detail):
    return GraphError(400, "BadRequest", "Invalid filter clause: %s" % detail)


def tokenize(text):
    tokens = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise _bad_filter("syntax error at position %d in '%s'." % (pos, text))
        pos = match.end()
        for kind in ("string", "punct", "word", "bare"):
            if match.group(kind) is not None:
                tokens.append((kind, match.group(kind)))
                break
    return tokens


def _literal(kind, value):
    if kind == "string":
        return value[1:-1].replace("''", "'")
    if kind == "word":
        lowered = value.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered == "null":
            return None
        raise _bad_filter("'%s' is not a literal; string literals are quoted with single quotes." % value)
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    return value  # unquoted GUID / DateTimeOffset


def parse_filter(text):
    """Parse a conjunction of clauses; return ``[(operator, property, value)]``.

    Operators: ``eq ne gt ge lt le`` and the functions ``startswith endswith contains``. ``or``/``not`` are refused
    (the emulator's subset; Graph accepts some of them as advanced queries).
    """
    tokens = tokenize(text)
    clauses = []
    index = 0

    def need(position):
        if position >= len(tokens):
            raise _bad_filter("unexpected end of expression '%s'." % text)
        return tokens[position]

    while True:
        kind, value = need(index)
        if kind == "punct" and value == "(":
            raise _bad_filter("parenthesised groups are not supported by the emulator in '%s'." % text)
        if kind != "word":
            raise _bad_filter("expected a property name at '%s'." % value)
        if value.lower() in FUNCTIONS and index + 1 < len(tokens) and tokens[index + 1] == ("punct", "("):
            prop_kind, prop = need(index + 2)
            comma = need(index + 3)
            lit_kind, lit = need(index + 4)
            close = need(index + 5)
            if prop_kind != "word" or comma != ("punct", ",") or close != ("punct", ")"):
                raise _bad_filter("malformed function call %s(...) in '%s'." % (value, text))
            clauses.append((value.lower(), prop, _literal(lit_kind, lit)))
            index += 6
        else:
            op_kind, operator = need(index + 1)
            lit_kind, lit = need(index + 2)
            if op_kind != "word" or operator.lower() not in COMPARISONS:
                raise _bad_filter("unsupported operator '%s' in '%s'." % (operator, text))
            clauses.append((operator.lower(), value, _literal(lit_kind, lit)))
            index += 3
        if index >= len(tokens):
            return clauses
        kind, value = tokens[index]
        if kind == "word" and value.lower() == "and":
            index += 1
            continue
        if kind == "word" and value.lower() in ("or", "not"):
            raise GraphError(400, "Request_UnsupportedQuery", "The emulator supports only 'and' between filter clauses.")
        raise _bad_filter("unexpected '%s' in '%s'." % (value, text))


def get_path(obj, path):
    for part in path.split("/"):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _matches(operator, actual, expected, case_sensitive):
    if isinstance(actual, str) and isinstance(expected, str) and not case_sensitive:
        actual, expected = actual.lower(), expected.lower()
    if operator == "eq":
        return actual == expected
    if operator == "ne":
        return actual != expected
    if operator in ("startswith", "endswith", "contains"):
        if not isinstance(actual, str) or not isinstance(expected, str):
            return False
        return {"startswith": actual.startswith, "endswith": actual.endswith, "contains": actual.__contains__}[operator](expected)
    if actual is None or expected is None:
        return False
    actual, expected = str(actual), str(expected)
    return {"gt": actual > expected, "ge": actual >= expected, "lt": actual < expected, "le": actual <= expected}[operator]


class Collection:
    """How one Graph collection supports query options.

    ``filterable`` maps property path -> set of operators; ``advanced`` operators additionally need
    ``ConsistencyLevel: eventual`` and ``$count=true`` (directory objects, concepts/aad-advanced-queries.md).
    """

    def __init__(self, type_name, properties, filterable, advanced=(), case_sensitive=False, max_top=999,
                 default_select=None, countable=True, orderby=()):
        self.type_name = type_name
        self.properties = properties
        self.filterable = filterable
        self.advanced = frozenset(advanced)
        self.case_sensitive = case_sensitive
        self.max_top = max_top
        self.default_select = default_select
        self.countable = countable
        self.orderby = orderby


class Query:
    """Parsed query options of one request."""

    def __init__(self, raw_query, headers):
        self.raw_query = raw_query
        self.params = {}
        for key, value in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
            if key in self.params:
                raise GraphError(400, "BadRequest", "Query option '%s' was specified more than once, but it must be specified at most once." % key)
            self.params[key] = value
        self.eventual = (headers.get("ConsistencyLevel") or "").lower() == "eventual"
        for key in self.params:
            if key.startswith("$") and key not in ("$filter", "$select", "$top", "$skiptoken", "$count", "$orderby"):
                if key in ("$expand", "$search", "$skip", "$format", "$apply"):
                    raise GraphError(400, "Request_UnsupportedQuery", "The query option '%s' is not supported by the emulator." % key)
                raise GraphError(400, "BadRequest", "The query parameter '%s' is not supported." % key)

    def select(self, collection):
        raw = self.params.get("$select")
        if raw is None:
            return collection.default_select
        fields = [item.strip() for item in raw.split(",") if item.strip()]
        for field in fields:
            if field not in collection.properties:
                raise GraphError(400, "Request_BadRequest",
                                 "Could not find a property named '%s' on type 'microsoft.graph.%s'." % (field, collection.type_name))
        return fields

    def top(self, collection):
        raw = self.params.get("$top")
        if raw is None:
            return None
        if not re.fullmatch(r"\d+", raw) or not 1 <= int(raw) <= collection.max_top:
            raise GraphError(400, "Request_BadRequest",
                             "Invalid page size specified: '%s'. Must be between 1 and %d inclusive." % (raw, collection.max_top))
        return int(raw)

    def filter(self, collection, items):
        raw = self.params.get("$filter")
        if raw is None:
            return items
        clauses = parse_filter(raw)
        for operator, prop, _value in clauses:
            allowed = collection.filterable.get(prop)
            if allowed is None or (operator not in allowed and operator not in collection.advanced):
                raise GraphError(400, "Request_UnsupportedQuery",
                                 "Unsupported or invalid query filter clause specified for property '%s' of resource '%s'."
                                 % (prop, collection.type_name[0].upper() + collection.type_name[1:]))
            if operator in collection.advanced and operator not in allowed and not (self.eventual and self.params.get("$count") == "true"):
                raise GraphError(400, "Request_UnsupportedQuery", ADVANCED_HINT % operator)
        return [item for item in items
                if all(_matches(op, get_path(item, prop), value, collection.case_sensitive) for op, prop, value in clauses)]

    def count_requested(self, collection):
        raw = self.params.get("$count")
        if raw is None:
            return False
        if raw not in ("true", "false"):
            raise GraphError(400, "BadRequest", "Invalid value '%s' for $count; expected true or false." % raw)
        if raw == "true" and not collection.countable:
            raise GraphError(400, "BadRequest", "$count is not supported on this resource.")
        if raw == "true" and not self.eventual:
            # Directory objects: $count is an advanced query (concepts/aad-advanced-queries.md).
            raise GraphError(400, "Request_BadRequest", "$count is not currently supported.")
        return raw == "true"

    def order(self, collection, items):
        raw = self.params.get("$orderby")
        if raw is None:
            return items
        parts = raw.split()
        if not parts or parts[0] not in collection.orderby or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise GraphError(400, "Request_UnsupportedQuery", "Unsupported $orderby '%s'." % raw)
        return sorted(items, key=lambda item: str(get_path(item, parts[0]) or ""), reverse=len(parts) == 2 and parts[1] == "desc")


def _query_fingerprint(raw_query):
    kept = [(k, v) for k, v in urllib.parse.parse_qsl(raw_query, keep_blank_values=True) if k != "$skiptoken"]
    return hashlib.sha256(urllib.parse.urlencode(kept).encode("utf-8")).hexdigest()[:10]


def encode_skiptoken(offset, raw_query):
    raw = ("RFNwdAo:%d:%s" % (offset, _query_fingerprint(raw_query))).encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_skiptoken(token, raw_query):
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        marker, offset, fingerprint = decoded.split(":")
        if marker != "RFNwdAo" or fingerprint != _query_fingerprint(raw_query):
            raise ValueError(decoded)
        return int(offset)
    except ValueError:
        raise GraphError(400, "Request_BadRequest", "The specified page token value has expired and can no longer be included in your request.") from None


def project(item, fields):
    if fields is None:
        return dict(item)
    return {field: item.get(field) for field in fields}


def list_response(items, query, collection, base_url, path, context, page_size):
    """Apply filter/order/select/top/paging; return the response body dict."""
    items = query.filter(collection, items)
    items = query.order(collection, items)
    want_count = query.count_requested(collection)
    fields = query.select(collection)
    size = query.top(collection) or page_size
    offset = 0
    token = query.params.get("$skiptoken")
    if token is not None:
        offset = decode_skiptoken(token, query.raw_query)
    page = items[offset:offset + size]
    body = {"@odata.context": context}
    if want_count and token is None:
        body["@odata.count"] = len(items)
    if offset + size < len(items):
        kept = [(k, v) for k, v in urllib.parse.parse_qsl(query.raw_query, keep_blank_values=True) if k != "$skiptoken"]
        kept.append(("$skiptoken", encode_skiptoken(offset + size, query.raw_query)))
        body["@odata.nextLink"] = "%s%s?%s" % (base_url, path, urllib.parse.urlencode(kept, quote_via=urllib.parse.quote, safe="$,'"))
    body["value"] = [project(item, fields) for item in page]
    return body

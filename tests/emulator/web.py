"""Transport-independent request and response objects (used by the HTTP server, $batch and the provisioning engine)."""

import json


class Headers:
    """Case-insensitive header mapping."""

    def __init__(self, items=None):
        self._items = {}
        for key, value in (items.items() if isinstance(items, dict) else (items or [])):
            self._items[key.lower()] = (key, value)

    def get(self, key, default=None):
        item = self._items.get(key.lower())
        return item[1] if item else default

    def __contains__(self, key):
        return key.lower() in self._items

    def items(self):
        return list(self._items.values())


class BodyError(ValueError):
    pass


class Request:
    def __init__(self, method, path, raw_query="", headers=None, body=b"", client_address=("127.0.0.1", 0)):
        self.method = method.upper()
        self.path = path
        self.raw_query = raw_query
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body or b""
        self.client_address = client_address

    def json(self):
        """The JSON body, or ``None`` when the body is empty. Raises BodyError when it is not JSON."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BodyError(str(exc)) from None


class Response:
    def __init__(self, status, body=b"", headers=None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @classmethod
    def json(cls, status, payload, headers=None, content_type="application/json; charset=utf-8"):
        merged = {"Content-Type": content_type}
        merged.update(headers or {})
        return cls(status, json.dumps(payload, separators=(",", ":")).encode("utf-8"), merged)

    @classmethod
    def empty(cls, status=204, headers=None):
        return cls(status, b"", headers)

    def json_body(self):
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

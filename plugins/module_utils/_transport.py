# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP transport: Python's own ``http.client`` with our TLS settings, plus bounded retries.

* Why not ``requests``: every task runs the module in a new Python process, and importing requests (urllib3,
  charset_normalizer, idna, http.cookiejar, importlib.metadata...) costs about 70 ms of CPU per module run, a
  quarter of what a module costs on top of Ansible's own ``ping`` (docs/performance.md). msal still gets a
  ``requests`` session (``Transport.session``), built only when a token has to be fetched (once per run).
* TLS: ``ca_path`` (a CA file or directory) / ``validate_certs`` win over ``REQUESTS_CA_BUNDLE`` /
  ``CURL_CA_BUNDLE``; without them those variables apply, else certifi's bundle, else the system store (what
  requests does). Proxy variables (``HTTPS_PROXY``, ``NO_PROXY``...) keep working: https goes through a
  ``CONNECT`` tunnel. One kept-alive connection per host; a connection the server dropped is opened again.
* Retries: 429 and 503 wait exactly ``Retry-After`` (seconds or an HTTP date) when given; 500, 502,
  503 and 504 and connection errors back off exponentially with jitter; every retry is bounded by
  ``max_attempts`` (``throttled_attempts`` for 429/503, which say the request was not processed and
  when to come back: a run of them is throttling to sit out, not a broken server) and a total
  ``deadline``. Throttling guidance: microsoft-graph-docs-contrib concepts/throttling.md ("wait the
  number of seconds specified in the Retry-After header").
* Requests that are not idempotent (POST) are only retried when the server cannot have acted on
  them: 429, 503 and connection errors raised before the request was sent. A 500/502/504 or a reset
  connection after an ``instantiate`` might already have created an app, and retrying would create
  a duplicate.
"""

import base64
import http.client
import importlib.util
import json as _json
import os
import random
import select
import socket
import ssl
import sys
import time

from urllib.parse import unquote, urlencode, urlsplit

from ._errors import CONTROL_CHARACTER_RE, GraphError

USER_AGENT = "entrascim.cloudflare (Ansible collection)"
IDEMPOTENT_METHODS = frozenset(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"])
RETRY_ALWAYS_STATUSES = frozenset([429, 503])  # the server did not process the request
RETRY_IDEMPOTENT_STATUSES = frozenset([500, 502, 503, 504])


class RetryPolicy:
    """Bounds of the retry loop: attempts, exponential back-off (with jitter) and a total deadline (seconds)."""

    def __init__(self, max_attempts=6, backoff_base=1.0, backoff_max=30.0, deadline=180.0, jitter=0.5, throttled_attempts=12):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.throttled_attempts = max(max_attempts, throttled_attempts)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.deadline = float(deadline)
        self.jitter = float(jitter)

    def backoff(self, attempt, rand=random.random):
        """Delay before retry number ``attempt`` (1-based): base * 2^(attempt-1), capped, minus up to ``jitter`` of it."""
        delay = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return delay * (1.0 - self.jitter * rand())

    def delay(self, status, retry_after, attempt, idempotent, rand=random.random, batch_item=False):
        """The wait before sending again a request answered ``status`` (``retry_after``: its Retry-After in seconds, or
        None), or None when it must not be sent again: the one statement of which answers are retried, for plain
        requests (``Transport``) and ``$batch`` items (``GraphClient.batch``).

        429 and 503 say the request was not processed: always retried, after Retry-After when given. 500, 502, 503 and
        504 are retried for idempotent requests. One difference for a ``$batch`` item: a non-idempotent item answered 503
        without Retry-After is not sent again (the batch answered as a whole, and the item may have acted).
        """
        if status == 429 or (status == 503 and (retry_after is not None or not batch_item)):
            return retry_after if retry_after is not None else self.backoff(attempt, rand)
        if idempotent and status in RETRY_IDEMPOTENT_STATUSES:
            return self.backoff(attempt, rand)
        return None

    def exhausted(self, attempt, throttled, elapsed, delay):
        """True when no further attempt may be made: ``attempt`` attempts made (``throttled_attempts`` for 429/503),
        or waiting ``delay`` more would pass the ``deadline`` (``elapsed`` seconds since the first attempt)."""
        return attempt >= (self.throttled_attempts if throttled else self.max_attempts) or elapsed + delay > self.deadline


def parse_retry_after(value, now=None):
    """Return the ``Retry-After`` header value in seconds (delta-seconds or HTTP date), or None."""
    if value is None:
        return None
    value = str(value).strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # only for the rare HTTP-date form: importing it costs every module process ~3 ms
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class Headers(dict):
    """Response headers with case-insensitive ``get``/``[]``/``in`` (keys are kept in lower case)."""

    def __init__(self, pairs=()):
        super(Headers, self).__init__()
        for key, value in pairs:
            key = str(key).lower()
            self[key] = "%s, %s" % (self[key], value) if key in self else value

    def __getitem__(self, key):
        return super(Headers, self).__getitem__(str(key).lower())

    def __setitem__(self, key, value):
        super(Headers, self).__setitem__(str(key).lower(), value)

    def __contains__(self, key):
        return super(Headers, self).__contains__(str(key).lower())

    def get(self, key, default=None):
        return super(Headers, self).get(str(key).lower(), default)


class _Request:
    def __init__(self, method, url):
        self.method = method
        self.url = url


class Response:
    """What ``Transport.request`` returns: ``status_code``, ``reason``, ``headers``, ``content``, ``text``, ``json()``,
    ``url``, ``request`` (method, url) and ``retry_attempts`` (the attempts it took): the parts of requests' Response
    this collection uses."""

    def __init__(self, status_code, reason, headers, content, method, url):
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.content = content
        self.url = url
        self.request = _Request(method, url)
        self.retry_attempts = 1

    @property
    def encoding(self):
        """The charset of the Content-Type header (UTF-8 when none is given, as JSON is)."""
        for part in (self.headers.get("content-type") or "").split(";")[1:]:
            name, dummy, value = part.strip().partition("=")
            if name.lower() == "charset" and value.strip("\"' "):
                return value.strip("\"' ")
        return "utf-8"

    @property
    def text(self):
        try:
            return self.content.decode(self.encoding, "replace")
        except LookupError:
            return self.content.decode("utf-8", "replace")

    def json(self):
        """The parsed JSON body; raises ``ValueError`` when it is not JSON."""
        return _json.loads(self.text)

    def close(self):
        """Nothing to release: the whole body was read when the answer came."""


class _SentNothing(Exception):
    """Opening the connection (TCP, proxy tunnel) failed: no byte of the request reached the server."""

    def __init__(self, cause):
        super(_SentNothing, self).__init__(str(cause))
        self.cause = cause


def _is_tls_error(exc):
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return True
    exceptions = sys.modules.get("requests.exceptions")  # msal's requests errors, when requests was loaded for it
    return exceptions is not None and isinstance(exc, exceptions.SSLError)


def _is_timeout(exc):
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return True
    exceptions = sys.modules.get("requests.exceptions")
    return exceptions is not None and isinstance(exc, exceptions.Timeout)


def proxy_for(scheme, host):
    """``(host, port, Proxy-Authorization value or None)`` of the proxy the environment names for a URL, or None.

    ``HTTPS_PROXY``/``HTTP_PROXY`` in either case, and ``NO_PROXY``, with urllib's rules (which requests uses too).
    """
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # the usual case, without importing urllib.request (~4 ms of every module process)
    import urllib.request
    proxy = urllib.request.getproxies_environment().get(scheme)
    if not proxy or urllib.request.proxy_bypass_environment(host):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    parts = urlsplit(proxy)
    authorization = None
    if parts.username is not None:
        credentials = "%s:%s" % (unquote(parts.username), unquote(parts.password or ""))
        authorization = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return parts.hostname, parts.port or 8080, authorization


def default_ca_bundle():
    """The CA bundle used without ``ca_path``: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, else certifi's, else None (the
    system store), as requests chooses."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        return bundle
    if importlib.util.find_spec("certifi") is not None:
        import certifi
        return certifi.where()
    return None


def _dropped(connection):
    """True when the server closed a kept-alive connection (its socket is readable: EOF or an unexpected byte)."""
    sock = getattr(connection, "sock", None)
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class Transport:
    """Sends HTTP requests with our TLS settings and retries (see the module docstring).

    ``request()`` returns the final ``Response`` (a retryable status is returned once the retries are
    used up; the caller turns non-2xx into ``GraphError``) and raises ``GraphError`` (``status`` None,
    ``code`` ``ConnectionError``/``TLSError``/``Timeout``) when no response came. ``session`` is a
    ``requests`` session with the same TLS settings for msal, built on first use. ``sleep``, ``clock``
    (monotonic), ``now`` (wall clock, for HTTP-date Retry-After) and ``rand`` are injectable for tests.
    ``attempts`` counts every HTTP attempt; ``slept`` sums the waits.
    """

    def __init__(self, validate_certs=True, ca_path=None, timeout=30, retry=None,
                 sleep=time.sleep, clock=time.monotonic, now=time.time, rand=random.random):
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.now = now
        self.rand = rand
        self.attempts = 0
        self.slept = 0.0
        self._session = None
        self._context = None
        self._connections = {}

    @property
    def verify(self):
        """The TLS verification setting: False, the ca_path, or None (library default)."""
        if not self.validate_certs:
            return False
        if self.ca_path:
            return self.ca_path
        return None

    @property
    def session(self):
        """A ``requests.Session`` with the same TLS settings, user agent and default timeout (for msal)."""
        if self._session is None:
            from ._msal_session import make_tls_session  # pylint: disable=import-outside-toplevel  # only when a token is fetched
            self._session = make_tls_session(forced_verify=self.verify, default_timeout=self.timeout)
        return self._session

    def ssl_context(self):
        """The ``ssl.SSLContext`` of every connection (built once)."""
        if self._context is None:
            if not self.validate_certs:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif self.ca_path and os.path.isdir(self.ca_path):
                context = ssl.create_default_context(capath=self.ca_path)
            else:
                context = ssl.create_default_context(cafile=self.ca_path or default_ca_bundle())
            self._context = context
        return self._context

    def _connection(self, scheme, host, port):
        """A connected connection to ``host:port`` (kept alive, or new), through the environment's proxy if any."""
        key = (scheme, host, port)
        connection = self._connections.pop(key, None)
        if connection is not None and not _dropped(connection):
            return connection
        if connection is not None:
            connection.close()
        proxy = proxy_for(scheme, host)
        if scheme == "https":
            connection = http.client.HTTPSConnection(proxy[0] if proxy else host, proxy[1] if proxy else port,
                                                     timeout=self.timeout, context=self.ssl_context())
            if proxy:
                connection.set_tunnel(host, port, headers={"Proxy-Authorization": proxy[2]} if proxy[2] else None)
            connection.absolute_target = False
        else:
            connection = http.client.HTTPConnection(proxy[0] if proxy else host, proxy[1] if proxy else port, timeout=self.timeout)
            connection.absolute_target = bool(proxy)
        connection.proxy_authorization = proxy[2] if proxy and scheme != "https" else None
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            if _is_tls_error(exc):
                raise  # a TLS failure is not retried
            raise _SentNothing(exc)
        return connection

    def _send(self, method, url, headers, body):
        """One HTTP exchange; returns a ``Response``. Raises ``_SentNothing``, ``ssl.SSLError``, ``OSError`` or
        ``http.client.HTTPException``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        connection = self._connection(scheme, parts.hostname, port)
        target = url if connection.absolute_target else (parts.path or "/") + ("?" + parts.query if parts.query else "")
        request_headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
        if connection.proxy_authorization:
            request_headers["Proxy-Authorization"] = connection.proxy_authorization
        request_headers.update((key, value) for key, value in (headers or {}).items() if value is not None)
        try:
            connection.request(method, target, body=body, headers=request_headers)
            answer = connection.getresponse()
            content = answer.read()
        except BaseException:
            connection.close()
            raise
        if answer.will_close:
            connection.close()
        else:
            self._connections[(scheme, parts.hostname, port)] = connection
        return Response(answer.status, answer.reason, Headers(answer.getheaders()), content, method, url)

    def close(self):
        """Close the kept-alive connections."""
        for connection in self._connections.values():
            connection.close()
        self._connections = {}

    def _retry_delay(self, response, attempt, idempotent):
        """Return the wait before the next attempt for this response, or None if it is not retryable."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self.now())
        return self.retry.delay(response.status_code, retry_after, attempt, idempotent, self.rand)

    def request(self, method, url, headers=None, json=None, data=None, params=None, idempotent=None):
        """Send one request with retries; see the class docstring. ``idempotent`` defaults from the method.

        ``json`` is sent as a JSON body, ``data`` (bytes or text) as it is; ``params`` (a dict) is added to the
        query string, encoded as requests encodes it.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        headers = dict(headers or {})
        for name, value in headers.items():
            if value is not None and CONTROL_CHARACTER_RE.search(str(value)):
                # http.client would raise ValueError quoting the whole value (a bearer token) in its message.
                raise GraphError("The %s header of the request holds a control character (a line break or other "
                                 "non-printing character) and cannot be sent; the value is not shown" % name,
                                 code="InvalidHeaderValue", method=method, url=url)
        if json is not None:
            data = _json.dumps(json).encode("utf-8")
            if not any(key.lower() == "content-type" for key in headers):
                headers["Content-Type"] = "application/json"
        elif isinstance(data, str):
            data = data.encode("utf-8")
        if params:
            url += ("&" if urlsplit(url).query else "?") + urlencode(params, doseq=True)
        start = self.clock()
        attempt = 0
        while True:
            attempt += 1
            self.attempts += 1
            delay = None
            error = None
            response = None
            try:
                response = self._send(method, url, headers, data)
            except _SentNothing as exc:
                error = exc.cause
                delay = self.retry.backoff(attempt, self.rand)
            except (OSError, http.client.HTTPException) as exc:
                if _is_tls_error(exc):
                    raise connection_error(exc, method, url, self.timeout, attempt)
                error = exc
                if idempotent:
                    delay = self.retry.backoff(attempt, self.rand)
            else:
                delay = self._retry_delay(response, attempt, idempotent)
            throttled = response is not None and response.status_code in RETRY_ALWAYS_STATUSES
            if delay is None or self.retry.exhausted(attempt, throttled, self.clock() - start, delay):
                break
            self.sleep(delay)
            self.slept += delay
        if response is None:
            raise connection_error(error, method, url, self.timeout, attempt)
        response.retry_attempts = attempt
        return response


class RedirectRefused(OSError):
    """A credential-carrying request was answered with a redirect, which is never followed."""

    def __init__(self, url, status, location):
        target = urlsplit(location or "")
        self.where = "%s://%s" % (target.scheme, target.netloc) if target.netloc else "another path"
        super(RedirectRefused, self).__init__(
            "%s answered HTTP %s, a redirect to %s: not followed, as it would send the credential there. Check "
            "authority_host, cloud and the proxy settings" % (urlsplit(url).netloc or url, status, self.where))
        self.status = status


def describe_request_exception(exc, url, timeout):
    """Return ``(code, message)`` for a failed exchange: ``TLSError``, ``Timeout`` or ``ConnectionError``.

    ``exc`` is an ``OSError``/``http.client`` error of this transport, or a requests exception raised inside msal.
    """
    host = urlsplit(url).netloc if url else "the server"
    if isinstance(exc, RedirectRefused):
        return "Redirect", str(exc)
    if _is_tls_error(exc):
        return "TLSError", (
            "TLS verification failed for %s: %s. Set ca_path to the CA bundle that signed the server "
            "certificate (validate_certs=false only for tests)" % (host, _short(exc)))
    if _is_timeout(exc):
        return "Timeout", "No answer from %s within %s seconds: %s" % (host, timeout, _short(exc))
    return "ConnectionError", "Could not connect to %s: %s" % (host, _short(exc))


def connection_error(exc, method, url, timeout, attempts):
    """Turn a failed exchange into a ``GraphError`` with ``status`` None."""
    code, message = describe_request_exception(exc, url, timeout)
    return GraphError(message, status=None, code=code, method=method, url=url, attempts=attempts)


def _short(exc):
    """A one-line description of the error (the innermost reason when there is one).

    A plain ``OSError`` carries its text in ``strerror`` (``args[0]`` is the errno: "111" says nothing) and a
    certificate error in ``verify_message``; requests' exceptions wrap the urllib3 error, whose ``reason`` says it.
    """
    if getattr(exc, "verify_message", None):
        reason = exc.verify_message
    elif isinstance(exc, OSError) and getattr(exc, "strerror", None):
        reason = exc.strerror
    else:
        reason = exc.args[0] if getattr(exc, "args", None) else exc
        reason = getattr(reason, "reason", reason)
    text = " ".join(str(reason).split()) or type(exc).__name__
    return text[:300]

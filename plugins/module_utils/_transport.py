# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP transport: one ``requests`` session with our TLS settings, plus bounded retries.

* TLS: ``ca_path`` / ``validate_certs`` win over ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``. requests
  lets those variables replace ``Session.verify`` whenever a request is sent with ``verify`` unset
  (which is what msal does), so the session re-applies our setting after requests merged the
  environment. Proxy variables (``HTTPS_PROXY``, ``NO_PROXY``...) keep working (``trust_env`` stays on).
* Retries: 429 and 503 wait exactly ``Retry-After`` (seconds or an HTTP date) when given; 500, 502,
  503 and 504 and connection errors back off exponentially with jitter; every retry is bounded by
  ``max_attempts`` and a total ``deadline``. Throttling guidance: microsoft-graph-docs-contrib
  concepts/throttling.md ("wait the number of seconds specified in the Retry-After header").
* Requests that are not idempotent (POST) are only retried when the server cannot have acted on
  them: 429, 503 and connection errors raised before the request was sent. A 500/502/504 or a reset
  connection after an ``instantiate`` might already have created an app, and retrying would create
  a duplicate.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import email.utils
import random
import time
import traceback

from urllib.parse import urlparse

from ._errors import GraphError

try:
    import requests
    import requests.adapters
    import requests.exceptions
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError:
    requests = None
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

USER_AGENT = "entrascim.cloudflare (Ansible collection)"
IDEMPOTENT_METHODS = frozenset(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"])
RETRY_ALWAYS_STATUSES = frozenset([429, 503])  # the server did not process the request
RETRY_IDEMPOTENT_STATUSES = frozenset([500, 502, 503, 504])


class RetryPolicy:
    """Bounds of the retry loop: attempts, exponential back-off (with jitter) and a total deadline (seconds)."""

    def __init__(self, max_attempts=6, backoff_base=1.0, backoff_max=30.0, deadline=180.0, jitter=0.5):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.deadline = float(deadline)
        self.jitter = float(jitter)

    def backoff(self, attempt, rand=random.random):
        """Delay before retry number ``attempt`` (1-based): base * 2^(attempt-1), capped, minus up to ``jitter`` of it."""
        delay = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return delay * (1.0 - self.jitter * rand())


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
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _sent_nothing(exc):
    """True if a requests exception happened before any byte of the request reached the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(exc, requests.exceptions.SSLError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        name = type(reason).__name__
        return name in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError")
    return False


if HAS_REQUESTS:
    class TLSSession(requests.Session):
        """A ``requests.Session`` whose TLS verification setting beats the CA-bundle environment variables.

        ``forced_verify`` is ``False`` (validate_certs=false), a CA file/directory path (ca_path) or
        None (default verification, where REQUESTS_CA_BUNDLE etc. still apply). ``default_timeout``
        applies when a caller (msal) sends no timeout.
        """

        def __init__(self, forced_verify=None, default_timeout=None):
            super(TLSSession, self).__init__()
            self.forced_verify = forced_verify
            self.default_timeout = default_timeout
            self.headers["User-Agent"] = USER_AGENT
            adapter = requests.adapters.HTTPAdapter(max_retries=0)
            self.mount("https://", adapter)
            self.mount("http://", adapter)
            if forced_verify is not None:
                self.verify = forced_verify

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            settings = super(TLSSession, self).merge_environment_settings(url, proxies, stream, verify, cert)
            if self.forced_verify is not None:
                settings["verify"] = self.forced_verify
            return settings

        def request(self, method, url, *args, **kwargs):
            if kwargs.get("timeout") is None and self.default_timeout is not None:
                kwargs["timeout"] = self.default_timeout
            return super(TLSSession, self).request(method, url, *args, **kwargs)


class Transport:
    """Sends HTTP requests with our TLS settings and retries (see the module docstring).

    ``request()`` returns the final ``requests.Response`` (a retryable status is returned once the
    retries are used up; the caller turns non-2xx into ``GraphError``) and raises ``GraphError``
    (``status`` None, ``code`` ``ConnectionError``/``TLSError``/``Timeout``) when no response came.
    ``sleep``, ``clock`` (monotonic), ``now`` (wall clock, for HTTP-date Retry-After) and ``rand``
    are injectable for tests. ``attempts`` counts every HTTP attempt; ``slept`` sums the waits.
    """

    def __init__(self, validate_certs=True, ca_path=None, timeout=30, retry=None,
                 sleep=time.sleep, clock=time.monotonic, now=time.time, rand=random.random):
        if not HAS_REQUESTS:
            raise RuntimeError("the Python library requests is required")
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
        self.session = TLSSession(forced_verify=self.verify, default_timeout=timeout)

    @property
    def verify(self):
        """The ``verify`` value sent with every request: False, the ca_path, or None (library default)."""
        if not self.validate_certs:
            return False
        if self.ca_path:
            return self.ca_path
        return None

    def _retry_delay(self, response, attempt, idempotent):
        """Return the wait before the next attempt for this response, or None if it is not retryable."""
        status = response.status_code
        if status in RETRY_ALWAYS_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self.now())
            if retry_after is not None:
                return retry_after
            return self.retry.backoff(attempt, self.rand)
        if idempotent and status in RETRY_IDEMPOTENT_STATUSES:
            return self.retry.backoff(attempt, self.rand)
        return None

    def request(self, method, url, headers=None, json=None, data=None, params=None, idempotent=None):
        """Send one request with retries; see the class docstring. ``idempotent`` defaults from the method."""
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        start = self.clock()
        attempt = 0
        while True:
            attempt += 1
            self.attempts += 1
            delay = None
            error = None
            try:
                response = self.session.request(
                    method, url, headers=headers, json=json, data=data, params=params,
                    verify=self.verify if self.verify is not None else True, timeout=self.timeout,
                )
            except requests.exceptions.SSLError as exc:
                raise connection_error(exc, method, url, self.timeout, attempt)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                response = None
                error = exc
                if idempotent or _sent_nothing(exc):
                    delay = self.retry.backoff(attempt, self.rand)
            else:
                delay = self._retry_delay(response, attempt, idempotent)
            if delay is None or attempt >= self.retry.max_attempts:
                break
            if self.clock() + delay - start > self.retry.deadline:
                break
            if response is not None:
                response.close()
            self.sleep(delay)
            self.slept += delay
        if response is None:
            raise connection_error(error, method, url, self.timeout, attempt)
        response.retry_attempts = attempt
        return response


def describe_request_exception(exc, url, timeout):
    """Return ``(code, message)`` for a requests exception: ``TLSError``, ``Timeout`` or ``ConnectionError``."""
    host = urlparse(url).netloc if url else "the server"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLSError", (
            "TLS verification failed for %s: %s. Set ca_path to the CA bundle that signed the server "
            "certificate (validate_certs=false only for tests)" % (host, _short(exc)))
    if isinstance(exc, requests.exceptions.Timeout):
        return "Timeout", "No answer from %s within %s seconds: %s" % (host, timeout, _short(exc))
    return "ConnectionError", "Could not connect to %s: %s" % (host, _short(exc))


def connection_error(exc, method, url, timeout, attempts):
    """Turn a requests exception into a ``GraphError`` with ``status`` None."""
    code, message = describe_request_exception(exc, url, timeout)
    return GraphError(message, status=None, code=code, method=method, url=url, attempts=attempts)


def _short(exc):
    """A one-line description of a requests exception (the innermost reason when there is one)."""
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)
    text = " ".join(str(reason).split())
    return text[:300]

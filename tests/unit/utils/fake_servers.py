# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real local servers for the unit tests (127.0.0.1 only).

``FakeMicrosoft`` is one threaded HTTPS server playing three roles:

* the Microsoft identity platform: ``/<tenant>/v2.0/.well-known/openid-configuration`` and
  ``/<tenant>/oauth2/v2.0/token`` (client credentials with a client secret, or with a client
  assertion whose PS256/RS256 signature, ``x5t#S256``/``x5t`` thumbprint, audience, issuer and
  expiry it verifies against the registered certificate);
* an App Service managed identity endpoint (``/msi/token``, ``X-IDENTITY-HEADER``);
* Microsoft Graph with scripted answers per ``(method, path)`` that check the bearer token.

``ConnectProxy`` is a minimal HTTP CONNECT proxy that counts the tunnels it opened.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import base64
import hashlib
import json
import secrets
import select
import socket
import socketserver
import ssl
import struct
import threading
import time

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives import serialization

RESET = "reset"  # a scripted answer that resets the TCP connection instead of answering


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Reply:
    """A scripted HTTP answer."""

    def __init__(self, status=200, json_body=None, headers=None, body=None):
        self.status = status
        self.json_body = json_body
        self.headers = dict(headers or {})
        self.body = body


def graph_error(status, code, message, request_id="req-0000", headers=None):
    """A Graph error answer with the documented body shape (error.code/message/innerError)."""
    return Reply(status, {"error": {"code": code, "message": message,
                                    "innerError": {"date": "2026-11-29T10:00:00", "request-id": request_id,
                                                   "client-request-id": request_id}}}, headers=headers)


class Recorded:
    """One request the server received."""

    def __init__(self, method, path, query, headers, body, raw_query=""):
        self.method = method
        self.path = path
        self.query = query
        self.raw_query = raw_query
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def form(self):
        return dict((k, v[0]) for k, v in parse_qs(self.body.decode("utf-8")).items())


class _ResetConnection(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        return

    def _dispatch(self):
        parsed = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        recorded = Recorded(self.command, parsed.path, parse_qs(parsed.query, keep_blank_values=True),
                            dict((k.lower(), v) for k, v in self.headers.items()), body, raw_query=parsed.query)
        server = self.server.owner
        with server.lock:
            server.requests.append(recorded)
        reply = server.handle(recorded)
        if reply == RESET:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            raise _ResetConnection()
        payload = reply.body if reply.body is not None else (
            json.dumps(reply.json_body).encode("utf-8") if reply.json_body is not None else b"")
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        self.send_response(reply.status)
        headers = dict(reply.headers)
        if reply.json_body is not None:
            headers.setdefault("Content-Type", "application/json")
        headers.setdefault("request-id", "hdr-" + secrets.token_hex(4))
        for name, value in headers.items():
            self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch

    def handle(self):
        try:
            BaseHTTPRequestHandler.handle(self)
        except (_ResetConnection, ConnectionError, ssl.SSLError):
            self.close_connection = True

    def finish(self):
        try:
            BaseHTTPRequestHandler.finish(self)
        except (OSError, ValueError):
            pass


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        return  # TLS handshakes refused by clients under test are expected


class FakeMicrosoft:
    """See the module docstring. Use as a context manager or call ``start()``/``stop()``."""

    def __init__(self, pki, tenant="contoso-tenant", secret_sink=None):
        self.pki = pki
        self.secret_sink = secret_sink if secret_sink is not None else set()
        self.tenant = tenant
        self.lock = threading.Lock()
        self.requests = []
        self.routes = {}
        self.apps = {}
        self.issued = {}
        self.revoked = set()
        self.token_requests = 0
        self.token_delay = 0.0
        self.msi_header = "identity-header-" + secrets.token_hex(8)
        self.secret_sink.add(self.msi_header)
        self.msi_requests = 0
        self.require_auth = True
        self.last_assertion_header = None
        self.token_reply = None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert_path, pki.server_key_path)
        self._httpd = _TLSServer(("127.0.0.1", 0), _Handler)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.base_url = "https://127.0.0.1:%d" % self.port
        self._thread = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- configuration -----------------------------------------------------------------------
    @property
    def graph_endpoint(self):
        return self.base_url

    @property
    def token_endpoint(self):
        return "%s/%s/oauth2/v2.0/token" % (self.base_url, self.tenant)

    def register_app(self, client_id, secret=None, certificate=None):
        """Register an app registration with a client secret and/or a certificate (cryptography object)."""
        self.apps[client_id] = {"secret": secret, "certificate": certificate}

    def add(self, method, path, *replies):
        """Script the answers to ``method path``: each call takes the next reply; the last one repeats."""
        self.routes[(method.upper(), path)] = list(replies)

    def issue_token(self, subject="test"):
        token = "tok-" + secrets.token_hex(16)
        with self.lock:
            self.issued[token] = subject
            self.secret_sink.add(token)
        return token

    def revoke(self, token):
        self.revoked.add(token)

    def recorded(self, method=None, path=None):
        return [r for r in self.requests if (method is None or r.method == method) and (path is None or r.path == path)]

    def graph_requests(self):
        return [r for r in self.requests if r.path.startswith("/v1.0/")]

    # -- request handling --------------------------------------------------------------------
    def handle(self, request):
        if request.path == "/%s/v2.0/.well-known/openid-configuration" % self.tenant:
            return Reply(200, {
                "issuer": "%s/%s/v2.0" % (self.base_url, self.tenant),
                "authorization_endpoint": "%s/%s/oauth2/v2.0/authorize" % (self.base_url, self.tenant),
                "token_endpoint": self.token_endpoint,
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            })
        if request.path.endswith("/v2.0/.well-known/openid-configuration"):
            return Reply(400, {"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found."})
        if request.path == "/%s/oauth2/v2.0/token" % self.tenant and request.method == "POST":
            with self.lock:
                self.token_requests += 1
            if self.token_reply is not None:  # a hostile or broken token endpoint
                return self.token_reply(request) if callable(self.token_reply) else self.token_reply
            if self.token_delay:
                time.sleep(self.token_delay)
            return self._token(request)
        if request.path == "/msi/token":
            return self._msi(request)
        replies = self.routes.get((request.method, request.path))
        if replies is None:
            return graph_error(404, "Request_ResourceNotFound", "No scripted answer for %s %s" % (request.method, request.path))
        if self.require_auth and request.path.startswith("/v1.0/"):
            auth = request.headers.get("authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else None
            if token not in self.issued or token in self.revoked:
                return graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        with self.lock:
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if callable(reply):
            reply = reply(request)
        return reply

    def _token_error(self, status, error, description):
        return Reply(status, {"error": error, "error_description": description, "error_codes": [0],
                              "correlation_id": "corr-" + secrets.token_hex(4)})

    def _token(self, request):
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return self._token_error(400, "unsupported_grant_type", "AADSTS70003: grant_type must be client_credentials.")
        if not str(form.get("scope", "")).endswith("/.default"):
            return self._token_error(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid.")
        app = self.apps.get(form.get("client_id"))
        if app is None:
            return self._token_error(400, "unauthorized_client",
                                     "AADSTS700016: Application with identifier '%s' was not found in the directory." % form.get("client_id"))
        if "client_secret" in form:
            if not app["secret"] or not secrets.compare_digest(form["client_secret"], app["secret"]):
                return self._token_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        elif "client_assertion" in form:
            problem = self._check_assertion(form, app)
            if problem:
                return self._token_error(401, "invalid_client", "AADSTS700027: Client assertion failed: %s" % problem)
        else:
            return self._token_error(401, "invalid_client", "AADSTS7000216: client_assertion or client_secret is required.")
        return Reply(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                           "access_token": self.issue_token(form.get("client_id"))})

    def _check_assertion(self, form, app):
        """Verify the signed client assertion like the identity platform does; return a problem or None."""
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return "wrong client_assertion_type"
        cert = app["certificate"]
        if cert is None:
            return "no certificate registered"
        assertion = form["client_assertion"]
        header = jwt.get_unverified_header(assertion)
        der = cert.public_bytes(serialization.Encoding.DER)
        if header.get("x5t#S256"):
            if header["x5t#S256"].rstrip("=") != b64url(hashlib.sha256(der).digest()):
                return "x5t#S256 does not match the registered certificate"
        elif header.get("x5t"):
            if header["x5t"].rstrip("=") != b64url(hashlib.sha1(der).digest()):
                return "x5t does not match the registered certificate"
        else:
            return "no certificate thumbprint in the header"
        if header.get("alg") not in ("PS256", "RS256"):
            return "unexpected alg %s" % header.get("alg")
        try:
            claims = jwt.decode(assertion, cert.public_key(), algorithms=[header["alg"]],
                                audience=self.token_endpoint, issuer=form.get("client_id"),
                                options={"require": ["exp", "aud", "iss", "sub", "jti"]})
        except jwt.PyJWTError as exc:
            return "signature or claims invalid (%s)" % exc
        if claims.get("sub") != form.get("client_id"):
            return "sub is not the client id"
        self.last_assertion_header = header
        return None

    def _msi(self, request):
        with self.lock:
            self.msi_requests += 1
        if request.headers.get("x-identity-header") != self.msi_header:
            return Reply(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER missing or wrong"})
        query = dict((k, v[0]) for k, v in request.query.items())
        if query.get("api-version") != "2019-08-01" or not query.get("resource"):
            return Reply(400, {"statusCode": 400, "message": "api-version and resource are required"})
        subject = query.get("client_id") or "system-assigned"
        return Reply(200, {"access_token": self.issue_token(subject), "expires_on": str(int(time.time()) + 3600),
                           "resource": query["resource"], "token_type": "Bearer", "client_id": subject})


class _ProxyHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            data += chunk
        request_line = data.split(b"\r\n", 1)[0].decode("latin-1")
        method, target, dummy = request_line.split(" ", 2)
        host, port = target.rsplit(":", 1)
        if method != "CONNECT" or host not in ("127.0.0.1", "localhost"):
            self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        with self.server.owner.lock:
            self.server.owner.tunnels.append(target)
        upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        sockets = [self.request, upstream]
        try:
            while True:
                readable, dummy_w, dummy_x = select.select(sockets, [], [], 10)
                if not readable:
                    return
                for sock in readable:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    (upstream if sock is self.request else self.request).sendall(chunk)
        except OSError:
            return
        finally:
            upstream.close()


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class ConnectProxy:
    """A CONNECT proxy on 127.0.0.1 that only tunnels to 127.0.0.1 and records each tunnel target."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tunnels = []
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.owner = self
        self.url = "http://127.0.0.1:%d" % self._server.server_address[1]

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


class PlainSink:
    """A plain-HTTP server on 127.0.0.1 that answers 200 ``{}`` to everything and records what it received (method,
    path, headers, body): where a hostile redirect or link would send a credential. Use as a context manager."""

    def __init__(self):
        self.received = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # pylint: disable=arguments-differ
                return

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                sink.received.append((self.command, self.path, dict(self.headers.items()),
                                      self.rfile.read(length) if length else b""))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    def everything(self):
        """All received bytes as text (to search for a secret)."""
        return "\n".join("%s %s %r %s" % (m, p, h, b.decode("utf-8", "replace")) for m, p, h, b in self.received)

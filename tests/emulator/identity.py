"""Entra login: OpenID configuration, instance discovery, the v2.0 token endpoint (client credentials with a client
secret or a certificate client assertion) and the managed-identity endpoints (App Service and IMDS styles).

Sources: what msal 1.39 sends and expects (``.venv/lib/python3.12/site-packages/msal``: authority.py tenant and instance
discovery, application.py + oauth2cli/assertion.py client assertions with ``x5t#S256``/PS256 or ``x5t``/RS256,
managed_identity.py App Service ``X-IDENTITY-HEADER`` / IMDS ``Metadata: true`` requests and their response fields),
and the AADSTS error JSON of the Microsoft identity platform (``error``, ``error_description`` starting with the
AADSTS code, ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``, ``error_uri``).
Access tokens are opaque random strings mapped server-side to (client, permissions, expiry 3600 s).
"""

import base64
import hmac
import secrets
import time
import urllib.parse

import jwt

from .errors import new_id, utc_now
from .tls import load_certificate_public_key
from .web import Response

TOKEN_LIFETIME = 3600
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS256", "PS256", "RS384", "PS384", "RS512", "PS512")


def issue_token(state, client_id, permissions, kind, resource=None):
    token = "emu." + secrets.token_urlsafe(40)
    state.tokens[token] = {"client_id": client_id, "permissions": frozenset(permissions), "expires": time.time() + TOKEN_LIFETIME,
                           "kind": kind, "resource": resource}
    return token


def aad_error(status, error, code, description, correlation_id):
    moment = utc_now()
    trace_id = new_id()
    stamp = moment.strftime("%Y-%m-%d %H:%M:%SZ")
    text = "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s" % (code, description, trace_id, correlation_id, stamp)
    return Response.json(status, {"error": error, "error_description": text, "error_codes": [code], "timestamp": stamp,
                                  "trace_id": trace_id, "correlation_id": correlation_id,
                                  "error_uri": "https://login.microsoftonline.com/error?code=%d" % code})


class Identity:
    def __init__(self, state, base_url_getter):
        self.state = state
        self._base_url = base_url_getter

    @property
    def base_url(self):
        return self._base_url()

    def known_tenant(self, tenant):
        lowered = tenant.lower()
        return lowered == (self.state.tenant_id or "") or lowered in self.state.tenant_domains

    # -------------------------------------------------------------- discovery
    def openid_configuration(self, tenant, request=None):
        """GET /<tenant>/v2.0/.well-known/openid-configuration (msal authority.py tenant_discovery)."""
        if not self.known_tenant(tenant):
            return aad_error(400, "invalid_tenant", 90002, "Tenant '%s' not found. Check to make sure you have the correct tenant ID and "
                             "are signing into the correct cloud." % tenant, new_id())
        base = "%s/%s" % (self.base_url, self.state.tenant_id)
        return Response.json(200, {
            "token_endpoint": base + "/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": base + "/discovery/v2.0/keys", "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"], "issuer": base + "/v2.0",
            "request_uri_parameter_supported": False, "userinfo_endpoint": base + "/openid/userinfo",
            "authorization_endpoint": base + "/oauth2/v2.0/authorize", "device_authorization_endpoint": base + "/oauth2/v2.0/devicecode",
            "http_logout_supported": True, "frontchannel_logout_supported": True, "end_session_endpoint": base + "/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "tid", "ver", "oid", "roles"],
            "tenant_region_scope": "EU", "cloud_instance_name": "microsoftonline.com", "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": urllib.parse.urlsplit(self.base_url).netloc, "rbac_url": "https://pas.windows.net",
        })

    def jwks(self, tenant, request=None):
        if not self.known_tenant(tenant):
            return aad_error(400, "invalid_tenant", 90002, "Tenant '%s' not found." % tenant, new_id())
        # Access tokens are opaque here, so there are no signing keys to publish.
        return Response.json(200, {"keys": []})

    def instance_discovery(self, request):
        """GET /common/discovery/instance?authorization_endpoint=...&api-version=1.0 (msal authority.py _instance_discovery)."""
        params = dict(urllib.parse.parse_qsl(request.raw_query))
        endpoint = urllib.parse.urlsplit(params.get("authorization_endpoint", ""))
        own = urllib.parse.urlsplit(self.base_url)
        # msal builds authorization_endpoint from the authority's host name only (authority.py canonicalize drops the port).
        if endpoint.scheme != "https" or endpoint.hostname not in ("127.0.0.1", "localhost") or endpoint.port not in (None, own.port):
            return Response.json(400, {"error": "invalid_instance", "error_description": "AADSTS50049: Unknown or invalid instance.",
                                       "error_codes": [50049]})
        tenant = endpoint.path.strip("/").split("/")[0] or "common"
        return Response.json(200, {
            "tenant_discovery_endpoint": "%s/%s/v2.0/.well-known/openid-configuration" % (self.base_url, tenant),
            "api-version": "1.1",
            "metadata": [{"preferred_network": own.netloc, "preferred_cache": own.netloc, "aliases": [own.netloc]}],
        })

    # -------------------------------------------------------------- token endpoint
    def token(self, tenant, request):
        """POST /<tenant>/oauth2/v2.0/token, grant_type=client_credentials."""
        correlation_id = request.headers.get("client-request-id") or new_id()
        if not self.known_tenant(tenant):
            return aad_error(400, "invalid_request", 90002, "Tenant '%s' not found. Check to make sure you have the correct tenant ID and "
                             "are signing into the correct cloud. Check with your subscription administrator, this may happen if "
                             "there are no active subscriptions for the tenant." % tenant, correlation_id)
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return aad_error(400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.",
                             correlation_id)
        form = dict(urllib.parse.parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        basic_id, basic_secret = self._basic_credentials(request.headers.get("Authorization"))
        client_id = form.get("client_id") or basic_id
        for name, value in (("grant_type", form.get("grant_type")), ("client_id", client_id), ("scope", form.get("scope"))):
            if not value:
                return aad_error(400, "invalid_request", 900144, "The request body must contain the following parameter: '%s'." % name,
                                 correlation_id)
        if form["grant_type"] != "client_credentials":
            return aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '%s'." % form["grant_type"],
                             correlation_id)
        scopes = [s for s in form["scope"].split() if s not in ("openid", "profile", "offline_access")]
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return aad_error(400, "invalid_scope", 1002012, "The provided value for scope %s is not valid. Client credential flows must "
                             "have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                             % form["scope"], correlation_id)
        client = self.state.clients.get(client_id)
        if client is None:
            return aad_error(400, "unauthorized_client", 700016, "Application with identifier '%s' was not found in the directory '%s'. "
                             "This can happen if the application has not been installed by the administrator of the tenant or consented "
                             "to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
                             % (client_id, tenant), correlation_id)
        secret = form.get("client_secret") or basic_secret
        assertion = form.get("client_assertion")
        if secret:
            if not client["client_secret"] or not hmac.compare_digest(secret.encode("utf-8"), client["client_secret"].encode("utf-8")):
                return aad_error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request "
                                 "is the client secret value, not the client secret ID, for a secret added to app '%s'." % client_id,
                                 correlation_id)
        elif assertion:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                return aad_error(400, "invalid_request", 50027, "Invalid client_assertion_type; expected '%s'." % ASSERTION_TYPE, correlation_id)
            failure = self._verify_assertion(client, assertion, "%s/%s/oauth2/v2.0/token" % (self.base_url, tenant))
            if failure is not None:
                return aad_error(401, "invalid_client", failure[0], failure[1], correlation_id)
        else:
            return aad_error(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' "
                             "or 'client_secret'.", correlation_id)
        token = issue_token(self.state, client_id, client["permissions"], "client_credentials", scopes[0][:-len("/.default")])
        return Response.json(200, {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME - 1, "ext_expires_in": TOKEN_LIFETIME - 1,
                                   "access_token": token}, headers={"client-request-id": correlation_id})

    @staticmethod
    def _basic_credentials(header):
        if not header or not header.lower().startswith("basic "):
            return None, None
        try:
            decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
        except ValueError:
            return None, None
        client_id, _colon, secret = decoded.partition(":")
        return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)

    def _verify_assertion(self, client, assertion, token_endpoint):
        """Verify a client assertion JWT: registered certificate (x5t#S256 or x5t), signature, aud, iss = sub = client_id, exp."""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            return 50027, "Invalid JWT token. The token is not in a valid format."
        algorithm = header.get("alg")
        if algorithm not in ASSERTION_ALGORITHMS:
            return 5002738, "Invalid JWT token. '%s' is not a supported signature algorithm." % algorithm
        # msal sends the thumbprints base64url-encoded with padding; compare without it.
        wanted = ("x5t#S256", str(header["x5t#S256"]).rstrip("=")) if "x5t#S256" in header else ("x5t", str(header.get("x5t") or "").rstrip("="))
        certificate = next((cert for cert in client["certificates"] if wanted[1] and cert["thumbprints"][wanted[0]] == wanted[1]), None)
        if certificate is None:
            return 700027, ("The certificate with identifier used to sign the client assertion is not registered on application. "
                            "[Reason - The key was not found., Thumbprint of key used by client: '%s']"
                            % (header.get("x5t#S256") or header.get("x5t") or ""))
        try:
            claims = jwt.decode(assertion, load_certificate_public_key(certificate["pem"]), algorithms=[algorithm],
                                audience=token_endpoint, options={"require": ["exp", "aud", "iss", "sub"]}, leeway=300)
        except jwt.ExpiredSignatureError:
            return 700024, "Client assertion is not within its valid time range."
        except jwt.InvalidAudienceError:
            return 700021, "Client assertion audience claim does not match Realm issuer. Expected audience '%s'." % token_endpoint
        except jwt.InvalidSignatureError:
            return 700027, "Client assertion contains an invalid signature."
        except jwt.InvalidTokenError as exc:
            return 50027, "Invalid JWT token. %s" % exc
        if claims.get("iss") != client["client_id"] or claims.get("sub") != client["client_id"]:
            return 700021, "Client assertion application identifier doesn't match 'client_id' parameter."
        return None

    # -------------------------------------------------------------- managed identity
    def _managed_identity(self, client_id):
        if client_id:
            return next((mi for mi in self.state.managed_identities.values() if mi["client_id"] == client_id), None)
        return self.state.managed_identities.get("system")

    def app_service_token(self, request):
        """GET /msi/token?api-version=2019-08-01&resource=...[&client_id=...] with X-IDENTITY-HEADER (App Service / Functions)."""
        params = dict(urllib.parse.parse_qsl(request.raw_query))
        header = request.headers.get("X-IDENTITY-HEADER")
        if not self.state.identity_header or not header or not hmac.compare_digest(header.encode("utf-8"), self.state.identity_header.encode("utf-8")):
            return Response.json(401, {"statusCode": 401, "message": "Unauthorized: the X-IDENTITY-HEADER is missing or invalid."})
        if params.get("api-version") != "2019-08-01":
            return Response.json(400, {"statusCode": 400, "message": "Invalid or missing api-version; expected 2019-08-01."})
        if not params.get("resource"):
            return Response.json(400, {"statusCode": 400, "message": "The resource parameter is required."})
        if params.get("mi_res_id") or params.get("object_id"):
            return Response.json(400, {"statusCode": 400, "message": "The emulator identifies managed identities by client_id only."})
        identity = self._managed_identity(params.get("client_id"))
        if identity is None:
            message = "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId."
            return Response.json(400, {"statusCode": 400, "message": message})
        token = issue_token(self.state, identity["client_id"], identity["permissions"], "managed_identity", params["resource"])
        return Response.json(200, {"access_token": token, "expires_on": str(int(time.time()) + TOKEN_LIFETIME),
                                   "resource": params["resource"], "token_type": "Bearer", "client_id": identity["client_id"]})

    def imds_token(self, request):
        """GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=... with Metadata: true (Azure VM IMDS)."""
        params = dict(urllib.parse.parse_qsl(request.raw_query))
        if (request.headers.get("Metadata") or "").lower() != "true":
            return Response.json(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
        if not params.get("resource"):
            return Response.json(400, {"error": "invalid_request", "error_description": "Required query variable 'resource' is missing"})
        identity = self._managed_identity(params.get("client_id"))
        if identity is None:
            return Response.json(400, {"error": "invalid_request", "error_description": "Identity not found"})
        token = issue_token(self.state, identity["client_id"], identity["permissions"], "managed_identity", params["resource"])
        now = int(time.time())
        return Response.json(200, {"access_token": token, "client_id": identity["client_id"], "expires_in": str(TOKEN_LIFETIME - 1),
                                   "expires_on": str(now + TOKEN_LIFETIME), "ext_expires_in": str(TOKEN_LIFETIME - 1),
                                   "not_before": str(now), "resource": params["resource"], "token_type": "Bearer"})

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Getting a Microsoft Graph access token: clouds, one class per auth method, and the on-disk token cache.

Every auth class has ``get_token() -> str`` and ``invalidate(token) -> bool`` (True when a new
token can be fetched after Graph rejected this one). ``select_auth(params, transport)`` implements
``auth_method: auto``.

msal is imported only when a token must be fetched: a valid token in the on-disk cache is read
with ``json`` alone (msal's serialized cache is a JSON document), so a cached run pays no msal
import. Token requests go through ``transport.session`` so ``ca_path``/``validate_certs`` and the
proxy settings apply to them too.
"""

import datetime
import hashlib
import importlib.util
import os
import re
import time

from urllib.parse import urlparse

from ._auth_tokens import AccessTokenAuth, AzureCliAuth, _BaseAuth
from ._clouds import MICROSOFT_AUTHORITY_HOSTS, resolve_cloud
from ._errors import AuthError
from ._token_cache import TokenCacheFile, default_cache_dir
from ._transport import describe_request_exception

# msal is looked up, not imported: importing it costs time that a cached token does not need.
HAS_MSAL = importlib.util.find_spec("msal") is not None
MSAL_IMPORT_ERROR = None if HAS_MSAL else "No module named 'msal' (install it with: pip install msal)"

AUTH_METHODS = ("auto", "client_secret", "certificate", "managed_identity", "access_token", "azure_cli")
SYSTEM_ASSIGNED = "SYSTEM_ASSIGNED_MANAGED_IDENTITY"  # msal's cache client_id for a system-assigned identity

NO_CREDENTIALS_MESSAGE = (
    "No Microsoft Graph credentials were found (auth_method=auto). Supply one of: "
    "(1) access_token, a token for %(graph)s obtained elsewhere (for example "
    "'az account get-access-token --resource %(graph)s --query accessToken -o tsv'); "
    "(2) a certificate: tenant_id, client_id and client_certificate_path (a PEM file with the private key and "
    "the certificate) plus client_certificate_password if the key is encrypted, or the environment variables "
    "AZURE_TENANT_ID (or AZURE_TENANT), AZURE_CLIENT_ID, AZURE_CLIENT_CERTIFICATE_PATH, "
    "AZURE_CLIENT_CERTIFICATE_PASSWORD; "
    "(3) a client secret: tenant_id, client_id and client_secret, or AZURE_TENANT_ID (or AZURE_TENANT), "
    "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_SECRET), as set by an AWX 'Microsoft Azure Resource "
    "Manager' credential; "
    "(4) a managed identity: auth_method=managed_identity (system-assigned) or managed_identity_client_id "
    "(user-assigned); chosen automatically when IDENTITY_ENDPOINT or MSI_ENDPOINT is set; "
    "(5) the Azure CLI: auth_method=azure_cli after 'az login'; chosen automatically when 'az' is on PATH. "
    "Set cloud (or AZURE_CLOUD_ENVIRONMENT) for a national cloud. No Azure subscription is needed."
)

# Hints for common identity platform errors (AADSTS codes from the Microsoft Entra error code reference).
_AADSTS_HINTS = {
    "AADSTS7000215": "Check client_secret: use the secret's value, not its secret id.",
    "AADSTS7000222": "The client secret has expired: create a new one on the app registration.",
    "AADSTS700016": "Check client_id, tenant_id and cloud: the application was not found in that tenant.",
    "AADSTS90002": "Check tenant_id and cloud: the tenant was not found.",
    "AADSTS900023": "Check tenant_id: it must be a tenant GUID or a verified domain name.",
    "AADSTS700027": "The certificate is not registered on the app registration, or the assertion signature does not match.",
    "AADSTS1002012": "The scope is invalid: check graph_endpoint and cloud.",
}


def _import_msal():
    try:
        import msal
    except ImportError as exc:
        raise AuthError("The Python library msal is required for this auth method (pip install msal): %s" % exc)
    return msal


def _msal_error(result, secrets, what="Token request"):
    """An AuthError from an msal error result, keeping the AADSTS text and adding a hint."""
    description = " ".join(str(result.get("error_description") or result.get("error") or "unknown error").split())
    hints = [hint for code, hint in _AADSTS_HINTS.items() if re.search(r"\b%s\b" % code, description)]
    message = "%s failed: %s" % (what, description)
    if hints:
        message += " " + " ".join(hints)
    return AuthError(message, code=result.get("error"), correlation_id=result.get("correlation_id"), secrets=secrets)


def _request_exception_error(exc, url, transport, what, secrets):
    code, message = describe_request_exception(exc, url, transport.timeout)
    return AuthError("%s: %s" % (what, message), code=code, secrets=secrets)


class _MsalAuth(_BaseAuth):
    """Shared logic of the msal-based methods: in-memory token, on-disk cache, locked fetch."""

    needs_msal = True

    def __init__(self, transport, cache_dir, key_parts, cache_client_id, targets):
        super(_MsalAuth, self).__init__()
        self.transport = transport
        self.cache = TokenCacheFile(cache_dir, key_parts) if cache_dir else None
        self.cache_client_id = cache_client_id
        self.targets = list(targets)
        self._token = None
        self._expires_on = 0

    def _secrets(self):
        return []

    def _remember(self, token, expires_on):
        self._token = token
        self._expires_on = expires_on
        return token

    def get_token(self):
        now = time.time()
        if self._token and self._expires_on - now > 60:
            return self._token
        if self.cache is not None:
            found = self.cache.find_token(self.cache_client_id, self.targets, now=now)
            if found:
                return self._remember(*found)
            if not self.cache.prepare():
                self._collect_warnings()
                self.cache = None
        if self.cache is None:
            return self._fetch(None)
        with self.cache.lock():
            # Another process may have fetched a token while this one waited for the lock.
            found = self.cache.find_token(self.cache_client_id, self.targets)
            if found:
                return self._remember(*found)
            return self._fetch(self.cache)

    def _fetch(self, cache_file):
        msal = _import_msal()
        token_cache = msal.SerializableTokenCache()
        if cache_file is not None:
            text = cache_file.text()
            if text:
                try:
                    token_cache.deserialize(text)
                except (ValueError, TypeError, AttributeError):
                    token_cache = msal.SerializableTokenCache()
        self.token_requests += 1
        result = self._acquire(msal, token_cache)
        if "access_token" not in result:
            raise _msal_error(result, self._secrets(), what=self._what())
        if cache_file is not None and token_cache.has_state_changed:
            cache_file.write(token_cache.serialize())
            self._collect_warnings()
        expires_in = int(result.get("expires_in") or 3600)
        return self._remember(result["access_token"], time.time() + expires_in)

    def _collect_warnings(self):
        if self.cache is not None:
            for warning in self.cache.warnings:
                if warning not in self.warnings:
                    self.warnings.append(warning)

    def _what(self):
        return "Token request"

    def _acquire(self, msal, token_cache):
        raise NotImplementedError

    def invalidate(self, token):
        self._token = None
        self._expires_on = 0
        if self.cache is not None:
            self.cache.remove_token(token)
        return True


class _ConfidentialClientAuth(_MsalAuth):
    """Client credentials flow (app-only token) against ``<authority_host>/<tenant_id>``."""

    def __init__(self, tenant_id, client_id, authority_host, graph_endpoint, transport, cache_dir=None):
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.authority_host = authority_host.rstrip("/")
        self.authority = "%s/%s" % (self.authority_host, tenant_id)
        self.scope = "%s/.default" % graph_endpoint.rstrip("/")
        # The credential is part of the key: a token fetched with another secret or certificate (the right one, before
        # it was changed to a wrong one) is never served for this one, so the token endpoint always judges a new credential.
        self.key_parts = [self.authority_host, tenant_id, client_id, graph_endpoint.rstrip("/"), self._credential_fingerprint()]
        super(_ConfidentialClientAuth, self).__init__(transport, cache_dir, self.key_parts, client_id, [self.scope])

    def _credential_fingerprint(self):
        """A one-way digest of the credential (never the credential itself)."""
        raise NotImplementedError

    @property
    def instance_discovery(self):
        """None (msal's default) for Microsoft hosts; False for any other host, which msal would reject."""
        host = (urlparse(self.authority_host).hostname or "").lower()
        return None if host in MICROSOFT_AUTHORITY_HOSTS else False

    def _client_credential(self):
        raise NotImplementedError

    def _acquire(self, msal, token_cache):
        secrets = self._secrets()
        credential = self._client_credential()
        try:
            app = msal.ConfidentialClientApplication(
                self.client_id, client_credential=credential, authority=self.authority,
                http_client=self.transport.session, token_cache=token_cache,
                instance_discovery=self.instance_discovery,
            )
            return app.acquire_token_for_client(scopes=[self.scope])
        except OSError as exc:  # requests exceptions derive from IOError
            raise _request_exception_error(exc, self.authority, self.transport, "Could not reach the token endpoint", secrets)
        except (ValueError, KeyError) as exc:
            raise AuthError(
                "Could not use the authority %s: %s (check tenant_id, cloud and authority_host)" % (self.authority, exc),
                secrets=secrets)


class ClientSecretAuth(_ConfidentialClientAuth):
    """App-only token with a client secret."""

    method = "client_secret"

    def __init__(self, tenant_id, client_id, client_secret, authority_host, graph_endpoint, transport, cache_dir=None):
        self._client_secret = client_secret
        super(ClientSecretAuth, self).__init__(tenant_id, client_id, authority_host, graph_endpoint, transport, cache_dir)

    def _secrets(self):
        return [self._client_secret]

    def _credential_fingerprint(self):
        return "secret:" + hashlib.sha256(("entrascim.cloudflare:%s" % self._client_secret).encode("utf-8")).hexdigest()

    def _client_credential(self):
        return self._client_secret


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


def load_certificate_credential(path, password=None, now=None):
    """Read a PEM file holding a private key and its certificate; return msal's ``client_credential`` dict.

    The certificate whose public key matches the private key is the one sent (its SHA-256 thumbprint
    goes into the ``x5t#S256`` header of the PS256-signed client assertion, as the Microsoft identity
    platform "certificate credentials" page describes). Errors never contain the password.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    secrets = [password] if password else []
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        raise AuthError("Cannot read client_certificate_path %s: %s" % (path, exc.strerror or exc))
    keys = []
    certs = []
    for match in _PEM_BLOCK.finditer(data):
        label = match.group(1)
        if label.endswith(b"PRIVATE KEY"):
            keys.append(match.group(0))
        elif label == b"CERTIFICATE":
            certs.append(match.group(0))
    if not keys or not certs:
        raise AuthError("%s must be a PEM file holding both the private key and the certificate (found %d key(s), %d certificate(s))"
                        % (path, len(keys), len(certs)))
    try:
        key = serialization.load_pem_private_key(keys[0], password.encode("utf-8") if password else None)
    except TypeError:
        if password:
            raise AuthError("The private key in %s is not encrypted: unset client_certificate_password" % path, secrets=secrets)
        raise AuthError("The private key in %s is encrypted: set client_certificate_password" % path)
    except ValueError:
        raise AuthError("Could not load the private key in %s: wrong client_certificate_password or unsupported key format" % path,
                        secrets=secrets)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    key_public = key.public_key().public_bytes(*spki)
    leaf = None
    for pem in certs:
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            continue
        if cert.public_key().public_bytes(*spki) == key_public:
            leaf = cert
            break
    if leaf is None:
        raise AuthError("%s holds no certificate matching its private key" % path)
    now = datetime.datetime.now(datetime.timezone.utc) if now is None else now
    not_after = leaf.not_valid_after_utc if hasattr(leaf, "not_valid_after_utc") else leaf.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    if not_after < now:
        raise AuthError("The certificate in %s expired on %s: register a new one on the app registration" % (path, not_after.isoformat()))
    return {
        "private_key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode("ascii"),
        "public_certificate": leaf.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    }


class ClientCertificateAuth(_ConfidentialClientAuth):
    """App-only token with a certificate (PEM file with key and certificate, optional password)."""

    method = "certificate"

    def __init__(self, tenant_id, client_id, certificate_path, authority_host, graph_endpoint, transport,
                 certificate_password=None, cache_dir=None):
        self.certificate_path = certificate_path
        self._certificate_password = certificate_password
        super(ClientCertificateAuth, self).__init__(tenant_id, client_id, authority_host, graph_endpoint, transport, cache_dir)

    def _secrets(self):
        return [self._certificate_password] if self._certificate_password else []

    def _credential_fingerprint(self):
        digest = hashlib.sha256(("entrascim.cloudflare:%s\n" % (self._certificate_password or "")).encode("utf-8"))
        try:
            with open(self.certificate_path, "rb") as handle:
                digest.update(handle.read())
        except (IOError, OSError):
            digest.update(str(self.certificate_path).encode("utf-8"))  # loading it fails later with the reason
        return "certificate:" + digest.hexdigest()

    def _client_credential(self):
        return load_certificate_credential(self.certificate_path, self._certificate_password)


class ManagedIdentityAuth(_MsalAuth):
    """Token of a system-assigned (``client_id`` None) or user-assigned managed identity (msal ManagedIdentityClient).

    msal picks the endpoint from the environment: App Service/Functions (``IDENTITY_ENDPOINT`` +
    ``IDENTITY_HEADER``), Azure ML (``MSI_ENDPOINT`` + ``MSI_SECRET``), Azure Arc, else the VM IMDS endpoint.
    """

    method = "managed_identity"

    def __init__(self, graph_endpoint, transport, client_id=None, cache_dir=None):
        self.client_id = client_id
        self.resource = graph_endpoint.rstrip("/")
        super(ManagedIdentityAuth, self).__init__(
            transport, cache_dir, ["managed_identity", "", client_id or "system", self.resource],
            client_id or SYSTEM_ASSIGNED, [self.resource],
        )

    def _what(self):
        return "Managed identity token request"

    def _acquire(self, msal, token_cache):
        if self.client_id:
            identity = msal.UserAssignedManagedIdentity(client_id=self.client_id)
        else:
            identity = msal.SystemAssignedManagedIdentity()
        try:
            client = msal.ManagedIdentityClient(identity, http_client=self.transport.session, token_cache=token_cache)
            return client.acquire_token_for_client(resource=self.resource)
        except OSError as exc:
            raise _request_exception_error(exc, None, self.transport, "Could not reach the managed identity endpoint", [])
        except ValueError as exc:
            raise AuthError("Managed identity token request failed: %s" % exc)


def cache_dir_from_params(params, environ=None):
    """The token cache directory for these params, or None when ``token_cache`` is false."""
    if params.get("token_cache") is False:
        return None
    return params.get("token_cache_path") or default_cache_dir(environ)


def _needs(method, params, names, variables):
    """Raise AuthError naming the options ``method`` needs that are missing (and the environment variables that give them)."""
    missing = [name for name in names if not params.get(name)]
    if missing:
        raise AuthError("auth_method %s needs %s (missing: %s; environment variables %s)"
                        % (method, ", ".join(names), ", ".join(missing), variables), code="invalid_configuration")


def _client_secret(params, context):
    _needs("client_secret", params, ["tenant_id", "client_id", "client_secret"],
           "AZURE_TENANT_ID/AZURE_TENANT, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET/AZURE_SECRET")
    return ClientSecretAuth(params["tenant_id"], params["client_id"], params["client_secret"], context["cloud"]["authority_host"],
                            context["graph"], context["transport"], cache_dir=context["cache_dir"])


def _certificate(params, context):
    _needs("certificate", params, ["tenant_id", "client_id", "client_certificate_path"],
           "AZURE_TENANT_ID/AZURE_TENANT, AZURE_CLIENT_ID, AZURE_CLIENT_CERTIFICATE_PATH")
    return ClientCertificateAuth(params["tenant_id"], params["client_id"], params["client_certificate_path"],
                                 context["cloud"]["authority_host"], context["graph"], context["transport"],
                                 certificate_password=params.get("client_certificate_password"), cache_dir=context["cache_dir"])


def _managed_identity(params, context):
    return ManagedIdentityAuth(context["graph"], context["transport"], client_id=params.get("managed_identity_client_id"),
                               cache_dir=context["cache_dir"])


def _access_token(params, context):
    if not params.get("access_token"):
        raise AuthError("auth_method access_token needs the access_token option", code="invalid_configuration")
    return AccessTokenAuth(params["access_token"], graph_endpoint=context["graph"])


def _azure_cli(params, context):
    az_path = context["which"]("az")
    if not az_path:
        raise AuthError("auth_method azure_cli needs the Azure CLI ('az') on PATH", code="invalid_configuration")
    if context["run_command"] is None:
        raise AuthError("auth_method azure_cli needs a command runner (AnsibleModule.run_command)", code="invalid_configuration")
    return AzureCliAuth(context["graph"], context["run_command"], tenant_id=params.get("tenant_id"), az_path=az_path,
                        timeout=params.get("timeout") or 30)


# auth_method -> (chosen by auth_method=auto when, builder). The builder checks the options its method needs (community.
# hashi_vault's one class per auth method with a selector). ``auto`` takes the first entry whose test holds, in this order.
def _identity_available(params, context):
    environ = context["environ"]
    return bool(params.get("managed_identity_client_id") or environ.get("IDENTITY_ENDPOINT") or environ.get("MSI_ENDPOINT"))


AUTH_SELECTORS = (
    ("access_token", lambda params, context: bool(params.get("access_token")), _access_token),
    ("certificate", lambda params, context: bool(params.get("client_certificate_path")), _certificate),
    ("client_secret", lambda params, context: bool(params.get("client_secret")), _client_secret),
    ("managed_identity", _identity_available, _managed_identity),
    ("azure_cli", lambda params, context: bool(context["which"]("az")), _azure_cli),
)


def select_auth(params, transport, run_command=None, which=None, environ=None):
    """Return the auth object for ``params`` (the module parameters; env fallbacks already applied).

    ``auth_method: auto`` picks, in the order of ``AUTH_SELECTORS``: ``access_token``; a certificate
    (``client_certificate_path``); a client secret; a managed identity when ``managed_identity_client_id`` is set or
    ``IDENTITY_ENDPOINT``/``MSI_ENDPOINT`` is in the environment; the Azure CLI when ``az`` is on PATH. It raises
    AuthError listing every way to supply credentials when none is usable, and names the missing option when a
    credential is incomplete.
    """
    environ = os.environ if environ is None else environ
    if which is None:
        import shutil
        which = shutil.which
    try:
        cloud = resolve_cloud(params, environ)
    except ValueError as exc:
        raise AuthError(str(exc), code="invalid_configuration")
    context = {"cloud": cloud, "graph": cloud["graph_endpoint"], "transport": transport, "run_command": run_command,
               "which": which, "environ": environ, "cache_dir": cache_dir_from_params(params, environ)}
    method = params.get("auth_method") or "auto"
    builders = dict((name, build) for name, dummy, build in AUTH_SELECTORS)
    if method == "auto":
        method = next((name for name, chosen, dummy in AUTH_SELECTORS if chosen(params, context)), None)
        if method is None:
            message = NO_CREDENTIALS_MESSAGE % {"graph": context["graph"]}
            if params.get("tenant_id") and params.get("client_id"):
                message = "tenant_id and client_id are set but neither client_secret nor client_certificate_path. " + message
            raise AuthError(message, code="no_credentials")
    if method not in builders:
        raise AuthError("auth_method must be one of %s, got %r" % (", ".join(AUTH_METHODS), method), code="invalid_configuration")
    return builders[method](params, context)

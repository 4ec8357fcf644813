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

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import base64
import contextlib
import datetime
import errno
import hashlib
import importlib.util
import json
import os
import re
import stat
import tempfile
import time

from urllib.parse import urlparse

from ._errors import AuthError
from ._transport import describe_request_exception

try:
    import fcntl
except ImportError:  # not a POSIX system: the cache still works, writes are atomic but not serialised
    fcntl = None

# msal is looked up, not imported: importing it costs time that a cached token does not need.
HAS_MSAL = importlib.util.find_spec("msal") is not None
MSAL_IMPORT_ERROR = None if HAS_MSAL else "No module named 'msal' (install it with: pip install msal)"

# Endpoints: microsoft-graph-docs-contrib concepts/deployments.md ("App registration and token service
# root endpoints", "Microsoft Graph and Graph Explorer service root endpoints"); non-gallery template
# ids from graph_api.md.
CLOUDS = {
    "public": {
        "graph_endpoint": "https://graph.microsoft.com",
        "authority_host": "https://login.microsoftonline.com",
        "non_gallery_template_id": "8adf8e6e-67b2-4cf2-a259-e3dc5476c621",
    },
    "usgovernment": {
        "graph_endpoint": "https://graph.microsoft.us",
        "authority_host": "https://login.microsoftonline.us",
        "non_gallery_template_id": "4602d0b4-76bb-404b-bca9-2652e1a39c6d",
    },
    "china": {
        "graph_endpoint": "https://microsoftgraph.chinacloudapi.cn",
        "authority_host": "https://login.chinacloudapi.cn",
        "non_gallery_template_id": "5a532e38-1581-4918-9658-008dc27c1d68",
    },
}

# AZURE_CLOUD_ENVIRONMENT values (azure.azcollection / AWX "Microsoft Azure Resource Manager" credential).
CLOUD_ENVIRONMENTS = {
    "azurecloud": "public",
    "azurepubliccloud": "public",
    "azureusgovernment": "usgovernment",
    "azureusgovernmentcloud": "usgovernment",
    "azurechinacloud": "china",
}

# Authority hosts msal knows (msal.authority.WELL_KNOWN_AUTHORITY_HOSTS): for these msal's instance
# discovery is a no-op; for any other host (an emulator, a test server) it must be turned off,
# and the host must then serve <authority>/v2.0/.well-known/openid-configuration over HTTPS.
MICROSOFT_AUTHORITY_HOSTS = frozenset([
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
    "login.chinacloudapi.cn", "login.partner.microsoftonline.cn", "login.microsoftonline.de",
    "login-us.microsoftonline.com", "login.microsoftonline.us", "login.usgovcloudapi.net",
])

AUTH_METHODS = ("auto", "client_secret", "certificate", "managed_identity", "access_token", "azure_cli")
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
SYSTEM_ASSIGNED = "SYSTEM_ASSIGNED_MANAGED_IDENTITY"  # msal's cache client_id for a system-assigned identity
CACHE_DIR_NAME = "entrascim-cloudflare"
MIN_VALIDITY = 300  # seconds a cached token must still be valid for (msal uses the same 5 minutes)

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


def _strip_url(value, what):
    """Normalise an https base URL (scheme added if missing, trailing slash removed); refuse other schemes."""
    value = str(value).strip()
    if "://" not in value:
        value = "https://" + value
    parsed = urlparse(value)
    if parsed.scheme.lower() != "https" or not parsed.netloc:
        raise ValueError("%s must be an https:// URL, got %r" % (what, value))
    return value.rstrip("/")


def resolve_cloud(params, environ=None):
    """Return the endpoints to use: ``name``, ``graph_endpoint``, ``authority_host``, ``non_gallery_template_id``.

    ``cloud`` (or else ``AZURE_CLOUD_ENVIRONMENT``, else ``public``) picks the defaults;
    ``graph_endpoint`` and ``authority_host`` override them. Raises ValueError on bad values.
    """
    environ = os.environ if environ is None else environ
    name = params.get("cloud")
    if not name:
        env_value = (environ.get("AZURE_CLOUD_ENVIRONMENT") or "").strip()
        if env_value:
            name = CLOUD_ENVIRONMENTS.get(env_value.lower())
            if name is None and env_value.lower() in CLOUDS:
                name = env_value.lower()
            if name is None:
                raise ValueError(
                    "AZURE_CLOUD_ENVIRONMENT=%s is not supported: use AzureCloud, AzureUSGovernment or AzureChinaCloud "
                    "(or the cloud option: public, usgovernment, china)" % env_value)
        else:
            name = "public"
    if name not in CLOUDS:
        raise ValueError("cloud must be one of %s, got %r" % (", ".join(sorted(CLOUDS)), name))
    cloud = dict(CLOUDS[name], name=name)
    if params.get("graph_endpoint"):
        endpoint = _strip_url(params["graph_endpoint"], "graph_endpoint")
        endpoint = re.sub(r"/(v1\.0|beta)$", "", endpoint)
        cloud["graph_endpoint"] = endpoint
    if params.get("authority_host"):
        cloud["authority_host"] = _strip_url(params["authority_host"], "authority_host")
    return cloud


def default_cache_dir(environ=None):
    """``$XDG_CACHE_HOME/entrascim-cloudflare``, else ``~/.cache/entrascim-cloudflare``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, CACHE_DIR_NAME)


def _b64url_json(segment):
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"))


def jwt_claims(token):
    """The (unverified) claims of a JWT access token, or None for an opaque token."""
    parts = str(token).split(".")
    if len(parts) != 3:
        return None
    try:
        claims = _b64url_json(parts[1])
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


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


def well_formed_cache(document):
    """True when ``document`` has the shape of msal's serialized cache: a dict whose sections (``AccessToken``,
    ``RefreshToken``, ``Account``...) are dicts of dicts."""
    if not isinstance(document, dict):
        return False
    return all(isinstance(section, dict) and all(isinstance(entry, dict) for entry in section.values())
               for section in document.values())


class TokenCacheFile:
    """One credential's msal token cache on disk: a 0600 JSON file in a 0700 directory.

    Why not msal-extensions' ``PersistedTokenCache``? Three reasons, all about many forks running
    modules at once: (1) its lock without the optional ``portalocker`` package is an
    ``open(..., "x")`` lock file that a killed process leaves behind, after which every writer
    fails with LockError; (2) it saves by truncating and rewriting the file in place, so a
    concurrent reader can see half a document; (3) it only locks the write, so N forks starting
    together all ask the token endpoint. Here the whole "look in the cache, else fetch and save"
    sequence holds an ``fcntl.flock`` (released by the kernel if the process dies), the file is
    replaced atomically (``mkstemp`` 0600 + ``os.replace``), and readers never lock. The file holds
    msal's serialized cache (access tokens, never the client secret or the certificate key).
    One file per key = sha256(authority host, tenant, client id, resource[, credential fingerprint]).
    """

    def __init__(self, directory, key_parts, lock_timeout=120.0):
        self.directory = os.path.abspath(os.path.expanduser(directory))
        self.key = hashlib.sha256("\n".join(str(p or "") for p in key_parts).encode("utf-8")).hexdigest()
        self.path = os.path.join(self.directory, self.key + ".json")
        self.lock_path = os.path.join(self.directory, self.key + ".lock")
        self.lock_timeout = lock_timeout
        self.warnings = []
        self._prepared = None

    def _warn(self, text):
        if text not in self.warnings:
            self.warnings.append(text)

    def _secure_dir(self):
        try:
            info = os.lstat(self.directory)
        except OSError:
            return False
        if not stat.S_ISDIR(info.st_mode):
            self._warn("Token cache disabled: %s is not a directory." % self.directory)
            return False
        if info.st_uid != os.getuid():
            self._warn("Token cache disabled: %s is owned by another user." % self.directory)
            return False
        if info.st_mode & 0o077:
            self._warn("Token cache disabled: %s is accessible by other users (mode %s); run 'chmod 700 %s'."
                       % (self.directory, oct(info.st_mode & 0o777), self.directory))
            return False
        return True

    def prepare(self):
        """Create the directory (0700) if needed and check it is private; False (with a warning) if unusable."""
        if self._prepared is not None:
            return self._prepared
        if not os.path.lexists(self.directory):
            try:
                os.makedirs(self.directory, mode=0o700)
                os.chmod(self.directory, 0o700)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    self._warn("Token cache disabled: cannot create %s: %s." % (self.directory, exc.strerror))
                    self._prepared = False
                    return False
        self._prepared = self._secure_dir()
        return self._prepared

    def read(self):
        """The cache document (text) if the file exists, is ours and private; else None. Never raises."""
        if not self._secure_dir():
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
                return None
            with os.fdopen(fd, "r", encoding="utf-8") as handle:
                fd = None
                return handle.read()
        except (OSError, ValueError):
            return None
        finally:
            if fd is not None:
                os.close(fd)

    def state(self):
        """The parsed cache document (dict) or None: a file that is not JSON, or not msal's shape (each section a dict
        of dicts), counts as no cache (it is replaced at the next token request) rather than crashing every run."""
        text = self.read()
        if not text:
            return None
        try:
            document = json.loads(text)
        except ValueError:
            return None
        return document if well_formed_cache(document) else None

    def text(self):
        """The cache text for msal, or None when it is missing or not well formed (see ``state``)."""
        return self.read() if self.state() is not None else None

    def write(self, text):
        """Replace the cache file atomically with ``text`` (a 0600 file). Returns True on success."""
        if not self.prepare():
            return False
        tmp_path = None
        try:
            fd, tmp_path = tempfile.mkstemp(prefix=".%s." % self.key[:16], suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_path, self.path)
            tmp_path = None
            return True
        except OSError as exc:
            self._warn("Could not write the token cache %s: %s." % (self.path, exc.strerror or exc))
            return False
        finally:
            if tmp_path:
                try:
                    os.unlink(tmp_path)
                except OSError:
                    pass

    @contextlib.contextmanager
    def lock(self):
        """Hold an exclusive lock on this key's lock file (bounded wait; continues unlocked after it)."""
        handle = None
        if fcntl is not None and self.prepare():
            try:
                handle = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            except OSError as exc:
                self._warn("Could not open the token cache lock %s: %s." % (self.lock_path, exc.strerror))
        if handle is not None:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK) or time.monotonic() > deadline:
                        os.close(handle)
                        handle = None
                        break
                    time.sleep(0.05)
        try:
            yield
        finally:
            if handle is not None:
                os.close(handle)  # closing the descriptor releases the flock

    def find_token(self, client_id, targets, now=None, min_validity=MIN_VALIDITY):
        """Return ``(token, expires_on)`` of a cached access token still valid for ``min_validity`` s, else None.

        Reads msal's cache format: ``{"AccessToken": {key: {"credential_type": "AccessToken", "secret":
        <token>, "client_id", "target": "<space separated scopes>", "expires_on": "<epoch>",
        "refresh_on"?: "<epoch>", "token_type"?}}}``. A token past its ``refresh_on`` is left to msal.
        """
        document = self.state()
        if not document:
            return None
        now = time.time() if now is None else now
        wanted = set(t.lower() for t in targets)
        best = None
        for entry in (document.get("AccessToken") or {}).values():
            try:
                if not isinstance(entry, dict) or entry.get("credential_type") != "AccessToken":
                    continue
                if client_id and entry.get("client_id") != client_id:
                    continue
                if (entry.get("token_type") or "Bearer").lower() != "bearer":
                    continue
                if not wanted & set(str(entry.get("target") or "").lower().split()):
                    continue
                expires_on = int(entry["expires_on"])
                if expires_on - now < min_validity:
                    continue
                if entry.get("refresh_on") and int(entry["refresh_on"]) < now:
                    continue
                if entry.get("secret") and (best is None or expires_on > best[1]):
                    best = (entry["secret"], expires_on)
            except (KeyError, TypeError, ValueError):
                continue
        return best

    def remove_token(self, token):
        """Drop every cached access token equal to ``token`` (after Graph rejected it)."""
        with self.lock():
            document = self.state()
            if not document:
                return
            tokens = document.get("AccessToken") or {}
            kept = dict((k, v) for k, v in tokens.items() if not (isinstance(v, dict) and v.get("secret") == token))
            if len(kept) != len(tokens):
                document["AccessToken"] = kept
                self.write(json.dumps(document))


class _BaseAuth:
    """Common interface: ``method``, ``warnings``, ``get_token()``, ``invalidate(token)``."""

    method = None
    needs_msal = False

    def __init__(self):
        self.warnings = []
        self.token_requests = 0

    def get_token(self):
        raise NotImplementedError

    def invalidate(self, token):
        return False


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


class AccessTokenAuth(_BaseAuth):
    """A pre-obtained access token. It cannot be refreshed; an expired or non-Graph JWT is refused early."""

    method = "access_token"

    def __init__(self, token, graph_endpoint=None, now=time.time):
        super(AccessTokenAuth, self).__init__()
        self._token = str(token).strip()
        if self._token.lower().startswith("bearer "):
            self._token = self._token[7:].strip()
        self.graph_endpoint = graph_endpoint.rstrip("/") if graph_endpoint else None
        self._now = now

    def get_token(self):
        claims = jwt_claims(self._token)
        if claims:
            exp = claims.get("exp")
            if isinstance(exp, (int, float)) and exp < self._now():
                when = datetime.datetime.fromtimestamp(exp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
                raise AuthError("The access_token expired at %s: get a new one (for example with 'az account "
                                "get-access-token --resource %s')" % (when, self.graph_endpoint or CLOUDS["public"]["graph_endpoint"]),
                                code="expired_token", secrets=[self._token])
            known = [c["graph_endpoint"] for c in CLOUDS.values()]
            aud = claims.get("aud")
            if self.graph_endpoint in known and isinstance(aud, str):
                accepted = (self.graph_endpoint, self.graph_endpoint + "/", GRAPH_APP_ID)
                if aud.rstrip("/") not in [a.rstrip("/") for a in accepted]:
                    raise AuthError("The access_token is for %s, not for Microsoft Graph (%s): request it with --resource %s"
                                    % (aud, self.graph_endpoint, self.graph_endpoint), code="invalid_audience", secrets=[self._token])
        return self._token


class CommandTimeout(Exception):
    """The command runner stopped a command that ran past its deadline."""


def run_with_deadline(run_command, which, args, timeout):
    """Run ``args`` with ``run_command(args) -> (rc, stdout, stderr)`` (``AnsibleModule.run_command``, which has no
    deadline of its own: a hung ``az`` would hang the task forever) under coreutils ``timeout``, which stops it after
    ``timeout`` seconds (and kills it 5 s later if it ignores that). Raises ``CommandTimeout`` when it was stopped.
    Without a ``timeout`` program the command runs without a deadline."""
    wrapper = which("timeout")
    if not wrapper:
        return run_command(args)
    rc, out, err = run_command([wrapper, "--kill-after=5", str(max(1, int(timeout)))] + list(args))
    if rc in (124, 137):  # timeout(1): 124 when the deadline passed, 128+9 when it had to kill
        raise CommandTimeout(args[0])
    return rc, out, err


class AzureCliAuth(_BaseAuth):
    """Token from ``az account get-access-token --resource <graph_endpoint> [--tenant T] --output json``.

    ``run_command(args) -> (rc, stdout, stderr)`` runs the command (``AnsibleModule.run_command``).
    """

    method = "azure_cli"

    def __init__(self, graph_endpoint, run_command, tenant_id=None, az_path="az", timeout=30):
        super(AzureCliAuth, self).__init__()
        self.timeout = timeout
        self.resource = graph_endpoint.rstrip("/")
        self.run_command = run_command
        self.tenant_id = tenant_id
        self.az_path = az_path
        self._token = None
        self._expires_on = 0

    def command(self):
        args = [self.az_path, "account", "get-access-token", "--resource", self.resource]
        if self.tenant_id:
            args += ["--tenant", self.tenant_id]
        return args + ["--output", "json"]

    def get_token(self):
        if self._token and self._expires_on - time.time() > 60:
            return self._token
        self.token_requests += 1
        try:
            rc, out, err = self.run_command(self.command(), self.timeout)
        except OSError as exc:
            raise AuthError("Could not run the Azure CLI (%s): %s" % (self.az_path, exc.strerror or exc))
        except CommandTimeout:
            raise AuthError("The Azure CLI ('%s account get-access-token') gave no token within timeout=%s seconds and was "
                            "stopped. Check that 'az' runs non-interactively as this user (az login done, no prompt), or "
                            "raise timeout." % (self.az_path, self.timeout), code="Timeout")
        if rc != 0:
            detail = " ".join(str(err or "").split())[-600:] or "no error output"
            message = "The Azure CLI failed (rc=%s): %s" % (rc, detail)
            if "az login" in detail:
                message += " Run 'az login' (add --tenant for a specific tenant) as the user that runs Ansible."
            raise AuthError(message, code="azure_cli_failed")
        try:
            payload = json.loads(out)
            token = payload["accessToken"]
        except (ValueError, KeyError, TypeError):
            raise AuthError("The Azure CLI did not print a token document (JSON with accessToken) for "
                            "'az account get-access-token'", code="azure_cli_failed")
        expires_on = payload.get("expires_on")
        try:
            expires_on = float(expires_on) if expires_on is not None else time.time() + 300
        except (TypeError, ValueError):
            expires_on = time.time() + 300
        self._token = token
        self._expires_on = expires_on
        return token


def _missing(params, names):
    return [name for name in names if not params.get(name)]


def cache_dir_from_params(params, environ=None):
    """The token cache directory for these params, or None when ``token_cache`` is false."""
    if params.get("token_cache") is False:
        return None
    return params.get("token_cache_path") or default_cache_dir(environ)


def select_auth(params, transport, run_command=None, which=None, environ=None):
    """Return the auth object for ``params`` (the module parameters; env fallbacks already applied).

    ``auth_method: auto`` picks, in this order: ``access_token``; a certificate
    (``client_certificate_path``); a client secret; a managed identity when
    ``managed_identity_client_id`` is set or ``IDENTITY_ENDPOINT``/``MSI_ENDPOINT`` is in the
    environment; the Azure CLI when ``az`` is on PATH. It raises AuthError listing every way to supply
    credentials when none is usable, and names the missing option when a credential is incomplete.
    """
    environ = os.environ if environ is None else environ
    if which is None:
        import shutil
        which = shutil.which
    try:
        cloud = resolve_cloud(params, environ)
    except ValueError as exc:
        raise AuthError(str(exc), code="invalid_configuration")
    graph = cloud["graph_endpoint"]
    method = params.get("auth_method") or "auto"
    if method not in AUTH_METHODS:
        raise AuthError("auth_method must be one of %s, got %r" % (", ".join(AUTH_METHODS), method), code="invalid_configuration")
    az_path = None
    if method == "auto":
        if params.get("access_token"):
            method = "access_token"
        elif params.get("client_certificate_path"):
            method = "certificate"
        elif params.get("client_secret"):
            method = "client_secret"
        elif params.get("managed_identity_client_id") or environ.get("IDENTITY_ENDPOINT") or environ.get("MSI_ENDPOINT"):
            method = "managed_identity"
        else:
            az_path = which("az")
            if az_path:
                method = "azure_cli"
            else:
                message = NO_CREDENTIALS_MESSAGE % {"graph": graph}
                if params.get("tenant_id") and params.get("client_id"):
                    message = ("tenant_id and client_id are set but neither client_secret nor client_certificate_path. "
                               + message)
                raise AuthError(message, code="no_credentials")
    cache_dir = cache_dir_from_params(params, environ)
    if method in ("client_secret", "certificate"):
        secret_option = "client_secret" if method == "client_secret" else "client_certificate_path"
        missing = _missing(params, ["tenant_id", "client_id", secret_option])
        if missing:
            raise AuthError(
                "auth_method %s needs %s (missing: %s; environment variables AZURE_TENANT_ID/AZURE_TENANT, AZURE_CLIENT_ID, %s)"
                % (method, ", ".join(["tenant_id", "client_id", secret_option]), ", ".join(missing),
                   "AZURE_CLIENT_SECRET/AZURE_SECRET" if method == "client_secret" else "AZURE_CLIENT_CERTIFICATE_PATH"),
                code="invalid_configuration")
        if method == "client_secret":
            return ClientSecretAuth(params["tenant_id"], params["client_id"], params["client_secret"],
                                    cloud["authority_host"], graph, transport, cache_dir=cache_dir)
        return ClientCertificateAuth(params["tenant_id"], params["client_id"], params["client_certificate_path"],
                                     cloud["authority_host"], graph, transport,
                                     certificate_password=params.get("client_certificate_password"), cache_dir=cache_dir)
    if method == "managed_identity":
        return ManagedIdentityAuth(graph, transport, client_id=params.get("managed_identity_client_id"), cache_dir=cache_dir)
    if method == "access_token":
        if not params.get("access_token"):
            raise AuthError("auth_method access_token needs the access_token option", code="invalid_configuration")
        return AccessTokenAuth(params["access_token"], graph_endpoint=graph)
    az_path = az_path or which("az")
    if not az_path:
        raise AuthError("auth_method azure_cli needs the Azure CLI ('az') on PATH", code="invalid_configuration")
    if run_command is None:
        raise AuthError("auth_method azure_cli needs a command runner (AnsibleModule.run_command)", code="invalid_configuration")
    return AzureCliAuth(graph, run_command, tenant_id=params.get("tenant_id"), az_path=az_path, timeout=params.get("timeout") or 30)

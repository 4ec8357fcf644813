"""Login: OpenID configuration, instance discovery, client credentials (secret and certificate, with msal as it
ships), managed identity, AADSTS errors, and Graph 401/403 (identity.py; the permission tables of the Graph v1.0 API pages
and concepts/errors.md of microsoftgraph/microsoft-graph-docs-contrib, see permissions.py)."""

import base64
import time
import uuid

import jwt
import msal
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.emulator.harness import DEFAULT_CLIENT, DEFAULT_IDENTITY_HEADER, READONLY_CLIENT, make_client_certificate
from tests.emulator.tests.clients import new_session

SYSTEM_MI_SEED_CLIENT = "9a4b2c7d-1e3f-4a5b-8c6d-7e8f9a0b1c03"


@pytest.fixture
def http(emulator):
    return new_session(emulator)


def _token_request(emulator, http, tenant=None, **form):
    data = {"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT["client_id"], "client_secret": DEFAULT_CLIENT["client_secret"],
            "scope": emulator.graph_endpoint + "/.default"}
    data.update(form)
    data = {k: v for k, v in data.items() if v is not None}
    return http.post("%s/oauth2/v2.0/token" % emulator.authority(tenant), data=data)


def _assert_aadsts(response, status, error, code):
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["error_description"].startswith("AADSTS%d: " % code)
    assert body["error_codes"] == [code]
    for key in ("trace_id", "correlation_id", "timestamp"):
        assert body[key]


def test_openid_configuration(emulator, http):
    config = http.get("%s/v2.0/.well-known/openid-configuration" % emulator.authority()).json()
    assert config["token_endpoint"] == "%s/oauth2/v2.0/token" % emulator.authority()
    assert config["issuer"] == "%s/v2.0" % emulator.authority()
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    by_domain = http.get("%s/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration" % emulator.authority_host)
    assert by_domain.status_code == 200
    _assert_aadsts(http.get("%s/nosuchtenant/v2.0/.well-known/openid-configuration" % emulator.authority_host), 400, "invalid_tenant", 90002)


def test_instance_discovery(emulator, http):
    response = http.get(emulator.authority_host + "/common/discovery/instance",
                        params={"authorization_endpoint": "https://127.0.0.1/%s/oauth2/v2.0/authorize" % emulator.tenant_id, "api-version": "1.0"})
    assert response.json()["tenant_discovery_endpoint"] == "%s/v2.0/.well-known/openid-configuration" % emulator.authority()
    response = http.get(emulator.authority_host + "/common/discovery/instance",
                        params={"authorization_endpoint": "https://login.example.com/t/oauth2/v2.0/authorize", "api-version": "1.0"})
    assert response.json()["error"] == "invalid_instance"


def test_client_secret_token_and_errors(emulator, http):
    response = _token_request(emulator, http)
    assert response.status_code == 200
    assert set(response.json()) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert "." in response.json()["access_token"] and response.json()["access_token"].count(".") == 1  # opaque, not a JWT
    _assert_aadsts(_token_request(emulator, http, client_secret="wrong-secret"), 401, "invalid_client", 7000215)
    assert "Invalid client secret provided" in _token_request(emulator, http, client_secret="wrong-secret").json()["error_description"]
    _assert_aadsts(_token_request(emulator, http, client_id=str(uuid.uuid4())), 400, "unauthorized_client", 700016)
    _assert_aadsts(_token_request(emulator, http, tenant="00000000-1111-2222-3333-444444444444"), 400, "invalid_request", 90002)
    _assert_aadsts(_token_request(emulator, http, scope="https://graph.microsoft.com/User.Read"), 400, "invalid_scope", 1002012)
    _assert_aadsts(_token_request(emulator, http, grant_type="password"), 400, "unsupported_grant_type", 70003)
    _assert_aadsts(_token_request(emulator, http, client_secret=None), 401, "invalid_client", 7000218)
    _assert_aadsts(_token_request(emulator, http, scope=None), 400, "invalid_request", 900144)
    # Any resource accepted as long as the scope ends with /.default.
    assert _token_request(emulator, http, scope="https://graph.microsoft.com/.default").status_code == 200


def _msal_app(emulator, http, client_id, credential):
    return msal.ConfidentialClientApplication(client_id, client_credential=credential, authority=emulator.authority(), http_client=http,
                                              instance_discovery=False)


def test_msal_client_secret(emulator, http):
    result = _msal_app(emulator, http, DEFAULT_CLIENT["client_id"], DEFAULT_CLIENT["client_secret"]).acquire_token_for_client(
        scopes=[emulator.graph_endpoint + "/.default"])
    assert result["token_type"] == "Bearer" and result["access_token"]
    result = _msal_app(emulator, http, DEFAULT_CLIENT["client_id"], "wrong-secret").acquire_token_for_client(
        scopes=[emulator.graph_endpoint + "/.default"])
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000215]
    # Instance discovery against the emulator's own endpoint works too.
    app = msal.ConfidentialClientApplication(DEFAULT_CLIENT["client_id"], client_credential=DEFAULT_CLIENT["client_secret"],
                                             authority=emulator.authority(), http_client=http,
                                             instance_discovery=emulator.authority_host + "/common/discovery/instance")
    assert "access_token" in app.acquire_token_for_client(scopes=[emulator.graph_endpoint + "/.default"])


def test_msal_client_certificate(emulator, http):
    cert, key = make_client_certificate(password="pem-password")
    client_id = str(uuid.uuid4())
    emulator.seed({"clients": [{"client_id": client_id, "certificate_pem": cert, "permissions": ["Application.Read.All"]}]})
    scopes = [emulator.graph_endpoint + "/.default"]
    # msal >= 1.35 with public_certificate: PS256 and x5t#S256.
    credential = {"private_key": key, "public_certificate": cert, "passphrase": "pem-password"}
    token = _msal_app(emulator, http, client_id, credential).acquire_token_for_client(scopes=scopes)
    assert "access_token" in token
    listing = http.get(emulator.graph_endpoint + "/v1.0/servicePrincipals?$top=1", headers={"Authorization": "Bearer " + token["access_token"]})
    assert listing.status_code == 200
    # Legacy SHA-1 thumbprint: RS256 and x5t.
    sha1 = x509.load_pem_x509_certificate(cert.encode("ascii")).fingerprint(hashes.SHA1()).hex()
    token = _msal_app(emulator, http, client_id, {"private_key": key, "thumbprint": sha1, "passphrase": "pem-password"}).acquire_token_for_client(
        scopes=scopes)
    assert "access_token" in token
    # A certificate that is not registered, and a registered thumbprint with the wrong key.
    other_cert, other_key = make_client_certificate()
    result = _msal_app(emulator, http, client_id, {"private_key": other_key, "public_certificate": other_cert}).acquire_token_for_client(
        scopes=scopes)
    assert result["error"] == "invalid_client" and result["error_codes"] == [700027]
    result = _msal_app(emulator, http, client_id, {"private_key": other_key, "thumbprint": sha1}).acquire_token_for_client(scopes=scopes)
    assert result["error"] == "invalid_client" and "invalid signature" in result["error_description"]


def test_client_assertion_claims_are_checked(emulator, http):
    cert, key = make_client_certificate()
    client_id = str(uuid.uuid4())
    emulator.seed({"clients": [{"client_id": client_id, "certificate_pem": cert, "permissions": []}]})
    endpoint = "%s/oauth2/v2.0/token" % emulator.authority()
    thumb = x509.load_pem_x509_certificate(cert.encode("ascii")).fingerprint(hashes.SHA256())
    headers = {"x5t#S256": base64.urlsafe_b64encode(thumb).decode("ascii")}

    def attempt(**claims):
        payload = {"aud": endpoint, "iss": client_id, "sub": client_id, "exp": int(time.time()) + 600, "jti": str(uuid.uuid4())}
        payload.update(claims)
        assertion = jwt.encode(payload, key, algorithm="PS256", headers=headers)
        return http.post(endpoint, data={"grant_type": "client_credentials", "client_id": client_id, "scope": emulator.graph_endpoint + "/.default",
                                         "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                         "client_assertion": assertion})

    assert attempt().status_code == 200
    _assert_aadsts(attempt(aud="https://login.microsoftonline.com/x/oauth2/v2.0/token"), 401, "invalid_client", 700021)
    _assert_aadsts(attempt(iss=str(uuid.uuid4())), 401, "invalid_client", 700021)
    _assert_aadsts(attempt(exp=1000), 401, "invalid_client", 700024)


def test_managed_identity_app_service_with_msal(emulator, http, monkeypatch):
    monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.managed_identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", DEFAULT_IDENTITY_HEADER)
    system = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(), http_client=http)
    result = system.acquire_token_for_client(resource=emulator.graph_endpoint)
    assert result["token_type"] == "Bearer" and result["expires_in"] > 3000
    listing = http.get(emulator.graph_endpoint + "/v1.0/servicePrincipals?$top=1", headers={"Authorization": "Bearer " + result["access_token"]})
    assert listing.status_code == 200
    user = msal.ManagedIdentityClient(msal.UserAssignedManagedIdentity(client_id=SYSTEM_MI_SEED_CLIENT), http_client=http)
    assert "access_token" in user.acquire_token_for_client(resource=emulator.graph_endpoint)
    unknown = msal.ManagedIdentityClient(msal.UserAssignedManagedIdentity(client_id=str(uuid.uuid4())), http_client=http)
    assert "error" in unknown.acquire_token_for_client(resource=emulator.graph_endpoint)
    # Raw endpoint: the App Service response fields, and the identity header is required.
    raw = http.get(emulator.managed_identity_endpoint, params={"api-version": "2019-08-01", "resource": emulator.graph_endpoint},
                   headers={"X-IDENTITY-HEADER": DEFAULT_IDENTITY_HEADER})
    assert set(raw.json()) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert raw.json()["expires_on"].isdigit()
    wrong = http.get(emulator.managed_identity_endpoint, params={"api-version": "2019-08-01", "resource": emulator.graph_endpoint},
                     headers={"X-IDENTITY-HEADER": "not-the-header"})
    assert wrong.status_code == 401 and wrong.json()["statusCode"] == 401


def test_managed_identity_imds_with_msal(emulator, http, monkeypatch):
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", emulator.authority_host)
    result = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(), http_client=http).acquire_token_for_client(
        resource=emulator.graph_endpoint)
    assert "access_token" in result
    no_header = http.get(emulator.authority_host + "/metadata/identity/oauth2/token",
                         params={"api-version": "2018-02-01", "resource": emulator.graph_endpoint})
    assert no_header.status_code == 400 and no_header.json()["error"] == "invalid_request"


def test_graph_rejects_missing_invalid_and_expired_tokens(emulator, graph):
    response = graph.session.get(graph.root + "/servicePrincipals")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert response.json()["error"]["message"] == "Access token is empty."
    assert "WWW-Authenticate" in response.headers
    response = graph.get("/servicePrincipals", token="emu.not-a-real-token")
    assert response.status_code == 401 and response.json()["error"]["code"] == "InvalidAuthenticationToken"
    token = emulator.token(READONLY_CLIENT)
    assert graph.get("/servicePrincipals", token=token).status_code == 200
    emulator.mutate("expire_tokens", client_id=READONLY_CLIENT["client_id"])
    response = graph.get("/servicePrincipals", token=token)
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_insufficient_permissions_get_authorization_request_denied(emulator, graph):
    token = emulator.token(READONLY_CLIENT)
    response = graph.post("/applicationTemplates/8adf8e6e-67b2-4cf2-a259-e3dc5476c621/instantiate", {"displayName": "nope"}, token=token)
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    _app, sp = graph.new_app()
    assert graph.get("/servicePrincipals/%s/synchronization/jobs" % sp["id"], token=token).status_code == 200
    assert graph.post("/servicePrincipals/%s/synchronization/jobs" % sp["id"], {"templateId": "scim"}, token=token).status_code == 403
    # Reports need AuditLog.Read.All and Directory.Read.All.
    client_id = str(uuid.uuid4())
    emulator.seed({"clients": [{"client_id": client_id, "client_secret": "audit-only-secret", "permissions": ["AuditLog.Read.All"]}]})
    audit_only = emulator.token({"tenant_id": emulator.tenant_id, "client_id": client_id, "client_secret": "audit-only-secret"})
    assert graph.get("/auditLogs/provisioning", token=audit_only).status_code == 403


def test_owned_by_permission_limits_writes_to_owned_objects(emulator, graph):
    client_id = str(uuid.uuid4())
    emulator.seed({"clients": [{"client_id": client_id, "client_secret": "owned-by-secret", "permissions": ["Application.ReadWrite.OwnedBy"]}]})
    token = emulator.token({"tenant_id": emulator.tenant_id, "client_id": client_id, "client_secret": "owned-by-secret"})
    created = graph.post("/applicationTemplates/8adf8e6e-67b2-4cf2-a259-e3dc5476c621/instantiate", {"displayName": "owned"}, token=token)
    assert created.status_code == 201
    own_sp = created.json()["servicePrincipal"]["id"]
    assert graph.call("PATCH", "/servicePrincipals/" + own_sp, {"notes": "mine"}, token=token).status_code == 204
    assert graph.post("/servicePrincipals/%s/synchronization/jobs" % own_sp, {"templateId": "scim"}, token=token).status_code == 201
    _app, foreign = graph.new_app()
    assert graph.get("/servicePrincipals/" + foreign["id"], token=token).status_code == 200  # reading all is allowed
    assert graph.call("PATCH", "/servicePrincipals/" + foreign["id"], {"notes": "theirs"}, token=token).status_code == 403

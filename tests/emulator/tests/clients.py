"""Plain-requests clients the emulator tests use: they follow the public Graph and SCIM docs, not collection code."""

import json
import urllib.parse
import uuid

import requests

from tests.emulator.harness import DEFAULT_CLOUDFLARE_ACCOUNTS, NON_GALLERY_TEMPLATE_ID, USER_ROLE_ID


def admin_refusal(path, message):
    """The text of the ``EmulatorError`` (harness) for an admin POST to ``path`` that the emulator refused (400, ``message``)."""
    return "admin POST %s -> 400: %s" % (path, json.dumps({"error": message}, separators=(",", ":")))


def new_session(emu):
    session = requests.Session()
    session.trust_env = False  # our CA and no proxies, whatever the environment says
    session.verify = emu.ca_path
    return session


class Graph:
    """Plain-requests Graph client for the tests (no collection code involved)."""

    def __init__(self, emu, token):
        self.emu = emu
        self.token = token
        self.root = emu.graph_endpoint + "/v1.0"
        self.session = new_session(emu)

    def call(self, method, path, body=None, headers=None, token=None, **kwargs):
        merged = {"Authorization": "Bearer " + (token or self.token)}
        merged.update(headers or {})
        url = path if path.startswith("https://") else self.root + path
        return self.session.request(method, url, json=body, headers=merged, timeout=30, **kwargs)

    def get(self, path, **kwargs):
        return self.call("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.call("POST", path, body, **kwargs)

    def all(self, path, **kwargs):
        """Follow @odata.nextLink verbatim; return all items."""
        items, url = [], path
        while url:
            response = self.get(url, **kwargs)
            assert response.status_code == 200, response.text
            body = response.json()
            items.extend(body["value"])
            url = body.get("@odata.nextLink")
        return items

    def filter_path(self, collection, expression, **params):
        params["$filter"] = expression
        return "/%s?%s" % (collection, urllib.parse.urlencode(params, quote_via=urllib.parse.quote))

    def new_app(self, name=None):
        """Instantiate a non-gallery app; return (application, servicePrincipal)."""
        response = self.post("/applicationTemplates/%s/instantiate" % NON_GALLERY_TEMPLATE_ID,
                             {"displayName": name or "Cloudflare SCIM - test %s" % uuid.uuid4().hex[:8]})
        assert response.status_code == 201, response.text
        return response.json()["application"], response.json()["servicePrincipal"]

    def new_job(self, sp_id):
        response = self.post("/servicePrincipals/%s/synchronization/jobs" % sp_id, {"templateId": "scim"})
        assert response.status_code == 201, response.text
        return response.json()

    def configure(self, sp_id, account_index=0, token=None, query=""):
        account = DEFAULT_CLOUDFLARE_ACCOUNTS[account_index]
        base = self.emu.cloudflare_base_address(account["account_id"]) + query
        response = self.call("PUT", "/servicePrincipals/%s/synchronization/secrets" % sp_id,
                             {"value": [{"key": "BaseAddress", "value": base}, {"key": "SecretToken", "value": token or account["token"]}]})
        assert response.status_code == 204, response.text
        return account

    def assign(self, sp_id, principal_id):
        response = self.post("/servicePrincipals/%s/appRoleAssignedTo" % sp_id,
                             {"principalId": principal_id, "resourceId": sp_id, "appRoleId": USER_ROLE_ID})
        assert response.status_code == 201, response.text
        return response.json()

    def job(self, sp_id, job_id):
        response = self.get("/servicePrincipals/%s/synchronization/jobs/%s" % (sp_id, job_id))
        assert response.status_code == 200, response.text
        return response.json()

    def action(self, sp_id, job_id, name, body=None):
        return self.post("/servicePrincipals/%s/synchronization/jobs/%s/%s" % (sp_id, job_id, name), body)


class Scim:
    """Plain-requests Cloudflare SCIM client for one account."""

    def __init__(self, emu, account_id, token):
        self.base = emu.cloudflare_base_address(account_id)
        self.token = token
        self.session = new_session(emu)

    def call(self, method, path, body=None, token=None, **kwargs):
        headers = {"Authorization": "Bearer " + (token or self.token), "Content-Type": "application/scim+json"}
        data = json.dumps(body) if body is not None else None
        return self.session.request(method, self.base + path, data=data, headers=headers, timeout=30, **kwargs)

    def users(self):
        response = self.call("GET", "/Users", params={"count": "1000"})
        assert response.status_code == 200, response.text
        return {user["userName"]: user for user in response.json()["Resources"]}

    def groups(self):
        response = self.call("GET", "/Groups", params={"count": "1000"})
        assert response.status_code == 200, response.text
        return {group["displayName"]: group for group in response.json()["Resources"]}

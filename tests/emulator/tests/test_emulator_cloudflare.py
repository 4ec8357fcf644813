"""Cloudflare SCIM v2 side (cloudflare.py, whose docstring names the cloudflare-docs pages and api-schemas operations)."""

import uuid

import pytest

from tests.emulator.harness import DEFAULT_CLOUDFLARE_ACCOUNTS
from tests.emulator.tests.clients import Scim

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


@pytest.fixture
def scim(emulator, account):
    return Scim(emulator, account["account_id"], account["token"])


def _error(response, status, scim_type=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"] and body["status"] == str(status) and body["detail"]
    if scim_type:
        assert body["scimType"] == scim_type
    return body


def _user(name, email=None, **extra):
    body = {"schemas": [USER], "userName": name, "active": True, "name": {"givenName": "G", "familyName": "F"},
            "emails": [{"type": "work", "primary": True, "value": email or name}]}
    body.update(extra)
    return body


def test_discovery_endpoints(scim):
    config = scim.call("GET", "/ServiceProviderConfig").json()
    assert config["patch"]["supported"] is True and config["bulk"]["supported"] is False and config["filter"]["supported"] is True
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = scim.call("GET", "/ResourceTypes").json()
    assert {r["id"]: r["endpoint"] for r in types["Resources"]} == {"User": "/Users", "Group": "/Groups"}
    assert scim.call("GET", "/ResourceTypes/User").json()["schema"] == USER
    schemas = scim.call("GET", "/Schemas").json()
    assert {s["id"] for s in schemas["Resources"]} == {USER, GROUP}
    user_schema = scim.call("GET", "/Schemas/" + USER).json()
    assert any(attribute["name"] == "userName" for attribute in user_schema["attributes"])
    _error(scim.call("GET", "/Schemas/urn:nope"), 404)


def test_authentication_errors_use_cloudflare_json(scim, emulator):
    unknown = scim.call("GET", "/Users", token="not-a-token")
    assert unknown.status_code == 401
    assert unknown.json() == {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}], "messages": [], "result": None}
    other_account = scim.call("GET", "/Users", token=DEFAULT_CLOUDFLARE_ACCOUNTS[0]["token"])
    assert other_account.status_code == 403 and other_account.json()["success"] is False
    no_permission = Scim(emulator, DEFAULT_CLOUDFLARE_ACCOUNTS[2]["account_id"], "cf-token-without-scim-permission-03").call("GET", "/Users")
    assert no_permission.status_code == 403
    missing = scim.session.get(scim.base + "/Users")
    assert missing.status_code == 400 and missing.json()["errors"][0]["code"] == 9106
    emulator.mutate("revoke_cloudflare_token", account_id=scim.base.split("/accounts/")[1].split("/")[0], token=scim.token)
    assert scim.call("GET", "/Users").status_code == 401


def test_user_rules_and_lifecycle(scim):
    created = scim.call("POST", "/Users", _user("ann@example.com"))
    assert created.status_code == 201 and created.headers["Location"].endswith("/Users/" + created.json()["id"])
    user = created.json()
    assert user["active"] is True and user["meta"]["resourceType"] == "User"
    _error(scim.call("POST", "/Users", _user("not-an-email")), 400, "invalidValue")
    _error(scim.call("POST", "/Users", _user("bea@example.com", email="Bea@example.com")), 400, "invalidValue")
    _error(scim.call("POST", "/Users", _user("ANN@example.com")), 409, "uniqueness")
    _error(scim.call("POST", "/Users", _user("cy@example.com", nickName=5)), 400)
    _error(scim.call("POST", "/Users", dict(_user("dee@example.com"), favouriteColour="blue")), 400, "invalidSyntax")
    assert scim.call("GET", "/Users/" + user["id"]).json()["userName"] == "ann@example.com"
    _error(scim.call("GET", "/Users/" + uuid.uuid4().hex), 404)
    # Entra's default PATCH dialect: capitalised ops, string booleans.
    patch = {"schemas": [PATCH], "Operations": [
        {"op": "Replace", "path": "active", "value": "False"}, {"op": "Replace", "path": "name.familyName", "value": "Fox"}]}
    patched = scim.call("PATCH", "/Users/" + user["id"], patch)
    assert patched.status_code == 200 and patched.json()["active"] is False and patched.json()["name"]["familyName"] == "Fox"
    # RFC form and the work e-mail alias of userName.
    patch = {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "active", "value": True},
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "ann.new@example.com"}]}
    patched = scim.call("PATCH", "/Users/" + user["id"], patch).json()
    assert patched["active"] is True and patched["userName"] == "ann.new@example.com"
    _error(scim.call("PATCH", "/Users/" + user["id"], {"schemas": [PATCH], "Operations": [{"op": "frob", "path": "active"}]}), 400)
    _error(scim.call("PATCH", "/Users/" + user["id"], {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "userName",
                                                                                           "value": "plain"}]}), 400)
    _error(scim.call("DELETE", "/Users/" + user["id"]), 405)


def test_user_filter_and_paging(scim):
    for index in range(5):
        assert scim.call("POST", "/Users", _user("p%d@example.com" % index)).status_code == 201
    found = scim.call("GET", "/Users", params={"filter": 'userName eq "P3@example.com"'}).json()
    assert found["totalResults"] == 1 and found["Resources"][0]["userName"] == "p3@example.com"
    assert scim.call("GET", "/Users", params={"filter": 'userName eq "nobody@example.com"'}).json()["totalResults"] == 0
    by_email = scim.call("GET", "/Users", params={"filter": 'emails[type eq "work"].value eq "p1@example.com"'}).json()
    assert by_email["totalResults"] == 1
    page = scim.call("GET", "/Users", params={"startIndex": "2", "count": "2"}).json()
    assert page["startIndex"] == 2 and page["itemsPerPage"] == 2 and page["totalResults"] == 5
    assert [u["userName"] for u in page["Resources"]] == ["p1@example.com", "p2@example.com"]
    assert scim.call("GET", "/Users", params={"count": "0"}).json()["Resources"] == []
    _error(scim.call("GET", "/Users", params={"filter": "userName pr"}), 400, "invalidFilter")
    only = scim.call("GET", "/Users", params={"attributes": "userName", "count": "1"}).json()["Resources"][0]
    assert set(only) == {"id", "schemas", "meta", "userName"}


def test_groups_rules_members_and_delete(scim):
    ann = scim.call("POST", "/Users", _user("gann@example.com")).json()
    bob = scim.call("POST", "/Users", _user("gbob@example.com")).json()
    _error(scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "CF Admins"}), 400, "invalidValue")
    _error(scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": " "}), 400)
    _error(scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "Ghosts", "members": [{"value": uuid.uuid4().hex}]}), 400)
    created = scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "Engineering", "externalId": "e1"})
    assert created.status_code == 201
    group = created.json()
    _error(scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "engineering"}), 409, "uniqueness")
    add = {"schemas": [PATCH], "Operations": [{"op": "Add", "path": "members", "value": [{"value": ann["id"]}, {"value": bob["id"]}]}]}
    assert {m["value"] for m in scim.call("PATCH", "/Groups/" + group["id"], add).json()["members"]} == {ann["id"], bob["id"]}
    # Entra's member removal format (value list) and the RFC filter form.
    remove = {"schemas": [PATCH], "Operations": [{"op": "Remove", "path": "members", "value": [{"value": ann["id"]}]}]}
    assert [m["value"] for m in scim.call("PATCH", "/Groups/" + group["id"], remove).json()["members"]] == [bob["id"]]
    remove = {"schemas": [PATCH], "Operations": [{"op": "remove", "path": 'members[value eq "%s"]' % bob["id"]}]}
    assert scim.call("PATCH", "/Groups/" + group["id"], remove).json()["members"] == []
    rename = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "CF-Engineering"}]}
    _error(scim.call("PATCH", "/Groups/" + group["id"], rename), 400)
    listed = scim.call("GET", "/Groups", params={"filter": 'displayName eq "Engineering"', "excludedAttributes": "members"}).json()
    assert listed["totalResults"] == 1 and "members" not in listed["Resources"][0]
    assert scim.call("DELETE", "/Groups/" + group["id"]).status_code == 204
    _error(scim.call("GET", "/Groups/" + group["id"]), 404)


def test_deprecated_virtual_group_is_listed_but_protected(scim):
    groups = scim.call("GET", "/Groups").json()["Resources"]
    virtual = next(g for g in groups if g["displayName"].startswith("CF-"))
    assert virtual["displayName"].endswith(" - Administrator")
    _error(scim.call("DELETE", "/Groups/" + virtual["id"]), 400, "mutability")
    rename = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "Renamed"}]}
    _error(scim.call("PATCH", "/Groups/" + virtual["id"], rename), 400, "mutability")
    user = scim.call("POST", "/Users", _user("vg@example.com")).json()
    add = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}]}
    assert scim.call("PATCH", "/Groups/" + virtual["id"], add).status_code == 200


def test_routing_errors(scim, emulator):
    session = scim.session
    bad_account = session.get(emulator.cloudflare_api_endpoint + "/accounts/not-an-id/scim/v2/Users", headers={"Authorization": "Bearer x"})
    assert bad_account.status_code == 404 and bad_account.json()["errors"][0]["code"] == 7003
    assert session.get(emulator.cloudflare_api_endpoint + "/zones").json()["errors"][0]["code"] == 7000
    _error(scim.call("GET", "/Widgets"), 404)
    _error(scim.call("PUT", "/Users/" + uuid.uuid4().hex, _user("x@example.com")), 404)

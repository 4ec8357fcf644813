"""The seed guide's sequence with plain requests, checked step by step: token -> instantiate -> create job -> put secrets
-> validateCredentials -> assign -> start -> provisioning cycle -> users and groups present in Cloudflare. The seed guide
is "(Optional) Automate Cloudflare's SCIM integration" in cloudflare/cloudflare-docs
src/content/docs/fundamentals/account/account-security/scim-setup/entra.mdx (token, instantiate, create job, secrets); the
steps after it follow MicrosoftDocs/entra-docs docs/identity/app-provisioning/application-provisioning-configuration-api.md
(test the connection, save the credentials, start the job) and the same entra.mdx (assign users and groups)."""

import json
import uuid


from tests.emulator.harness import DEFAULT_CLIENT, DEFAULT_CLOUDFLARE_ACCOUNTS, DEFAULT_SEED, USER_ROLE_ID
from tests.emulator.tests.clients import new_session

ALICE = "a1b2c3d4-0001-4000-8000-000000000001"
CLOUDFLARE_ADMINS = "b1c2d3e4-0001-4000-8000-000000000001"
CAROL_UPN = "carol@contoso.onmicrosoft.com"


def test_seed_guide_sequence(emulator, scim_factory):
    session = new_session(emulator)
    emulator.reset_log()

    # 1. Token (client credentials, scope <graph>/.default).
    response = session.post("%s/%s/oauth2/v2.0/token" % (emulator.authority_host, DEFAULT_CLIENT["tenant_id"]),
                            data={"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT["client_id"],
                                  "client_secret": DEFAULT_CLIENT["client_secret"], "scope": emulator.graph_endpoint + "/.default"})
    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] > 3000
    headers = {"Authorization": "Bearer " + token["access_token"]}
    graph = emulator.graph_endpoint + "/v1.0"

    # 2. Instantiate the non-gallery template: 201 with both objects.
    name = "Cloudflare SCIM - guide %s" % uuid.uuid4().hex[:6]
    response = session.post(graph + "/applicationTemplates/8adf8e6e-67b2-4cf2-a259-e3dc5476c621/instantiate",
                            json={"displayName": name}, headers=headers)
    assert response.status_code == 201
    assert response.headers["request-id"]
    created = response.json()
    assert created["@odata.context"].endswith("$metadata#microsoft.graph.applicationServicePrincipal")
    sp = created["servicePrincipal"]
    assert created["application"]["appId"] == sp["appId"]
    assert created["application"]["applicationTemplateId"] == sp["applicationTemplateId"] == "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
    assert sp["appRoleAssignmentRequired"] is True
    assert {role["id"] for role in sp["appRoles"]} == {USER_ROLE_ID, "b9632174-c057-4f7e-951b-be3adc52bfe6"}

    # 3. Poll the SP (no lag with the "none" profile).
    response = session.get(graph + "/servicePrincipals/" + sp["id"], headers=headers)
    assert response.status_code == 200 and response.json()["displayName"] == name

    # 4. Create the provisioning job: Disabled / NotConfigured / never interval.
    response = session.post(graph + "/servicePrincipals/%s/synchronization/jobs" % sp["id"], json={"templateId": "scim"}, headers=headers)
    assert response.status_code == 201
    job = response.json()
    assert job["id"].startswith("scim.") and job["templateId"] == "scim"
    assert job["schedule"] == {"expiration": None, "interval": "P10675199DT2H48M5.4775807S", "state": "Disabled"}
    assert job["status"]["code"] == "NotConfigured"
    assert job["status"]["steadyStateFirstAchievedTime"] == "0001-01-01T00:00:00Z"
    job_url = graph + "/servicePrincipals/%s/synchronization/jobs/%s" % (sp["id"], job["id"])

    # 5. Test connection with explicit credentials (nothing saved yet), then save them.
    account = DEFAULT_CLOUDFLARE_ACCOUNTS[1]
    credentials = [{"key": "BaseAddress", "value": emulator.cloudflare_base_address(account["account_id"])},
                   {"key": "SecretToken", "value": account["token"]}]
    response = session.post(job_url + "/validateCredentials", json={"useSavedCredentials": False, "credentials": credentials}, headers=headers)
    assert response.status_code == 204 and response.content == b""
    response = session.put(graph + "/servicePrincipals/%s/synchronization/secrets" % sp["id"], json={"value": credentials}, headers=headers)
    assert response.status_code == 204
    response = session.post(job_url + "/validateCredentials", json={"useSavedCredentials": True}, headers=headers)
    assert response.status_code == 204
    response = session.get(graph + "/servicePrincipals/%s/synchronization/secrets" % sp["id"], headers=headers)
    assert {item["key"]: item["value"] for item in response.json()["value"]} == {
        "BaseAddress": emulator.cloudflare_base_address(account["account_id"]), "SecretToken": "*"}

    # 6. Assign a group and a user with the User role.
    for principal in (CLOUDFLARE_ADMINS, "a1b2c3d4-0003-4000-8000-000000000003"):
        response = session.post(graph + "/servicePrincipals/%s/appRoleAssignedTo" % sp["id"], headers=headers,
                                json={"principalId": principal, "resourceId": sp["id"], "appRoleId": USER_ROLE_ID})
        assert response.status_code == 201
        assert response.json()["principalType"] in ("User", "Group")

    # 7. Start: 204, schedule Active, status NotRun until the first cycle.
    response = session.post(job_url + "/start", headers=headers)
    assert response.status_code == 204
    started = session.get(job_url, headers=headers).json()
    assert started["schedule"]["state"] == "Active" and started["status"]["code"] == "NotRun"

    # 8. One provisioning cycle.
    result = emulator.run_cycle(sp["id"])["jobs"]
    assert [(r["jobId"], r["result"]) for r in result] == [(job["id"], "Succeeded")]
    status = session.get(job_url, headers=headers).json()["status"]
    assert status["code"] == "Active"
    assert status["lastExecution"]["state"] == "Succeeded"
    assert status["lastExecution"]["countExported"] == 4  # alice, bob, carol, the group
    assert status["steadyStateFirstAchievedTime"] != "0001-01-01T00:00:00Z"
    counts = {entry["key"]: entry["value"] for entry in status["synchronizedEntryCountByType"]}
    assert sorted(counts.values()) == [1, 3]

    # 9. Users and the group are in the Cloudflare account, with the Entra attributes.
    scim = scim_factory(1)
    users = scim.users()
    assert {"alice@contoso.onmicrosoft.com", "bob@contoso.onmicrosoft.com", CAROL_UPN} <= set(users)
    alice = users["alice@contoso.onmicrosoft.com"]
    assert alice["active"] is True and alice["name"] == {"givenName": "Alice", "familyName": "Anders"}
    assert alice["emails"][0]["value"] == "alice@contoso.onmicrosoft.com"
    group = scim.groups()["Cloudflare Admins"]
    member_ids = {m["value"] for m in group["members"]}
    assert member_ids == {users["alice@contoso.onmicrosoft.com"]["id"], users["bob@contoso.onmicrosoft.com"]["id"]}

    # 10. Provisioning logs for the job, newest first, all successful.
    response = session.get(graph + "/auditLogs/provisioning", params={"$filter": "jobId eq '%s'" % job["id"], "$top": "10"}, headers=headers)
    assert response.status_code == 200
    entries = response.json()["value"]
    assert len(entries) == 4
    assert {e["provisioningStatusInfo"]["status"] for e in entries} == {"success"}
    assert [e["activityDateTime"] for e in entries] == sorted((e["activityDateTime"] for e in entries), reverse=True)

    # 11. The request log counted it all, and no secret is in the state dump or the log.
    log = emulator.requests_log()
    assert log["counts"]["token_requests"] == 1
    assert log["counts"]["by_operation"]["instantiate"] == 1
    assert log["counts"]["writes"] >= 5
    dump = json.dumps(emulator.state()) + json.dumps(log) + emulator.log_tail(1000)
    secrets = [DEFAULT_CLIENT["client_secret"], account["token"], DEFAULT_SEED["identity_header"], token["access_token"]]
    leaked = [index for index, secret in enumerate(secrets) if secret in dump]
    assert leaked == []
    saved = next(s for s in emulator.state()["secrets"][sp["id"]] if s["key"] == "SecretToken")["value"]
    assert saved.startswith("sha256:") and len(saved) == len("sha256:") + 12

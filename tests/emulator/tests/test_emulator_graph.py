"""One test per Graph quirk the emulator implements. The section numbers in the test names and headers (s1, s4c, ...) are
the topics of the table in docs/emulator.md, "Sources", which names the upstream page of each."""

import json
import time
import uuid

from tests.emulator.harness import USER_ROLE_ID

TEMPLATE = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
ALICE = "a1b2c3d4-0001-4000-8000-000000000001"
DAVE = "a1b2c3d4-0004-4000-8000-000000000004"
ADMINS = "b1c2d3e4-0001-4000-8000-000000000001"
ENGINEERS = "b1c2d3e4-0002-4000-8000-000000000002"


def _assert_graph_error(response, status, code):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    inner = error["innerError"]
    assert inner["request-id"] == response.headers["request-id"]
    assert inner["date"] and inner["client-request-id"]
    return error


# ---------------------------------------------------------------------------------------------- §1 lookups
def test_s1_filter_eq_and_quote_escape_and_template_id(graph):
    name = "O'Brien SCIM %s" % uuid.uuid4().hex[:6]
    _app, sp = graph.new_app(name)
    escaped = name.replace("'", "''")
    found = graph.all(graph.filter_path("servicePrincipals", "displayName eq '%s' and applicationTemplateId eq '%s'" % (escaped, TEMPLATE)))
    assert [item["id"] for item in found] == [sp["id"]]
    apps = graph.all(graph.filter_path("applications", "displayName eq '%s'" % escaped, **{"$select": "id,appId,displayName"}))
    assert len(apps) == 1 and set(apps[0]) == {"id", "appId", "displayName"}
    assert graph.all(graph.filter_path("servicePrincipals", "appId eq '%s'" % sp["appId"]))[0]["id"] == sp["id"]
    # Not found is an empty collection, not a 404.
    assert graph.all(graph.filter_path("servicePrincipals", "displayName eq 'no such app %s'" % uuid.uuid4().hex)) == []
    # Directory string comparisons ignore case.
    assert len(graph.all(graph.filter_path("servicePrincipals", "displayName eq '%s'" % escaped.upper()))) == 1


def test_s1_advanced_operators_need_consistency_level_and_count(graph):
    path = graph.filter_path("servicePrincipals", "displayName ne 'x'")
    error = _assert_graph_error(graph.get(path), 400, "Request_UnsupportedQuery")
    assert "ConsistencyLevel" in error["message"]
    response = graph.get(path + "&$count=true", headers={"ConsistencyLevel": "eventual"})
    assert response.status_code == 200 and "@odata.count" in response.json()
    _assert_graph_error(graph.get(graph.filter_path("servicePrincipals", "notes eq 'x'")), 400, "Request_UnsupportedQuery")
    _assert_graph_error(graph.get(graph.filter_path("servicePrincipals", "displayName eq")), 400, "BadRequest")


def test_s1_instantiate_is_not_idempotent(graph):
    name = "twice %s" % uuid.uuid4().hex[:6]
    first = graph.new_app(name)
    second = graph.new_app(name)
    assert first[1]["id"] != second[1]["id"]
    assert len(graph.all(graph.filter_path("servicePrincipals", "displayName eq '%s'" % name))) == 2


# ---------------------------------------------------------------------------------------------- §2/§3 instantiate and readiness
def test_s2_instantiate_returns_both_objects_with_roles(graph):
    response = graph.post("/applicationTemplates/%s/instantiate" % TEMPLATE, {"displayName": "shape", "serviceManagementReference": "ITSM-1"})
    assert response.status_code == 201
    body = response.json()
    app, sp = body["application"], body["servicePrincipal"]
    assert app["serviceManagementReference"] == "ITSM-1" and app["applicationTemplateId"] == TEMPLATE
    assert sp["applicationTemplateId"] == TEMPLATE and sp["appRoleAssignmentRequired"] is True
    roles = {role["displayName"]: role for role in sp["appRoles"]}
    assert roles["User"]["id"] == USER_ROLE_ID and roles["msiam_access"]["id"] == "b9632174-c057-4f7e-951b-be3adc52bfe6"
    assert roles["User"]["allowedMemberTypes"] == ["User"]
    assert "notes" in sp and "tags" in sp
    # The OpenAPI form of the action path works too; bad bodies are refused.
    assert graph.post("/applicationTemplates/%s/microsoft.graph.instantiate" % TEMPLATE, {"displayName": "alt"}).status_code == 201
    _assert_graph_error(graph.post("/applicationTemplates/%s/instantiate" % TEMPLATE, {"displayName": "x", "bogus": 1}), 400, "Request_BadRequest")
    _assert_graph_error(graph.post("/applicationTemplates/%s/instantiate" % TEMPLATE, {}), 400, "Request_BadRequest")
    _assert_graph_error(graph.post("/applicationTemplates/%s/instantiate" % str(uuid.uuid4()), {"displayName": "x"}), 404,
                        "Request_ResourceNotFound")


def test_s2_s3_replication_lag_answers_404_then_appears(graph, faults):
    faults({"replication_lag_s": 0.8})
    _app, sp = graph.new_app()
    error = _assert_graph_error(graph.get("/servicePrincipals/" + sp["id"]), 404, "Request_ResourceNotFound")
    assert error["message"] == ("Resource '%s' does not exist or one of its queried reference-property objects are not present." % sp["id"])
    assert graph.all(graph.filter_path("servicePrincipals", "id eq '%s'" % sp["id"])) == []
    time.sleep(0.9)
    assert graph.get("/servicePrincipals/" + sp["id"]).status_code == 200


def test_s2_instantiate_can_answer_404_although_it_created_the_objects(graph, faults):
    faults({"instantiate_404_rate": 1.0})
    name = "liar %s" % uuid.uuid4().hex[:6]
    response = graph.post("/applicationTemplates/%s/instantiate" % TEMPLATE, {"displayName": name})
    _assert_graph_error(response, 404, "Request_ResourceNotFound")
    assert len(graph.all(graph.filter_path("applications", "displayName eq '%s'" % name))) == 1


def test_s2_delete_application_removes_its_service_principal(graph):
    app, sp = graph.new_app()
    assert graph.call("DELETE", "/applications/" + app["id"]).status_code == 204
    _assert_graph_error(graph.get("/servicePrincipals/" + sp["id"]), 404, "Request_ResourceNotFound")
    _assert_graph_error(graph.get("/applications/" + app["id"]), 404, "Request_ResourceNotFound")


def test_sp_patch_notes_and_validation(graph):
    _app, sp = graph.new_app()
    path = "/servicePrincipals/" + sp["id"]
    assert graph.call("PATCH", path, {"notes": "entrascim:token-fingerprint=sha256:abc", "tags": ["a", "b"]}).status_code == 204
    fetched = graph.get(path + "?$select=notes,tags").json()
    assert fetched["notes"] == "entrascim:token-fingerprint=sha256:abc" and fetched["tags"] == ["a", "b"]
    assert "does not exist as a declared property" in _assert_graph_error(graph.call("PATCH", path, {"notez": "x"}), 400, "Request_BadRequest")["message"]
    assert "read-only" in _assert_graph_error(graph.call("PATCH", path, {"appId": str(uuid.uuid4())}), 400, "Request_BadRequest")["message"]
    _assert_graph_error(graph.call("PATCH", path, {"notes": 5}), 400, "Request_BadRequest")
    _assert_graph_error(graph.call("PATCH", path, {"tags": "not-a-list"}), 400, "Request_BadRequest")
    _assert_graph_error(graph.call("PATCH", path, {"notes": "x" * 1025}), 400, "Request_BadRequest")
    assert graph.get(path + "?$select=notes").json()["notes"] == "entrascim:token-fingerprint=sha256:abc"  # failed PATCHes changed nothing
    assert graph.get("/servicePrincipals(appId='%s')" % sp["appId"]).json()["id"] == sp["id"]  # alternate key


# ---------------------------------------------------------------------------------------------- §4 jobs
def test_s4a_templates_list_scim(graph):
    _app, sp = graph.new_app()
    templates = graph.get("/servicePrincipals/%s/synchronization/templates" % sp["id"]).json()["value"]
    assert [t["id"] for t in templates] == ["scim"] and templates[0]["factoryTag"] == "scim"


def test_s4c_create_job_shape_and_template_validation(graph):
    _app, sp = graph.new_app()
    job = graph.new_job(sp["id"])
    assert job["id"].startswith("scim.") and job["id"].endswith(sp["appId"])
    assert job["schedule"]["state"] == "Disabled" and job["schedule"]["interval"] == "P10675199DT2H48M5.4775807S"
    status = job["status"]
    assert status["code"] == "NotConfigured" and status["lastExecution"] is None and status["quarantine"] is None
    assert status["synchronizedEntryCountByType"] == [] and status["countSuccessiveCompleteFailures"] == 0
    path = "/servicePrincipals/%s/synchronization/jobs" % sp["id"]
    _assert_graph_error(graph.post(path, {"templateId": "customappsso"}), 400, "Request_BadRequest")
    _assert_graph_error(graph.post(path, {"templateId": "scim", "schedule": {}}), 400, "Request_BadRequest")
    assert [j["id"] for j in graph.all(path)] == [job["id"]]


def test_s4c_second_job_with_same_template_is_a_duplicate(graph):
    _app, sp = graph.new_app()
    first = graph.new_job(sp["id"])
    second = graph.new_job(sp["id"])
    assert first["id"] != second["id"]
    assert len(graph.all("/servicePrincipals/%s/synchronization/jobs" % sp["id"])) == 2


def test_s4c_sync_calls_fail_transiently_on_a_fresh_service_principal(graph, faults):
    faults({"replication_lag_s": 0.4, "seed": 3})
    response = graph.post("/applicationTemplates/%s/instantiate" % TEMPLATE, {"displayName": "fresh %s" % uuid.uuid4().hex[:6]})
    sp = response.json()["servicePrincipal"]
    time.sleep(0.45)  # the directory knows it now; the provisioning service needs a little longer
    seen = set()
    for _attempt in range(8):
        response = graph.post("/servicePrincipals/%s/synchronization/jobs" % sp["id"], {"templateId": "scim"})
        if response.status_code == 201:
            break
        error = response.json()["error"]
        seen.add((response.status_code, error["code"]))
        if error["code"] == "UnknownError":
            assert "error" in json.loads(error["message"])
        time.sleep(0.05)
    assert seen and seen <= {(403, "Authorization_RequestDenied"), (409, "Conflict"), (400, "UnknownError")}
    time.sleep(0.3)
    assert graph.post("/servicePrincipals/%s/synchronization/jobs" % sp["id"], {"templateId": "scim"}).status_code == 201


def test_s4c_new_job_answers_404_while_replicating(graph, faults):
    _app, sp = graph.new_app()
    faults({"replication_lag_s": 0.5})
    job = graph.new_job(sp["id"])
    _assert_graph_error(graph.get("/servicePrincipals/%s/synchronization/jobs/%s" % (sp["id"], job["id"])), 404, "Request_ResourceNotFound")
    time.sleep(0.55)
    assert graph.job(sp["id"], job["id"])["id"] == job["id"]


def test_s4e_delete_job(graph):
    _app, sp = graph.new_app()
    job = graph.new_job(sp["id"])
    path = "/servicePrincipals/%s/synchronization/jobs/%s" % (sp["id"], job["id"])
    assert graph.call("DELETE", path).status_code == 204
    _assert_graph_error(graph.get(path), 404, "Request_ResourceNotFound")


# ---------------------------------------------------------------------------------------------- §5 secrets
def test_s5_secrets_merge_delete_and_mask(graph, emulator):
    _app, sp = graph.new_app()
    path = "/servicePrincipals/%s/synchronization/secrets" % sp["id"]
    graph.configure(sp["id"])
    assert graph.call("PUT", path, {"value": [{"key": "SyncAll", "value": "false"}]}).status_code == 204
    values = {item["key"]: item["value"] for item in graph.get(path).json()["value"]}
    assert values["SecretToken"] == "*" and values["BaseAddress"].startswith(emulator.cloudflare_api_endpoint) and values["SyncAll"] == "false"
    assert graph.call("PUT", path, {"value": [{"key": "SyncAll", "value": ""}]}).status_code == 204
    assert "SyncAll" not in {item["key"] for item in graph.get(path).json()["value"]}
    notification = json.dumps({"Enabled": True, "Recipients": "ops@example.com", "DeleteThresholdEnabled": False})
    assert graph.call("PUT", path, {"value": [{"key": "SyncNotificationSettings", "value": notification}]}).status_code == 204
    assert {item["key"]: item["value"] for item in graph.get(path).json()["value"]}["SyncNotificationSettings"] == notification


def test_s5_empty_notification_settings_is_a_wrapped_unknown_error(graph):
    _app, sp = graph.new_app()
    path = "/servicePrincipals/%s/synchronization/secrets" % sp["id"]
    error = _assert_graph_error(graph.call("PUT", path, {"value": [{"key": "SyncNotificationSettings", "value": ""}]}), 400, "UnknownError")
    assert json.loads(error["message"])["error"]["code"] == "InvalidNotificationSettings"
    assert graph.call("PUT", path, {"value": [{"key": "SyncNotificationSettings", "value": "{}"}]}).status_code == 204


def test_s5_secrets_body_is_validated(graph):
    _app, sp = graph.new_app()
    path = "/servicePrincipals/%s/synchronization/secrets" % sp["id"]
    _assert_graph_error(graph.call("PUT", path, {"credentials": [{"key": "BaseAddress", "value": "x"}]}), 400, "Request_BadRequest")
    _assert_graph_error(graph.call("PUT", path, {"value": [{"key": "TenantUrl", "value": "x"}]}), 400, "Request_BadRequest")
    _assert_graph_error(graph.call("PUT", path, {"value": [{"key": "SyncAll", "value": False}]}), 400, "Request_BadRequest")
    _assert_graph_error(graph.call("PUT", path, {"value": {"key": "SyncAll"}}), 400, "Request_BadRequest")


# ---------------------------------------------------------------------------------------------- §6 validateCredentials
def test_s6_validate_credentials_given_saved_and_rejected(graph, emulator):
    _app, sp = graph.new_app()
    job = graph.new_job(sp["id"])
    account = graph.configure(sp["id"], account_index=2)
    base = emulator.cloudflare_base_address(account["account_id"])
    assert graph.action(sp["id"], job["id"], "validateCredentials", {"useSavedCredentials": True}).status_code == 204
    bad = graph.action(sp["id"], job["id"], "validateCredentials",
                       {"useSavedCredentials": False, "credentials": [{"key": "BaseAddress", "value": base}, {"key": "SecretToken", "value": "nope"}]})
    assert "credentials" in _assert_graph_error(bad, 400, "CredentialValidationUnavailable")["message"]
    elsewhere = graph.action(sp["id"], job["id"], "validateCredentials", {"credentials": [
        {"key": "BaseAddress", "value": "https://api.cloudflare.com/client/v4/accounts/%s/scim/v2" % account["account_id"]},
        {"key": "SecretToken", "value": account["token"]}]})
    _assert_graph_error(elsewhere, 400, "CredentialValidationUnavailable")
    # A token without the SCIM permission (default seed, account 3) is rejected by Cloudflare with 403.
    no_scim = graph.action(sp["id"], job["id"], "validateCredentials", {"credentials": [
        {"key": "BaseAddress", "value": base}, {"key": "SecretToken", "value": "cf-token-without-scim-permission-03"}]})
    _assert_graph_error(no_scim, 400, "CredentialValidationUnavailable")
    _assert_graph_error(graph.action(sp["id"], job["id"], "validateCredentials", {"useSavedCredentials": "yes"}), 400, "Request_BadRequest")
    assert graph.job(sp["id"], job["id"])["status"]["code"] == "NotConfigured"  # no state change
    collection = graph.post("/servicePrincipals/%s/synchronization/jobs/validateCredentials" % sp["id"],
                            {"applicationIdentifier": sp["appId"], "templateId": "scim", "useSavedCredentials": True})
    assert collection.status_code == 204


# ---------------------------------------------------------------------------------------------- §7 start / pause / restart
def test_s7_start_pause_restart_state_machine(graph, emulator):
    _app, sp = graph.new_app()
    job = graph.new_job(sp["id"])
    graph.configure(sp["id"])
    start = graph.action(sp["id"], job["id"], "start")
    assert start.status_code == 204 and start.content == b""
    current = graph.job(sp["id"], job["id"])
    assert current["schedule"]["state"] == "Active" and current["status"]["code"] == "NotRun"
    assert graph.action(sp["id"], job["id"], "pause").status_code == 204
    current = graph.job(sp["id"], job["id"])
    assert current["schedule"]["state"] == "Paused" and current["status"]["code"] == "Paused"
    assert emulator.run_cycle(sp["id"])["jobs"] == []  # paused jobs do not run
    assert graph.action(sp["id"], job["id"], "microsoft.graph.start").status_code == 204
    assert graph.action(sp["id"], job["id"], "start").status_code == 204  # start on a running job: allowed but counted
    dumped = next(j for j in emulator.state()["jobs"] if j["id"] == job["id"])
    assert dumped["_starts_while_active"] == 1
    restart = graph.action(sp["id"], job["id"], "restart", {"criteria": {"resetScope": "Watermark, Escrows, QuarantineState"}})
    assert restart.status_code == 204
    assert graph.action(sp["id"], job["id"], "restart", {"criteria": {"resetScope": "Full,ForceDeletes"}}).status_code == 204
    assert graph.action(sp["id"], job["id"], "restart").status_code == 204  # empty criteria = portal "Restart provisioning"
    dumped = next(j for j in emulator.state()["jobs"] if j["id"] == job["id"])
    assert dumped["_last_reset_scope"] == ["Escrows", "QuarantineState", "Watermark"]
    _assert_graph_error(graph.action(sp["id"], job["id"], "restart", {"criteria": {"resetScope": "Everything"}}), 400, "Request_BadRequest")
    _assert_graph_error(graph.action(sp["id"], job["id"], "restart", {"criteria": {"resetScope": 15}}), 400, "Request_BadRequest")
    _assert_graph_error(graph.action(sp["id"], job["id"], "restart", {"reset": True}), 400, "Request_BadRequest")


# ---------------------------------------------------------------------------------------------- §8 assignments
def test_s8_assignments_duplicate_invalid_role_and_delete(graph):
    _app, sp = graph.new_app()
    path = "/servicePrincipals/%s/appRoleAssignedTo" % sp["id"]
    assignment = graph.assign(sp["id"], ALICE)
    assert assignment["principalType"] == "User" and assignment["resourceId"] == sp["id"] and len(assignment["id"]) == 43
    duplicate = graph.post(path, {"principalId": ALICE, "resourceId": sp["id"], "appRoleId": USER_ROLE_ID})
    assert _assert_graph_error(duplicate, 400, "Request_BadRequest")["message"] == "Permission being assigned already exists on the object"
    _assert_graph_error(graph.post(path, {"principalId": ADMINS, "resourceId": sp["id"], "appRoleId": str(uuid.uuid4())}), 400, "Request_BadRequest")
    _assert_graph_error(graph.post(path, {"principalId": str(uuid.uuid4()), "resourceId": sp["id"], "appRoleId": USER_ROLE_ID}), 404,
                        "Request_ResourceNotFound")
    _assert_graph_error(graph.post(path, {"principalId": ADMINS, "resourceId": sp["id"], "appRoleId": USER_ROLE_ID, "extra": 1}), 400,
                        "Request_BadRequest")
    group = graph.assign(sp["id"], ADMINS)
    assert group["principalType"] == "Group"
    assert sorted(a["principalId"] for a in graph.all(path)) == sorted([ALICE, ADMINS])
    via_app_id = graph.all("/servicePrincipals(appId='%s')/appRoleAssignedTo" % sp["appId"])
    assert len(via_app_id) == 2
    assert graph.call("DELETE", "%s/%s" % (path, assignment["id"])).status_code == 204
    _assert_graph_error(graph.call("DELETE", "%s/%s" % (path, assignment["id"])), 404, "Request_ResourceNotFound")


def test_s8_s9_assignment_list_lags_behind_new_grants(graph, faults):
    _app, sp = graph.new_app()
    faults({"replication_lag_s": 0.5})
    graph.assign(sp["id"], ALICE)
    path = "/servicePrincipals/%s/appRoleAssignedTo" % sp["id"]
    assert graph.all(path) == []
    duplicate = graph.post(path, {"principalId": ALICE, "resourceId": sp["id"], "appRoleId": USER_ROLE_ID})
    assert duplicate.status_code == 400  # the write side already knows it
    time.sleep(0.55)
    assert [a["principalId"] for a in graph.all(path)] == [ALICE]


def test_s8_users_and_groups_lookups(graph):
    upn = "alice@contoso.onmicrosoft.com"
    found = graph.all(graph.filter_path("users", "userPrincipalName eq '%s'" % upn))
    assert [u["id"] for u in found] == [ALICE]
    assert "accountEnabled" not in found[0]  # not in the v1.0 default property set
    assert graph.get("/users/%s?$select=id,accountEnabled,mail" % upn).json()["accountEnabled"] is True
    assert graph.get("/users/" + DAVE).json()["mail"] == "Dave@contoso.onmicrosoft.com"
    _assert_graph_error(graph.get("/users/nobody@contoso.onmicrosoft.com"), 404, "Request_ResourceNotFound")
    groups = graph.all(graph.filter_path("groups", "displayName eq 'Cloudflare Engineers'"))
    assert [g["id"] for g in groups] == [ENGINEERS]
    members = graph.all("/groups/%s/members" % ENGINEERS)
    assert {m["@odata.type"] for m in members} == {"#microsoft.graph.user", "#microsoft.graph.group"}
    selected = graph.all("/groups/%s/members?$select=id,displayName" % ENGINEERS)
    assert all(set(m) == {"@odata.type", "id", "displayName"} for m in selected)


# ---------------------------------------------------------------------------------------------- §10 provisioning logs
def test_s10_provisioning_logs_are_throttled_like_reports(emulator, graph):
    # A client of its own: the limit is per app, and other tests read the logs with the default client.
    client = {"tenant_id": emulator.tenant_id, "client_id": str(uuid.uuid4()), "client_secret": "reports-client-secret"}
    emulator.seed({"clients": [{"client_id": client["client_id"], "client_secret": client["client_secret"],
                                "permissions": ["AuditLog.Read.All", "Directory.Read.All"]}]})
    token = emulator.token(client)
    statuses = []
    for _attempt in range(7):
        response = graph.get("/auditLogs/provisioning?$top=1", token=token)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"]["code"] == "TooManyRequests"
            break
    assert statuses == [200] * 5 + [429]


def test_s10_provisioning_logs_filters_are_validated(graph, faults):
    faults({"reports_throttle": {"limit": 0}})
    _assert_graph_error(graph.get("/auditLogs/provisioning?$count=true"), 400, "BadRequest")
    _assert_graph_error(graph.get(graph.filter_path("auditLogs/provisioning", "bogus eq 'x'")), 400, "Request_UnsupportedQuery")
    assert graph.get(graph.filter_path("auditLogs/provisioning", "activityDateTime gt 2020-01-01T00:00:00Z")).status_code == 200


# ---------------------------------------------------------------------------------------------- §11 errors, routing, bodies
def test_s11_error_shape_request_ids_and_routing(graph, emulator):
    response = graph.get("/servicePrincipals/" + str(uuid.uuid4()), headers={"client-request-id": "my-correlation-id"})
    _assert_graph_error(response, 404, "Request_ResourceNotFound")
    assert response.json()["error"]["innerError"]["client-request-id"] == "my-correlation-id"
    assert response.headers["client-request-id"] == "my-correlation-id"
    assert "Resource not found for the segment 'nosuchthing'" in _assert_graph_error(graph.get("/nosuchthing"), 400, "BadRequest")["message"]
    _assert_graph_error(graph.call("PUT", "/servicePrincipals/" + str(uuid.uuid4()), {}), 405, "Request_BadRequest")
    _assert_graph_error(graph.get("/servicePrincipals/not-a-guid"), 400, "Request_BadRequest")
    malformed = graph.session.post(graph.root + "/applicationTemplates/%s/instantiate" % TEMPLATE, data="{not json",
                                   headers={"Authorization": "Bearer " + graph.token, "Content-Type": "application/json"})
    _assert_graph_error(malformed, 400, "BadRequest")
    outside = graph.session.get(emulator.graph_endpoint + "/beta/servicePrincipals")
    assert outside.status_code == 404 and "error" in outside.json()
    _assert_graph_error(graph.get("/servicePrincipals?$expand=owners"), 400, "Request_UnsupportedQuery")
    _assert_graph_error(graph.get("/servicePrincipals?$select=nosuchproperty"), 400, "Request_BadRequest")
    _assert_graph_error(graph.get("/servicePrincipals?$top=1000"), 400, "Request_BadRequest")


# ---------------------------------------------------------------------------------------------- §13 $batch
def test_s13_batch_rules_dependencies_and_per_item_status(graph):
    _app, sp = graph.new_app()
    requests_ = [
        {"id": "1", "method": "POST", "url": "/servicePrincipals/%s/appRoleAssignedTo" % sp["id"], "headers": {"Content-Type": "application/json"},
         "body": {"principalId": ALICE, "resourceId": sp["id"], "appRoleId": USER_ROLE_ID}},
        {"id": "2", "method": "POST", "url": "/servicePrincipals/%s/appRoleAssignedTo" % sp["id"], "headers": {"Content-Type": "application/json"},
         "body": {"principalId": ALICE, "resourceId": sp["id"], "appRoleId": USER_ROLE_ID}, "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "/users/%s" % ALICE, "dependsOn": ["2"]},
        {"id": "4", "method": "GET", "url": "servicePrincipals/%s" % sp["id"]},
    ]
    response = graph.post("/$batch", {"requests": requests_})
    assert response.status_code == 200
    statuses = {item["id"]: item["status"] for item in response.json()["responses"]}
    assert statuses == {"1": 201, "2": 400, "3": 424, "4": 200}
    second = next(item for item in response.json()["responses"] if item["id"] == "2")
    assert second["body"]["error"]["message"] == "Permission being assigned already exists on the object"
    too_many = [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]
    _assert_graph_error(graph.post("/$batch", {"requests": too_many}), 400, "BadRequest")
    _assert_graph_error(graph.post("/$batch", {"requests": [{"id": "1", "method": "GET", "url": "/users"}] * 2}), 400, "BadRequest")
    _assert_graph_error(graph.post("/$batch", {"requests": [{"id": "1", "method": "GET", "url": "/v1.0/users"}]}), 400, "BadRequest")
    _assert_graph_error(graph.post("/$batch", {"requests": [{"id": "1", "method": "GET", "url": graph.root + "/users"}]}), 400, "BadRequest")
    _assert_graph_error(graph.post("/$batch", {"requests": [{"id": "1", "method": "PATCH", "url": "/servicePrincipals/x", "body": {}}]}), 400,
                        "BadRequest")
    _assert_graph_error(graph.post("/$batch", {"requests": [{"id": "1", "method": "GET", "url": "/users", "dependsOn": ["9"]}]}), 400,
                        "BadRequest")


def test_s13_batch_items_are_throttled_individually(graph, faults):
    faults({"rate_429": {"default": 0.0, "users.get": 1.0}, "retry_after": 2})
    response = graph.post("/$batch", {"requests": [{"id": "a", "method": "GET", "url": "/users/" + ALICE},
                                                   {"id": "b", "method": "GET", "url": "/groups/" + ADMINS}]})
    assert response.status_code == 200
    items = {item["id"]: item for item in response.json()["responses"]}
    assert items["a"]["status"] == 429 and items["a"]["headers"]["Retry-After"] == "2"
    assert items["b"]["status"] == 200


# ---------------------------------------------------------------------------------------------- §14 paging
def test_s14_paging_with_next_link_and_top(graph):
    page = graph.get("/users").json()
    assert len(page["value"]) == 3  # the shared emulator runs with --page-size 3
    next_link = page["@odata.nextLink"]
    assert next_link.startswith(graph.root + "/users?") and "$skiptoken=" in next_link
    everyone = graph.all("/users")
    assert len(everyone) >= 6 and len({u["id"] for u in everyone}) == len(everyone)
    top = graph.get("/users?$top=2&$select=id").json()
    assert len(top["value"]) == 2 and "$top=2" in top["@odata.nextLink"]
    assert graph.all("/users?$top=2&$select=id") == [{"id": u["id"]} for u in everyone]
    tampered = next_link.replace("$skiptoken=", "$skiptoken=x")
    _assert_graph_error(graph.get(tampered), 400, "Request_BadRequest")

# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the preflight rules (plugins/module_utils/_preflight.py): each finding code, and the scope reader."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils import _preflight as pf
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import ReadOnlyGraph

SP_ID = "5f0e2c3a-1111-4c1e-9a56-0123456789ab"
USER_ROLE = "18d14569-c3bd-439b-9a66-3a2aee01d14f"
SP = {"id": SP_ID, "displayName": "Cloudflare SCIM - prod",
      "appRoles": [{"id": USER_ROLE, "value": None, "displayName": "User"},
                   {"id": "b9632174-c057-4f7e-951b-be3adc52bfe6", "value": None, "displayName": "msiam_access"}]}
ACCOUNT = "0123456789abcdef0123456789abcdef"


def user(uid, upn, mail, enabled=True):
    return {"@odata.type": "#microsoft.graph.user", "id": uid, "userPrincipalName": upn, "mail": mail, "accountEnabled": enabled,
            "displayName": upn.split("@")[0]}


def group(gid, name):
    return {"@odata.type": "#microsoft.graph.group", "id": gid, "displayName": name}


def assignment(principal_id, name, kind="User", role=USER_ROLE):
    return {"id": "as-" + principal_id, "appRoleId": role, "principalId": principal_id, "principalType": kind, "principalDisplayName": name}


def codes(findings):
    return sorted(item["code"] for item in findings)


# ----------------------------------------------------------------------------------------------- user rules

def test_matching_user_has_no_finding():
    assert pf.check_user(user("u1", "alice@contoso.com", "alice@contoso.com")) == []


def test_upn_mail_mismatch_is_an_error():
    result = pf.rule_upn_mail_mismatch(user("u1", "alice@contoso.com", "alice.smith@contoso.com"))
    assert codes(result) == ["UPN_MAIL_MISMATCH"]
    assert result[0]["severity"] == "error"
    assert result[0]["object"] == {"type": "user", "id": "u1", "name": "alice@contoso.com"}
    assert "alice.smith@contoso.com" in result[0]["message"]


def test_upn_mail_compare_is_case_sensitive():
    result = pf.rule_upn_mail_mismatch(user("u1", "Alice@contoso.com", "alice@contoso.com"))
    assert codes(result) == ["UPN_MAIL_MISMATCH"]
    assert "letter case" in result[0]["message"]


def test_mail_missing_is_an_error_and_not_also_a_mismatch():
    result = pf.check_user(user("u1", "bob@contoso.com", None))
    assert codes(result) == ["MAIL_MISSING"]
    assert result[0]["severity"] == "error"
    assert pf.check_user(user("u2", "bob2@contoso.com", "")) and codes(pf.check_user(user("u2", "bob2@contoso.com", ""))) == ["MAIL_MISSING"]


def test_user_disabled_is_a_warning():
    result = pf.check_user(user("u1", "carol@contoso.com", "carol@contoso.com", enabled=False))
    assert codes(result) == ["USER_DISABLED"]
    assert result[0]["severity"] == "warning"


def test_unknown_enabled_state_is_not_reported():
    data = user("u1", "carol@contoso.com", "carol@contoso.com")
    del data["accountEnabled"]
    assert pf.rule_user_disabled(data) == []


def test_user_findings_name_the_group_they_came_through():
    result = pf.check_user(user("u1", "dave@contoso.com", None), source="Cloudflare Admins")
    assert "member of assigned group 'Cloudflare Admins'" in result[0]["message"]


# ---------------------------------------------------------------------------------------------- group rules

@pytest.mark.parametrize("name", ["CF Admins", "CFO office", "CF"])
def test_group_name_starting_with_cf_is_an_error(name):
    result = pf.rule_group_name("g1", name)
    assert codes(result) == ["GROUP_NAME_RESERVED_CF"]
    assert result[0]["severity"] == "error"
    assert result[0]["object"] == {"type": "group", "id": "g1", "name": name}


@pytest.mark.parametrize("name", ["cf-admins", "Cf team", "cF"])
def test_group_name_starting_with_cf_in_another_case_is_a_warning(name):
    result = pf.rule_group_name("g1", name)
    assert codes(result) == ["GROUP_NAME_RESERVED_CF"]
    assert result[0]["severity"] == "warning"


@pytest.mark.parametrize("name", ["Cloudflare Admins", "Admins CF", "", None])
def test_ordinary_group_names_pass(name):
    assert pf.rule_group_name("g1", name) == []


@pytest.mark.parametrize("name,role", [
    ("CF-%s - Administrator Read Only" % ACCOUNT, "Administrator Read Only"),
    ("CF-%s-Super Administrator - All Privileges" % ACCOUNT, "Super Administrator - All Privileges"),
    ("CF-%s - Billing" % ACCOUNT.upper(), "Billing"),
])
def test_virtual_group_pattern_is_reported_as_deprecated(name, role):
    result = pf.rule_group_name("g1", name)
    assert codes(result) == ["DEPRECATED_VIRTUAL_GROUP"]
    assert result[0]["severity"] == "error"
    assert "2025-06-02" in result[0]["message"]
    assert role in result[0]["message"]


def test_nested_group_is_a_warning_naming_both_groups():
    result = pf.rule_nested_group("g1", "Cloudflare Admins", group("g2", "Helpdesk"))
    assert codes(result) == ["NESTED_GROUP"]
    assert result[0]["severity"] == "warning"
    assert result[0]["object"] == {"type": "group", "id": "g2", "name": "Helpdesk"}
    assert "'Helpdesk'" in result[0]["message"] and "'Cloudflare Admins'" in result[0]["message"]


# ----------------------------------------------------------------------------------------- assignment rules

def test_default_access_role_is_a_warning_pointing_to_the_user_role():
    result = pf.rule_default_access(assignment("u1", "Alice", role=pf.DEFAULT_ACCESS_ROLE_ID), SP["appRoles"])
    assert codes(result) == ["DEFAULT_ACCESS_ROLE"]
    assert result[0]["severity"] == "warning"
    assert USER_ROLE in result[0]["message"]
    assert result[0]["object"] == {"type": "user", "id": "u1", "name": "Alice"}


def test_user_role_assignment_passes():
    assert pf.rule_default_access(assignment("u1", "Alice"), SP["appRoles"]) == []


def test_no_assignments_while_sync_all_false_is_an_error():
    result = pf.rule_scope([], False, SP)
    assert codes(result) == ["NO_ASSIGNMENTS"]
    assert result[0]["severity"] == "error"
    assert result[0]["object"]["type"] == "service_principal"


def test_only_service_principal_assignments_count_as_none():
    result = pf.rule_scope([assignment("sp2", "Some app", kind="ServicePrincipal")], False, SP)
    assert codes(result) == ["NO_ASSIGNMENTS"]


def test_assignments_with_sync_all_false_pass():
    assert pf.rule_scope([assignment("u1", "Alice")], False, SP) == []


def test_sync_all_true_is_reported_as_info_even_without_assignments():
    result = pf.rule_scope([], True, SP)
    assert codes(result) == ["SYNC_ALL_ENABLED"]
    assert result[0]["severity"] == "info"


def test_unknown_severity_is_refused():
    with pytest.raises(ValueError):
        pf.finding("fatal", "X", {}, "x")


# -------------------------------------------------------------------------------------------------- parsing

def test_parse_sync_all():
    assert pf.parse_sync_all({"value": [{"key": "SecretToken", "value": "*"}, {"key": "SyncAll", "value": "True"}]}) is True
    assert pf.parse_sync_all({"value": [{"key": "SyncAll", "value": "false"}]}) is False
    assert pf.parse_sync_all({"value": []}) is False
    assert pf.parse_sync_all(None) is False


def test_member_type_detection_without_odata_type():
    assert pf.is_group({"id": "g", "displayName": "G"})
    assert pf.is_user({"id": "u", "userPrincipalName": "u@x", "displayName": "U"})
    assert not pf.is_user({"@odata.type": "#microsoft.graph.device", "id": "d"})
    assert not pf.is_group({"@odata.type": "#microsoft.graph.device", "id": "d"})


# ------------------------------------------------------------------------------------------------ evaluation

def full_scope():
    assignments = [
        assignment("u-ok", "Alice"),
        assignment("u-case", "Bob"),
        assignment("u-default", "Dan", role=pf.DEFAULT_ACCESS_ROLE_ID),
        assignment("u-gone", "Gone User"),
        assignment("g-admins", "Cloudflare Admins", kind="Group"),
        assignment("g-cf", "CF Staff", kind="Group"),
        assignment("g-virtual", "CF-%s - Administrator" % ACCOUNT, kind="Group"),
    ]
    users = {
        "u-ok": user("u-ok", "alice@contoso.com", "alice@contoso.com"),
        "u-case": user("u-case", "Bob@contoso.com", "bob@contoso.com"),
        "u-default": user("u-default", "dan@contoso.com", "dan@contoso.com"),
    }
    members = {
        "g-admins": [user("u-nomail", "erin@contoso.com", None), user("u-off", "frank@contoso.com", "frank@contoso.com", False),
                     user("u-ok", "alice@contoso.com", "alice@contoso.com"), group("g-nested", "Helpdesk")],
        "g-cf": [],
        "g-virtual": [],
    }
    return pf.Scope(SP, assignments, False, users=users, missing=[assignments[3]], group_members=members)


def test_evaluate_reports_every_trap_once():
    findings, counts = pf.evaluate(full_scope())
    assert codes(findings) == sorted(["UPN_MAIL_MISMATCH", "DEFAULT_ACCESS_ROLE", "PRINCIPAL_NOT_FOUND", "MAIL_MISSING", "USER_DISABLED",
                                      "NESTED_GROUP", "GROUP_NAME_RESERVED_CF", "DEPRECATED_VIRTUAL_GROUP"])
    assert [item["severity"] for item in findings] == sorted((item["severity"] for item in findings),
                                                             key=pf.SEVERITIES.index)
    assert counts == {"assignments": 7, "assigned_users": 4, "assigned_groups": 3, "group_member_users": 3, "nested_groups": 1,
                      "users_checked": 5, "errors": 4, "warnings": 4, "infos": 0}


def test_clean_scope_has_no_findings():
    scope = pf.Scope(SP, [assignment("u-ok", "Alice")], False, users={"u-ok": user("u-ok", "alice@contoso.com", "alice@contoso.com")})
    findings, counts = pf.evaluate(scope)
    assert findings == []
    assert counts["errors"] == counts["warnings"] == 0


def test_failing_by_fail_on():
    findings, dummy = pf.evaluate(full_scope())
    assert len(pf.failing(findings, "error")) == 4
    assert len(pf.failing(findings, "warning")) == 8
    assert pf.failing(findings, "never") == []
    with pytest.raises(ValueError):
        pf.failing(findings, "sometimes")


def test_failure_summary_names_codes_and_objects():
    findings, dummy = pf.evaluate(full_scope())
    text = pf.failure_summary(pf.failing(findings, "error"))
    assert text.startswith("Preflight found 4 problem(s)")
    assert "UPN_MAIL_MISMATCH user Bob@contoso.com" in text
    assert "GROUP_NAME_RESERVED_CF group CF Staff" in text


def test_failure_summary_is_bounded():
    many = [pf.finding("error", "MAIL_MISSING", {"type": "user", "id": str(i), "name": "u%d" % i}, "m") for i in range(25)]
    text = pf.failure_summary(many)
    assert "and 15 more" in text
    assert "u24" not in text


# ------------------------------------------------------------------------------------------- reading Graph

class FakeGraph(ReadOnlyGraph):
    """Answers from dictionaries like GraphClient would (GraphError on failures)."""

    def __init__(self, gets=None, lists=None, batch_bodies=None, errors=None):
        super(FakeGraph, self).__init__()
        self.gets = gets or {}
        self.lists = lists or {}
        self.batch_bodies = batch_bodies or {}
        self.errors = errors or {}

    def answer(self, path):
        path = path.lstrip("/")
        if path in self.errors:
            status, code = self.errors[path]
            raise GraphError("boom %s" % code, status=status, code=code, request_id="req-1")
        if path.startswith("users/"):
            if path.split("/")[1] not in self.batch_bodies:
                raise GraphError("gone", status=404, code="Request_ResourceNotFound", request_id="req-1")
            return self.batch_bodies[path.split("/")[1]]
        if path in self.lists:
            return {"value": list(self.lists[path])}
        return self.gets[path]


def fake_tenant(sync_all="false", errors=None):
    sp_path = "servicePrincipals/%s" % SP_ID
    return FakeGraph(
        gets={sp_path: SP, sp_path + "/synchronization/secrets": {"value": [{"key": "SecretToken", "value": "*"},
                                                                            {"key": "SyncAll", "value": sync_all}]}},
        lists={sp_path + "/appRoleAssignedTo": [assignment("u1", "Alice"), assignment("u2", "Gone"), assignment("g1", "CF Team", "Group"),
                                                assignment("g1", "CF Team", "Group", role=pf.DEFAULT_ACCESS_ROLE_ID)],
               "groups/g1/members": [user("u3", "Erin@contoso.com", "erin@contoso.com"), group("g2", "Nested")]},
        batch_bodies={"u1": user("u1", "alice@contoso.com", "alice@contoso.com")},
        errors=errors,
    )


def test_read_scope_reads_each_thing_once_with_select_in_two_batches():
    client = fake_tenant()
    scope = pf.read_scope(client, SP_ID)
    assert scope.sync_all is False
    assert list(scope.users) == ["u1"]
    assert [item["principalId"] for item in scope.missing] == ["u2"]
    assert [m["id"] for m in scope.group_members["g1"]] == ["u3", "g2"]
    assert [call[0] for call in client.calls] == ["BATCH", "BATCH"]
    assert client.calls[0][1] == ["/servicePrincipals/%s?$select=%s" % (SP_ID, pf.SP_SELECT),
                                  "/servicePrincipals/%s/appRoleAssignedTo?$select=%s" % (SP_ID, pf.ASSIGNMENT_SELECT),
                                  "/servicePrincipals/%s/synchronization/secrets" % SP_ID]
    # the group assigned twice is read once
    assert client.calls[1][1] == ["/users/u1?$select=%s" % pf.USER_SELECT, "/users/u2?$select=%s" % pf.USER_SELECT,
                                  "groups/g1/members?$select=%s" % pf.MEMBER_SELECT]
    assert "accountEnabled" in pf.MEMBER_SELECT


def test_run_preflight_result_and_failure():
    result, message = pf.run_preflight(fake_tenant(), SP_ID, fail_on="error")
    assert result["changed"] is False
    assert result["passed"] is False
    assert codes(result["findings"]) == sorted(["PRINCIPAL_NOT_FOUND", "GROUP_NAME_RESERVED_CF", "DEFAULT_ACCESS_ROLE", "NESTED_GROUP",
                                                "UPN_MAIL_MISMATCH"])
    assert result["counts"]["users_checked"] == 2
    assert message.startswith("Preflight found 2 problem(s)")
    result, message = pf.run_preflight(fake_tenant(), SP_ID, fail_on="never")
    assert message is None and result["passed"] is False  # never fails, but errors exist


def test_sync_all_true_from_secrets():
    result, dummy = pf.run_preflight(fake_tenant(sync_all="True"), SP_ID, fail_on="never")
    assert result["sync_all"] is True
    assert "SYNC_ALL_ENABLED" in codes(result["findings"])


def test_missing_secrets_mean_sync_all_false():
    client = fake_tenant(errors={"servicePrincipals/%s/synchronization/secrets" % SP_ID: (404, "Request_ResourceNotFound")})
    assert pf.read_scope(client, SP_ID).sync_all is False


def test_permission_errors_carry_the_step():
    client = fake_tenant(errors={"groups/g1/members": (403, "Authorization_RequestDenied")})
    with pytest.raises(GraphError) as info:
        pf.read_scope(client, SP_ID)
    assert info.value.step == "read group members"
    client = fake_tenant(errors={"servicePrincipals/%s/synchronization/secrets" % SP_ID: (403, "Authorization_RequestDenied")})
    with pytest.raises(GraphError) as info:
        pf.read_scope(client, SP_ID)
    assert info.value.step == "read synchronization secrets"


def test_deleted_group_becomes_principal_not_found():
    client = fake_tenant(errors={"groups/g1/members": (404, "Request_ResourceNotFound")})
    scope = pf.read_scope(client, SP_ID)
    assert sorted(item["principalId"] for item in scope.missing) == ["g1", "u2"]


def test_batch_item_failure_other_than_404_is_read_again_alone_then_raised():
    client = fake_tenant()

    def failing_batch(requests):
        client.calls.append(("BATCH", [item["url"] for item in requests], None))
        return [{"id": str(index + 1), "status": 403, "headers": {}, "body": {"error": {"code": "Authorization_RequestDenied", "message": "no"}}}
                for index in range(len(requests))]

    client.batch = failing_batch
    scope = pf.read_scope(client, SP_ID)  # every read made again alone succeeds
    assert list(scope.users) == ["u1"] and scope.sync_all is False
    client.errors["users/u1"] = (403, "Authorization_RequestDenied")
    with pytest.raises(GraphError) as info:
        pf.read_scope(client, SP_ID)
    assert info.value.status == 403
    assert info.value.step == "read users"


def test_provisioned_users_leave_out_blocked_and_disabled_users():
    dummy, counts, provisioned = pf.evaluate_with_users(full_scope())
    # Bob (UPN differs from mail in case), Erin (no mail) and Frank (disabled) will not arrive in Cloudflare;
    # Dan's default-access assignment is only a warning.
    assert provisioned == ["alice@contoso.com", "dan@contoso.com"]
    assert counts["users_checked"] == 5

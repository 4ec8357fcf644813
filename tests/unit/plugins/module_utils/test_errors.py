# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import (
    AuthError, GraphError, error_step, failure_details, failure_message, redact,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils._permissions import (
    GENERAL_ADVICE, STEP_PERMISSIONS, permission_hint, permissions_for,
)


def _body(code, message, request_id="6f2c0b1e-0000-4000-8000-000000000001", date="2026-11-29T10:17:06"):
    return {"error": {"code": code, "message": message,
                      "innerError": {"date": date, "request-id": request_id, "client-request-id": "client-1"}}}


def test_error_fields_come_from_the_graph_error_body():
    err = GraphError.from_body(404, json.dumps(_body("Request_ResourceNotFound", "Resource 'x' does not exist.")),
                               headers={"request-id": "header-id", "Date": "Sun, 29 Nov 2026 10:00:00 GMT"})
    assert err.status == 404
    assert err.code == "Request_ResourceNotFound"
    assert err.message == "Resource 'x' does not exist."
    assert err.request_id == "6f2c0b1e-0000-4000-8000-000000000001"
    assert err.client_request_id == "client-1"
    assert err.date == "2026-11-29T10:17:06"
    assert err.outer_code is None


def test_request_id_and_date_fall_back_to_the_response_headers():
    err = GraphError.from_body(503, "", headers={"request-id": "header-id", "Date": "Sun, 29 Nov 2026 10:00:00 GMT"})
    assert err.request_id == "header-id"
    assert err.date == "Sun, 29 Nov 2026 10:00:00 GMT"
    assert err.message == "HTTP 503 with no error details in the response"


def test_a_non_json_body_becomes_a_short_message():
    html = "<html><body>\n<h1>502 Bad Gateway</h1>\n" + "x" * 2000 + "</body></html>"
    err = GraphError.from_body(502, html)
    assert err.code is None
    assert err.message.startswith("<html><body> <h1>502 Bad Gateway</h1>")
    assert len(err.message) == 300


@pytest.mark.parametrize("inner, code, message", [
    ('{"error":{"code":"InvalidNotificationSettings","message":"The notification e-mail is invalid."}}',
     "InvalidNotificationSettings", "The notification e-mail is invalid."),
    ('{"Code":"SecretTokenInvalid","Message":"The secret token is not valid."}', "SecretTokenInvalid",
     "The secret token is not valid."),
    ('{"errorCode":"PermissionScopeNotGranted","message":"Authorization failed."}', "PermissionScopeNotGranted",
     "Authorization failed."),
    ('Sync failed: {"error":{"code":"SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",'
     '"message":"We could not reach the target."}} (see logs)',
     "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable", "We could not reach the target."),
])
def test_unknown_error_messages_are_unwrapped(inner, code, message):
    err = GraphError.from_body(400, json.dumps(_body("UnknownError", inner)))
    assert err.code == code
    assert err.message == message
    assert err.outer_code == "UnknownError"
    assert err.request_id == "6f2c0b1e-0000-4000-8000-000000000001"


def test_unknown_error_without_json_stays_as_it_is():
    err = GraphError.from_body(400, json.dumps(_body("UnknownError", "An unknown error occurred.")))
    assert err.code == "UnknownError"
    assert err.message == "An unknown error occurred."
    assert err.outer_code is None


def test_doubly_wrapped_unknown_error_is_unwrapped_to_the_innermost_code():
    innermost = json.dumps({"error": {"code": "InvalidCredentials", "message": "Token rejected by the target."}})
    middle = json.dumps({"error": {"code": "UnknownError", "message": innermost}})
    err = GraphError.from_body(400, json.dumps(_body("UnknownError", middle)))
    assert (err.code, err.message, err.outer_code) == ("InvalidCredentials", "Token rejected by the target.", "UnknownError")


def test_failure_message_format():
    err = GraphError.from_body(404, _body("Request_ResourceNotFound", "Resource 'sp-1' does not exist.", request_id="rid-1"))
    assert failure_message("read service principal", err) == (
        "Failed to read service principal: Request_ResourceNotFound: Resource 'sp-1' does not exist. (request-id rid-1)")


@pytest.mark.parametrize("step, expected", [
    ("create synchronization job", ["Application.ReadWrite.OwnedBy", "Synchronization.ReadWrite.All"]),
    ("save synchronization secrets", ["Application.ReadWrite.OwnedBy", "Synchronization.ReadWrite.All"]),
    ("validate credentials", ["Synchronization.ReadWrite.All"]),
    ("start synchronization job", ["Synchronization.ReadWrite.All"]),
    ("instantiate application", ["Application.ReadWrite.OwnedBy", "Application.ReadWrite.All"]),
    ("list service principals", ["Application.Read.All"]),
    ("assign app role", ["AppRoleAssignment.ReadWrite.All and Application.Read.All"]),
    ("read provisioning logs", ["AuditLog.Read.All and Directory.Read.All"]),
    ("read users", ["User.Read.All"]),
    ("read groups", ["GroupMember.Read.All"]),
    # A step with details after the known name still finds its permission.
    ("create synchronization job for service principal 'Cloudflare SCIM - acme'", ["Synchronization.ReadWrite.All"]),
])
def test_failure_message_for_403_names_the_permission(step, expected):
    err = GraphError.from_body(403, _body("Authorization_RequestDenied", "Insufficient privileges to complete the operation.",
                                          request_id="rid-403"))
    message = failure_message(step, err)
    assert message.startswith("Failed to %s: Authorization_RequestDenied: Insufficient privileges to complete the operation. "
                              "(request-id rid-403) This step needs the Microsoft Graph application permission" % step)
    for permission in expected:
        assert permission in message
    assert "admin consent" in message


def test_failure_message_for_401_explains_the_rejected_token():
    err = GraphError.from_body(401, _body("InvalidAuthenticationToken", "Access token has expired or is not yet valid."))
    message = failure_message("list synchronization jobs", err)
    assert "rejected the access token" in message
    assert "Synchronization.Read.All" in message


def test_unknown_step_gets_the_general_advice():
    err = GraphError.from_body(403, _body("Authorization_RequestDenied", "Insufficient privileges."))
    assert failure_message("frobnicate the directory", err).endswith(GENERAL_ADVICE)
    assert permission_hint(None) == GENERAL_ADVICE


def test_other_statuses_get_no_permission_hint_and_show_the_attempts():
    err = GraphError.from_body(503, _body("ServiceUnavailable", "Try later."))
    err.attempts = 4
    message = failure_message("list service principals", err)
    assert message == ("Failed to list service principals: ServiceUnavailable: Try later. "
                       "(request-id 6f2c0b1e-0000-4000-8000-000000000001) [gave up after 4 attempts]")


def test_connection_errors_have_no_status():
    err = GraphError("Could not connect to 127.0.0.1:1: refused", code="ConnectionError")
    assert failure_message("read users", err) == ("Failed to read users: ConnectionError: Could not connect to 127.0.0.1:1: refused "
                                                  "Check graph_endpoint, authority_host and cloud, that this host can reach them "
                                                  "(DNS, firewall) and the proxy settings (HTTPS_PROXY, NO_PROXY).")
    assert failure_details(err) == {"status": None, "error_code": "ConnectionError", "request_id": None}


def test_failure_details_carry_status_code_request_id_and_date():
    err = GraphError.from_body(400, _body("UnknownError", '{"code":"InvalidSecret","message":"bad"}', request_id="r-9"))
    assert failure_details(err) == {"status": 400, "error_code": "InvalidSecret", "request_id": "r-9",
                                    "date": "2026-11-29T10:17:06", "outer_error_code": "UnknownError"}


def test_error_step_tags_errors_once():
    with pytest.raises(GraphError) as info:
        with error_step("assign app role"):
            with error_step("read users"):
                raise GraphError("nope", status=403, code="Authorization_RequestDenied")
    assert info.value.step == "read users"
    assert failure_message(None, info.value).startswith("Failed to read users: ")


def test_auth_error_keeps_the_aadsts_text_but_never_the_secret():
    secret = "Very-Secret-Client-Secret-Value-123"
    err = AuthError("AADSTS7000215: Invalid client secret provided. Secret was %s" % secret, code="invalid_client",
                    secrets=[secret])
    assert secret not in str(err)
    assert "AADSTS7000215" in str(err)
    assert failure_message("instantiate application", err) == (
        "Failed to instantiate application: could not get a Microsoft Graph access token: invalid_client: "
        "AADSTS7000215: Invalid client secret provided. Secret was ********")


def test_graph_error_redacts_secrets_passed_in():
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.signature"
    err = GraphError.from_body(400, "Bad header Authorization: Bearer %s" % token, secrets=[token])
    assert token not in err.message
    assert redact("a-b", ["abc"]) == "a-b"
    assert redact(None, ["x"]) is None


def test_every_step_names_at_least_one_permission():
    for step, permission in STEP_PERMISSIONS.items():
        assert permission.required or permission.note, step  # a step needing no permission says so
        assert permissions_for(step.upper()) is permission
    assert permissions_for("") is None
    assert "Needs no permission beyond a valid Microsoft Graph token" in permission_hint("read application template", 403)

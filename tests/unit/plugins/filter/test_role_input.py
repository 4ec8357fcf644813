# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the role's input filters (plugins/filter/role_input.py): the messages are those the integration tests
(test_faults.py, test_checks_first.py) and users see, so they are compared whole."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import pytest

from ansible_collections.entrascim.cloudflare.plugins.filter import role_input
from ansible_collections.entrascim.cloudflare.plugins.filter.role_input import (
    FilterModule, https_endpoint, reserved_cf_name, scim_base_address, scim_input_errors,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils import _cloudflare

ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "cf-scim-token-Rt5uP0qZ"

ACCOUNT_MESSAGE = ("cloudflare_scim_account_id 'acme-prod' is not a Cloudflare account id (32 hexadecimal characters; see "
                   "Manage Account > Configurations in the Cloudflare dashboard).")
TOKEN_MESSAGE = ("cloudflare_scim_token is required with cloudflare_scim_state=present: a Cloudflare API token with the SCIM "
                 "Provisioning permission for this account (keep it in a vault or an AWX credential).")
HTTPS_MESSAGE = ("cloudflare_scim_api_endpoint 'http://127.0.0.1:9/client/v4' is not an https URL: Entra sends the SCIM token "
                 "to it, and Cloudflare's is https://api.cloudflare.com/client/v4 (the default); set an https:// URL.")
PURGE_MESSAGE = ("cloudflare_scim_assignments_purge=true with an empty cloudflare_scim_assignments would remove every user and "
                 "group from the app, and Entra would then deprovision all of them in Cloudflare: check the variable's name, "
                 "or set cloudflare_scim_assignments_purge_all=true if that is what you want.")
CF_MESSAGE = ("cloudflare_scim_assignments: group(s) 'CF Team', 'CFO Office' start with 'CF', a prefix Cloudflare reserves, so "
              "Cloudflare would refuse to create them: rename the group(s) in Entra ID (or assign others).")
GROUP = {"type": "group", "display_name": "Cloudflare Admins"}


def test_the_filters_are_registered():
    assert FilterModule().filters() == {"scim_input_errors": scim_input_errors, "scim_base_address": scim_base_address}


def test_the_rules_come_from_module_utils(monkeypatch):
    assert role_input._cloudflare() is _cloudflare
    monkeypatch.setattr(_cloudflare, "valid_account_id", lambda account_id: account_id == "acme-prod")
    monkeypatch.setattr(_cloudflare, "scim_base_url", lambda api_endpoint, account_id: "%s|%s" % (api_endpoint, account_id))
    monkeypatch.setattr(_cloudflare, "DEFAULT_API_ENDPOINT", "http://default.example")
    assert scim_input_errors("acme-prod", token=TOKEN) == [HTTPS_MESSAGE.replace("http://127.0.0.1:9/client/v4", "http://default.example")]
    assert scim_input_errors(ACCOUNT, token=TOKEN, api_endpoint="https://x") == [ACCOUNT_MESSAGE.replace("acme-prod", ACCOUNT)]
    assert scim_base_address("acme-prod", "https://x") == "https://x|acme-prod"


def test_the_module_utils_are_imported_when_a_filter_runs_not_with_the_file():
    # ansible-core imports every filter file of the collection in each worker that uses any of its filters.
    with open(role_input.__file__) as handle:
        source = handle.read()
    assert "\nfrom ansible_collections" not in source and "\nimport ansible_collections" not in source


def test_good_variables_have_no_error():
    assert scim_input_errors(ACCOUNT, token=TOKEN) == []
    assert scim_input_errors(ACCOUNT.upper(), state="present", token=TOKEN, api_endpoint="HTTPS://API.example.com/v4/",
                             assignments=[GROUP, {"type": "user", "user_principal_name": "cf.user@example.com"}]) == []


@pytest.mark.parametrize("account_id, shown", [
    ("acme-prod", "acme-prod"), ("", ""), (None, "None"), (12345, "12345"), (ACCOUNT[:-1], ACCOUNT[:-1]),
    (ACCOUNT + "0", ACCOUNT + "0"), (ACCOUNT[:-1] + "g", ACCOUNT[:-1] + "g"),
])
def test_an_account_id_that_is_not_32_hex_digits(account_id, shown):
    assert scim_input_errors(account_id, token=TOKEN) == [ACCOUNT_MESSAGE.replace("'acme-prod'", "'%s'" % shown)]


def test_the_account_id_is_the_only_check_for_absent():
    assert scim_input_errors("acme-prod", state="absent", api_endpoint="http://x", assignments=[],
                             purge=True) == [ACCOUNT_MESSAGE]
    assert scim_input_errors(ACCOUNT, state="absent", assignments=[{"type": "group", "display_name": "CF Team"}]) == []


@pytest.mark.parametrize("token", [None, ""])
def test_a_token_is_required_for_present(token):
    assert scim_input_errors(ACCOUNT, token=token) == [TOKEN_MESSAGE]
    assert scim_input_errors(ACCOUNT) == [TOKEN_MESSAGE]


def test_the_token_never_appears_in_a_message():
    errors = scim_input_errors("acme-prod", token=TOKEN, api_endpoint="http://127.0.0.1:9/client/v4",
                               assignments=[{"type": "group", "display_name": "CF Team"}])
    assert len(errors) == 3 and not any(TOKEN in message for message in errors)


@pytest.mark.parametrize("endpoint, https", [
    ("https://api.cloudflare.com/client/v4", True), ("HTTPS://api.cloudflare.com", True), ("https://x", True),
    ("http://127.0.0.1:9/client/v4", False), ("https://", False), ("https:///client/v4", False), ("", False),
    (None, False), ("ftp://api.cloudflare.com", False), (" https://api.cloudflare.com", False),
])
def test_https_endpoint(endpoint, https):
    assert https_endpoint(endpoint) is https
    errors = scim_input_errors(ACCOUNT, token=TOKEN, api_endpoint=endpoint)
    assert errors == ([] if https else [HTTPS_MESSAGE.replace("http://127.0.0.1:9/client/v4", str(endpoint))])


def test_purge_with_an_empty_list_needs_purge_all():
    assert scim_input_errors(ACCOUNT, token=TOKEN, assignments=[], purge=True) == [PURGE_MESSAGE]
    assert scim_input_errors(ACCOUNT, token=TOKEN, assignments=None, purge=True) == [PURGE_MESSAGE]
    assert scim_input_errors(ACCOUNT, token=TOKEN, assignments=[], purge=True, purge_all=True) == []
    assert scim_input_errors(ACCOUNT, token=TOKEN, assignments=[GROUP], purge=True) == []
    assert scim_input_errors(ACCOUNT, token=TOKEN, assignments=[], purge=False) == []


def test_cf_prefixed_group_names_are_listed_in_their_order():
    assignments = [{"type": "group", "display_name": "CF Team"}, GROUP, {"type": "group", "display_name": "CFO Office"},
                   {"type": "group", "display_name": "cf lower case"}, {"type": "group", "id": "b1c2d3e4"},
                   {"type": "group", "display_name": None}, {"type": "user", "user_principal_name": "CF@example.com"}]
    assert scim_input_errors(ACCOUNT, token=TOKEN, assignments=assignments) == [CF_MESSAGE]


@pytest.mark.parametrize("name, reserved", [
    ("CF", True), ("CF Team", True), ("CF-0123456789abcdef0123456789abcdef - Administrator", True), ("Cf Team", False),
    ("cf team", False), (" CF", False), ("Team CF", False), ("", False), (None, False),
])
def test_reserved_cf_name(name, reserved):
    assert reserved_cf_name(name) is reserved


def test_every_problem_is_reported_in_order():
    errors = scim_input_errors("acme-prod", token="", api_endpoint="http://127.0.0.1:9/client/v4",
                               assignments=[{"type": "group", "display_name": "CF Team"},
                                            {"type": "group", "display_name": "CFO Office"}], purge=True)
    assert errors == [ACCOUNT_MESSAGE, TOKEN_MESSAGE, HTTPS_MESSAGE, CF_MESSAGE]
    errors = scim_input_errors("acme-prod", token="", api_endpoint="http://127.0.0.1:9/client/v4", assignments=[], purge=True)
    assert errors == [ACCOUNT_MESSAGE, TOKEN_MESSAGE, HTTPS_MESSAGE, PURGE_MESSAGE]


@pytest.mark.parametrize("endpoint, expected", [
    (None, "https://api.cloudflare.com/client/v4/accounts/%s/scim/v2" % ACCOUNT),
    ("", "https://api.cloudflare.com/client/v4/accounts/%s/scim/v2" % ACCOUNT),
    ("https://api.cloudflare.com/client/v4", "https://api.cloudflare.com/client/v4/accounts/%s/scim/v2" % ACCOUNT),
    ("https://127.0.0.1:8443/client/v4//", "https://127.0.0.1:8443/client/v4/accounts/%s/scim/v2" % ACCOUNT),
])
def test_scim_base_address(endpoint, expected):
    assert scim_base_address(ACCOUNT, endpoint) == expected
    assert scim_base_address(ACCOUNT, endpoint) == _cloudflare.scim_base_url(endpoint, ACCOUNT)


def test_scim_base_address_defaults_to_cloudflare():
    assert scim_base_address(ACCOUNT) == "https://api.cloudflare.com/client/v4/accounts/%s/scim/v2" % ACCOUNT

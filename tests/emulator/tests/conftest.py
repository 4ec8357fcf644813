"""Fixtures of the emulator's own tests.

One shared emulator per test session (per xdist worker): small page size so paging is exercised everywhere,
and no background cycles (tests call ``run_cycle`` for deterministic provisioning). Tests that change faults
restore them. A report hook fails any test whose output or failure text contains a secret value.
"""

import uuid

import pytest

from tests.emulator.harness import DEFAULT_CLIENT, DEFAULT_CLOUDFLARE_ACCOUNTS, DEFAULT_IDENTITY_HEADER, DEFAULT_SEED, Emulator
from tests.emulator.tests.clients import Graph, Scim

SECRET_VALUES = {client["client_secret"] for client in DEFAULT_SEED["clients"]} | {DEFAULT_IDENTITY_HEADER} | {
    token["value"] for account in DEFAULT_SEED["cloudflare_accounts"] for token in account["tokens"]}
SHARED_PAGE_SIZE = 3


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    del item, call
    outcome = yield
    report = outcome.get_result()
    texts = [report.longreprtext or ""] + [content for _name, content in report.sections]
    if any(secret in text for secret in SECRET_VALUES for text in texts):
        report.outcome = "failed"
        report.longrepr = "a secret value of the default seed appeared in this test's output or failure text (value withheld)"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    with Emulator(tmp_path_factory.mktemp("emulator"), cycle_interval=3600, page_size=SHARED_PAGE_SIZE) as emu:
        yield emu


@pytest.fixture
def faults(emulator):
    """Set faults on the shared emulator for one test; back to ``none`` afterwards."""
    yield emulator.set_faults
    emulator.set_faults("none")


@pytest.fixture(scope="session")
def graph(emulator):
    return Graph(emulator, emulator.token())


@pytest.fixture(scope="session")
def scim_factory(emulator):
    def make(account_index=0):
        account = DEFAULT_CLOUDFLARE_ACCOUNTS[account_index]
        return Scim(emulator, account["account_id"], account["token"])
    return make


@pytest.fixture
def account(emulator):
    """A fresh Cloudflare account (with its deprecated CF-<id> virtual group) and one SCIM token: each test sees only
    its own users and groups."""
    account_id = uuid.uuid4().hex
    token = "cf-test-token-" + account_id
    emulator.seed({"cloudflare_accounts": [{"account_id": account_id, "tokens": [{"value": token}],
                                            "groups": [{"displayName": "CF-%s - Administrator" % account_id}]}]})
    return {"account_id": account_id, "token": token}


@pytest.fixture(scope="session")
def default_client():
    return dict(DEFAULT_CLIENT)

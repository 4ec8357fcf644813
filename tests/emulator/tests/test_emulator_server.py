"""The server itself: ready file, 50 concurrent clients, background cycles, SIGTERM, running from a copied tree."""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.emulator import admin
from tests.emulator.app import App
from tests.emulator.faults import Faults
from tests.emulator.harness import COLLECTION_ROOT, DEFAULT_CLIENT, DEFAULT_CLOUDFLARE_ACCOUNTS, Emulator, EmulatorError
from tests.emulator.state import GRAPH_PERMISSIONS, State
from tests.emulator.tests.clients import Graph, Scim, admin_refusal, new_session
from tests.emulator.web import Request

ADMINS = "b1c2d3e4-0001-4000-8000-000000000001"


def test_ready_file_keys(emulator):
    ready = emulator.ready
    assert set(ready) >= {"graph_endpoint", "authority_host", "cloudflare_api_endpoint", "ca_path", "admin_url", "pid", "tenant_id",
                          "managed_identity_endpoint"}
    assert ready["graph_endpoint"].startswith("https://127.0.0.1:") and not ready["graph_endpoint"].endswith("/v1.0")
    assert ready["cloudflare_api_endpoint"] == ready["graph_endpoint"] + "/client/v4"
    assert os.path.exists(ready["ca_path"]) and ready["pid"] == emulator.process.pid


def test_fifty_concurrent_clients(emulator):
    def client(index):
        session = new_session(emulator)
        token = session.post("%s/oauth2/v2.0/token" % emulator.authority(), timeout=30,
                             data={"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT["client_id"],
                                   "client_secret": DEFAULT_CLIENT["client_secret"], "scope": emulator.graph_endpoint + "/.default"})
        headers = {"Authorization": "Bearer " + token.json()["access_token"]}
        codes = [token.status_code]
        for path in ("/servicePrincipals?$top=5", "/users/alice@contoso.onmicrosoft.com", "/groups/%s/members" % ADMINS):
            codes.append(session.get(emulator.graph_endpoint + "/v1.0" + path, headers=headers, timeout=30).status_code)
        scim = DEFAULT_CLOUDFLARE_ACCOUNTS[index % 3]
        codes.append(session.get(emulator.cloudflare_base_address(scim["account_id"]) + "/ServiceProviderConfig", timeout=30,
                                 headers={"Authorization": "Bearer " + scim["token"]}).status_code)
        session.close()
        return codes

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(client, range(50)))
    assert all(codes == [200] * 5 for codes in results)
    assert time.monotonic() - started < 30


def test_slow_tls_client_does_not_stall_others(emulator):
    import socket  # pylint: disable=import-outside-toplevel
    port = int(emulator.graph_endpoint.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port)) for _index in range(5)]  # connect, never handshake
    try:
        started = time.monotonic()
        assert emulator.state()["tenant_id"] == emulator.tenant_id
        assert time.monotonic() - started < 2
    finally:
        for sock in idle:
            sock.close()


def test_admin_api_answers_loopback_only():
    app = App(State(), Faults("none"))
    remote = admin.handle(app, Request("GET", "/_admin/state", client_address=("10.1.2.3", 5555)))
    assert remote.status == 403
    local = admin.handle(app, Request("GET", "/_admin/state", client_address=("127.0.0.1", 5555)))
    assert local.status == 200
    unknown = admin.handle(app, Request("GET", "/_admin/nope", client_address=("127.0.0.1", 5555)))
    assert unknown.status == 404 and "endpoints" in unknown.json_body()


def test_admin_seed_is_validated_before_anything_changes(emulator):
    before = emulator.state()
    bad = {"users": [{"userPrincipalName": "new.user@contoso.onmicrosoft.com"}],
           "cloudflare_accounts": [{"account_id": "f" * 32, "groups": [{"name": "no displayName"}]}]}
    with pytest.raises(EmulatorError) as failure:
        emulator.seed(bad)
    assert str(failure.value) == admin_refusal("/seed", "unknown cloudflare group keys: name (allowed: displayName, id)")
    after = emulator.state()
    assert len(after["users"]) == len(before["users"]) and len(after["cloudflare_accounts"]) == len(before["cloudflare_accounts"])
    refused = [
        ({"clients": [{"client_id": "x", "permissions": ["Everything.All"]}]},
         "unknown Graph application permissions Everything.All (known: %s)" % ", ".join(GRAPH_PERMISSIONS)),
        ({"users": [{"mail": "no-upn@example.com"}]}, "user entries need a non-empty string 'userPrincipalName'"),
        ({"groups": [{"displayName": "G", "members": ["nobody@contoso.onmicrosoft.com"]}]},
         "group member 'nobody@contoso.onmicrosoft.com' is neither a known user (UPN or id) nor a group (displayName or id)"),
        ({"bogus": 1}, "unknown seed keys: bogus (allowed: clients, cloudflare_accounts, description, groups, identity_header, "
                       "managed_identities, tenant_domains, tenant_id, users)"),
    ]
    for seed, message in refused:
        with pytest.raises(EmulatorError) as failure:
            emulator.seed(seed)
        assert str(failure.value) == admin_refusal("/seed", message)
    assert emulator.state()["groups"] == before["groups"]


def test_bad_command_line_and_seed_exit_with_2(tmp_path):
    bad_seed = tmp_path / "seed.json"
    bad_seed.write_text(json.dumps({"tenant_id": "not-a-guid"}))
    for extra in (["--faults", "brutal"], ["--seed", str(bad_seed)], ["--page-size", "0"]):
        result = subprocess.run([sys.executable, "-m", "tests.emulator", "--ready-file", str(tmp_path / "ready.json")] + extra,
                                cwd=COLLECTION_ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 2 and "emulator:" in result.stderr
        assert not (tmp_path / "ready.json").exists()


def test_copied_tree_background_cycles_and_sigterm(tmp_path):
    """Run from a copy of the tree (no hard-coded paths), let the background loop provision, then SIGTERM."""
    copy_root = tmp_path / "staged"
    shutil.copytree(os.path.join(COLLECTION_ROOT, "tests", "emulator"), copy_root / "tests" / "emulator",
                    ignore=shutil.ignore_patterns("__pycache__", "tests"))
    ready_file = tmp_path / "ready.json"
    process = subprocess.Popen([sys.executable, "-m", "tests.emulator", "--ready-file", str(ready_file), "--cycle-interval", "0.2"],
                               cwd=str(copy_root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not ready_file.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        ready = json.loads(ready_file.read_text())
        emu = Emulator(tmp_path)
        emu.ready = ready
        emu.session.verify = ready["ca_path"]
        graph = Graph(emu, emu.token())
        _app, sp = graph.new_app()
        job = graph.new_job(sp["id"])
        graph.configure(sp["id"])
        graph.assign(sp["id"], ADMINS)
        assert graph.action(sp["id"], job["id"], "start").status_code == 204
        deadline = time.monotonic() + 10
        while graph.job(sp["id"], job["id"])["status"]["code"] != "Active":
            assert time.monotonic() < deadline, "the background loop did not run a cycle"
            time.sleep(0.1)
        account = DEFAULT_CLOUDFLARE_ACCOUNTS[0]
        assert "alice@contoso.onmicrosoft.com" in Scim(emu, account["account_id"], account["token"]).users()
        started = time.monotonic()
        process.terminate()
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert not os.path.exists(ready["ca_path"])  # its temporary directory is removed
        output = process.stdout.read().decode("utf-8", "replace")
        assert "Traceback" not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()


@pytest.mark.parametrize("signal_name", ["SIGINT"])
def test_harness_stop_and_sigint(tmp_path, signal_name):
    import signal  # pylint: disable=import-outside-toplevel
    emu = Emulator(tmp_path, page_size=2).start()
    try:
        assert emu.state()["tenant_id"] == emu.tenant_id
        emu.process.send_signal(getattr(signal, signal_name))
        assert emu.process.wait(timeout=10) == 0
    finally:
        assert emu.stop() == 0

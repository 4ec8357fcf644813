# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret-leak guard: the whole flow at -vvv --diff, then every byte it produced is searched for every secret.

The flow (provision with a client secret, provision again with a password-protected certificate, rotate every
Cloudflare token, audit, deprovision) runs with HOME, TMPDIR and the audit directory inside one run directory, and a
test callback (callback_plugins/result_dump.py) writing every task result as the controller received it. Then each
secret used (the client secret, the certificate password, every Cloudflare token old and new, and every access
token the token endpoint issued, read back from the 0600 token cache) is searched in: every line of every
ansible-playbook output, every returned value, and every file under the run directory. The token cache is the one
place allowed to hold access tokens and is not searched. A hit fails the test naming the secret's label and the
place, never the secret.
"""

from __future__ import absolute_import, division, print_function

import json
import os

from tests.emulator import harness

PLAYBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "playbooks")
CALLBACKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "callback_plugins")
ACCOUNTS = 3
CERT_CLIENT_ID = "5e1c2b3a-4d5f-4a6b-8c7d-9e0f1a2b3c4d"
CERT_PASSWORD = "leak-guard-key-password-Xr4"
GROUP = "Leak Guard Users"
MEMBERS = ["leak.amy@contoso.com", "leak.bo@contoso.com"]


def account_id(index):
    return "%032x" % (0x1ea4000 + index)


def token(index, generation=0):
    return "leak-cf-token-%d-gen%d-Vb8Nq" % (index, generation)


def json_secrets(value):
    """Every string under a key named ``secret`` in msal's serialized cache (the access tokens)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "secret" and isinstance(item, str):
                yield item
            else:
                yield from json_secrets(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_secrets(item)


def find_leaks(secrets, label, text):
    return ["%s in %s" % (name, label) for name, value in secrets.items() if value in text]


def test_no_secret_anywhere(emulator, playbook, secrets, tmp_path):
    cert_pem, key_pem = harness.make_client_certificate("leak guard", days=30, password=CERT_PASSWORD)
    emulator.seed({
        "clients": [{"client_id": CERT_CLIENT_ID, "certificate_pem": cert_pem,
                     "permissions": harness.DEFAULT_SEED["clients"][0]["permissions"]}],
        "users": [{"userPrincipalName": upn, "mail": upn, "displayName": upn, "accountEnabled": True} for upn in MEMBERS],
        "groups": [{"displayName": GROUP, "members": MEMBERS}],
        "cloudflare_accounts": [
            {"account_id": account_id(i),
             "tokens": [{"value": token(i), "scim_permission": True}, {"value": token(i, 1), "scim_permission": True}]}
            for i in range(ACCOUNTS)],
    })
    pem_file = tmp_path / "client.pem"
    pem_file.write_text(key_pem + cert_pem)
    os.chmod(str(pem_file), 0o600)

    used = {"client secret": harness.DEFAULT_CLIENT["client_secret"], "certificate password": CERT_PASSWORD}
    for i in range(ACCOUNTS):
        used["cloudflare token %d" % i] = token(i)
        used["rotated cloudflare token %d" % i] = token(i, 1)
    for label, value in used.items():
        secrets.add(label, value)

    run_dir = tmp_path / "run"
    for sub in ("home", "tmp", "audit"):
        (run_dir / sub).mkdir(parents=True)
    results = run_dir / "results.jsonl"
    env = {"HOME": str(run_dir / "home"), "TMPDIR": str(run_dir / "tmp"), "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
           "ANSIBLE_CALLBACKS_ENABLED": "result_dump", "RESULT_DUMP_FILE": str(results)}
    by_secret = {"tenant_id": "{{ emu.tenant_id }}", "client_id": "{{ emu.client_id }}", "client_secret": "{{ emu.client_secret }}",
                 "graph_endpoint": "{{ emu.graph_endpoint }}", "authority_host": "{{ emu.authority_host }}",
                 "ca_path": "{{ emu.ca_path }}", "token_cache_path": "{{ emu.token_cache_path }}"}
    by_certificate = dict((key, value) for key, value in by_secret.items() if key != "client_secret")
    by_certificate.update(client_id=CERT_CLIENT_ID, client_certificate_path=str(pem_file),
                          client_certificate_password=CERT_PASSWORD, auth_method="certificate")

    def hosts(generation):
        return dict(("leak-%d" % i, {"cloudflare_scim_account_id": account_id(i), "cloudflare_scim_token": token(i, generation),
                                     "cloudflare_scim_assignments": [{"type": "group", "display_name": GROUP}]})
                    for i in range(ACCOUNTS))

    common = {"cloudflare_scim_api_endpoint": emulator.cloudflare_api_endpoint, "cloudflare_scim_ca_path": emulator.ca_path,
              "cloudflare_scim_wait": "initial_cycle", "cloudflare_scim_poll_interval": 1, "cloudflare_scim_wait_timeout": 60,
              "cloudflare_scim_notification_email": "ops@contoso.com", "cloudflare_scim_audit_dir": str(run_dir / "audit")}
    steps = [
        ("provision", hosts(0), dict(common, cloudflare_scim_graph=by_secret)),
        ("provision", hosts(0), dict(common, cloudflare_scim_graph=by_certificate)),
        ("rotate_token", hosts(1), dict(common, cloudflare_scim_graph=by_certificate)),
        ("audit", hosts(1), dict(common, cloudflare_scim_graph=by_secret)),
        ("deprovision", hosts(1), dict(common, cloudflare_scim_graph=by_secret, cloudflare_scim_confirm_removal=True)),
    ]
    outputs = []
    for name, inventory, extra in steps:
        result = playbook(os.path.join(PLAYBOOKS, name + ".yml"), hosts=inventory, extra_vars=extra, verbosity=3, diff=True, env=env)
        assert result.failed == 0, "%s failed:\n%s" % (name, result.output[-4000:])
        outputs.append((name, result.output))

    # The rotation really happened, so the rotated tokens really flowed through the modules.
    assert "changed (secrets" in outputs[2][1], outputs[2][1][-3000:]

    cache_dir = tmp_path / "token-cache"
    access_tokens = set()
    for root, dummy, files in os.walk(str(cache_dir)):
        for name in files:
            if name.endswith(".json"):  # the cache files; the lock files beside them are empty
                with open(os.path.join(root, name)) as handle:
                    access_tokens.update(json_secrets(json.load(handle)))
    assert access_tokens, "the token cache held no access token: the guard would not test access tokens"
    for index, value in enumerate(sorted(access_tokens)):
        used["access token %d" % index] = value

    leaks = []
    for name, output in outputs:
        for number, line in enumerate(output.splitlines(), 1):
            leaks.extend(find_leaks(used, "%s output line %d" % (name, number), line))
    with open(str(results)) as handle:
        records = handle.readlines()
    assert len(records) > 50, "the result dump callback recorded too little to be a real check"
    for number, line in enumerate(records, 1):
        leaks.extend(find_leaks(used, "returned value %d (%s)" % (number, json.loads(line)["task"]), line))
    scanned = 0
    for root, dummy, files in os.walk(str(run_dir)):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                data = handle.read().decode("utf-8", "replace")
            scanned += 1
            leaks.extend(find_leaks(used, "file %s" % os.path.relpath(path, str(run_dir)), data))
    assert scanned >= 2 * ACCOUNTS, "the audit reports were not written where the guard looks"
    assert not leaks, "secret values leaked: %s" % "; ".join(leaks[:50])

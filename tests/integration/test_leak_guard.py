# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret-leak guard: the whole flow at -vvv --diff, then every byte it produced is searched for every secret.

The flow (provision with a client secret, provision again with a password-protected certificate, rotate every
Cloudflare token, audit, deprovision) runs with HOME, TMPDIR and the audit directory inside one run directory, and a
test callback (callback_plugins/result_dump.py) writing every task result as the controller received it. The client
secret, the certificate password and the Cloudflare tokens contain ``"`` and ``\\``, so that an escaped copy of one
does not look like the secret; the client secret and some of the tokens are passed with a trailing newline (what a
vault value or a YAML ``|`` block gives) while the emulator knows them without it, so the flow only works when the
collection strips them. A fourth account has a token Cloudflare does not know (with ``"`` and a trailing newline):
provision (once failing at the role's try of the token before any write, once with the checks off failing at Entra's
Test Connection) and audit fail for that account only, the others go on, and its failure messages and its audit report
are searched like everything else.

Then each secret used (the client secret, the certificate password, every Cloudflare token old, new and unknown, and
every access token the token endpoint issued, read back from the 0600 token cache) is searched, as passed and
stripped, in its plain, JSON-escaped and URL-encoded forms, in: every line of every ansible-playbook output, every
returned value (the JSON line and every string in it), and every file under the run directory, the Markdown and JSON
audit report of every account included (each must exist). The token cache is the one place allowed to hold access
tokens and is not searched. A hit fails the test naming the secret's label, the form and the place, never the secret;
a step that ends otherwise than expected fails with its output redacted of every secret.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import urllib.parse

import pytest

from tests.emulator import harness

PLAYBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "playbooks")
CALLBACKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "callback_plugins")
ACCOUNTS = 3
BAD_HOST = "leak-unknown-token"
SECRET_CLIENT_ID = "6f2d3c4b-5e6a-4b7c-9d8e-0f1a2b3c4d5e"
CLIENT_SECRET = 'leak-guard-client-"secret\\-Kp7w'
CERT_CLIENT_ID = "5e1c2b3a-4d5f-4a6b-8c7d-9e0f1a2b3c4d"
CERT_PASSWORD = 'leak-guard-key-"password\\-Xr4'
# Seeded nowhere, so Cloudflare answers 401; ends in a newline like a vault value.
UNKNOWN_TOKEN = 'leak-cf-token-unknown-"Wq\\3m-Tz\n'
GROUP = "Leak Guard Users"
MEMBERS = ["leak.amy@contoso.com", "leak.bo@contoso.com"]
# The forms a secret can leak in; each is searched for the value as passed and for the value stripped.
ENCODINGS = [("", lambda value: value), (" (JSON-escaped)", lambda value: json.dumps(value)[1:-1]),
             (" (URL-encoded)", lambda value: urllib.parse.quote(value, safe=""))]


def account_id(index):
    return "%032x" % (0x1ea4000 + index)


def token(index, generation=0):
    """The token as the emulator knows it (stripped)."""
    return 'leak-cf-token-%d-gen%d-Vb8"Nq\\Zx' % (index, generation)


def passed_token(index, generation):
    """The token as the inventory gives it: with a trailing newline for every other account of each generation."""
    return token(index, generation) + ("\n" if (index + generation) % 2 == 0 else "")


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


def json_strings(value):
    """Every string (keys included) in a decoded JSON document: finds a secret JSON-escaped twice in the raw text."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)
    elif isinstance(value, str):
        yield value


def patterns(secrets):
    """[(label, [texts])]: every form of every secret, as passed and stripped."""
    return [(name + kind, sorted(set([encode(value), encode(value.strip())]), key=len))
            for name, value in sorted(secrets.items()) for kind, encode in ENCODINGS]


def find_leaks(forms, label, *texts):
    return ["%s in %s" % (name, label) for name, variants in forms if any(v in text for v in variants for text in texts)]


def redact(forms, text):
    for variant, name in sorted(((v, n) for n, variants in forms for v in variants), key=lambda item: -len(item[0])):
        text = text.replace(variant, "<%s>" % name)
    return text


def test_no_secret_anywhere(emulator, playbook, tmp_path):
    cert_pem, key_pem = harness.make_client_certificate("leak guard", days=30, password=CERT_PASSWORD)
    permissions = harness.DEFAULT_SEED["clients"][0]["permissions"]
    emulator.seed({
        "clients": [{"client_id": SECRET_CLIENT_ID, "client_secret": CLIENT_SECRET, "permissions": permissions},
                    {"client_id": CERT_CLIENT_ID, "certificate_pem": cert_pem, "permissions": permissions}],
        "users": [{"userPrincipalName": upn, "mail": upn, "displayName": upn, "accountEnabled": True} for upn in MEMBERS],
        "groups": [{"displayName": GROUP, "members": MEMBERS}],
        "cloudflare_accounts": [
            {"account_id": account_id(i),
             "tokens": [{"value": token(i), "scim_permission": True}, {"value": token(i, 1), "scim_permission": True}]}
            for i in range(ACCOUNTS)] + [{"account_id": account_id(ACCOUNTS), "tokens": []}],
    })
    pem_file = tmp_path / "client.pem"
    pem_file.write_text(key_pem + cert_pem)
    os.chmod(str(pem_file), 0o600)

    # Searched here in every form; not given to the runner's own check (plain values only, and it would stop at the
    # first playbook with a hit instead of listing every place).
    used = {"client secret": CLIENT_SECRET + "\n", "certificate password": CERT_PASSWORD,
            "emulator default client secret": harness.DEFAULT_CLIENT["client_secret"], "unknown cloudflare token": UNKNOWN_TOKEN}
    for i in range(ACCOUNTS):
        used["cloudflare token %d" % i] = passed_token(i, 0)
        used["rotated cloudflare token %d" % i] = passed_token(i, 1)

    run_dir = tmp_path / "run"
    for sub in ("home", "tmp", "audit"):
        (run_dir / sub).mkdir(parents=True)
    results = run_dir / "results.jsonl"
    cache_dir = tmp_path / "token-cache"
    env = {"HOME": str(run_dir / "home"), "TMPDIR": str(run_dir / "tmp"), "ANSIBLE_CALLBACK_PLUGINS": CALLBACKS,
           "ANSIBLE_CALLBACKS_ENABLED": "result_dump", "RESULT_DUMP_FILE": str(results)}
    by_secret = {"tenant_id": "{{ emu.tenant_id }}", "client_id": SECRET_CLIENT_ID, "client_secret": CLIENT_SECRET + "\n",
                 "graph_endpoint": "{{ emu.graph_endpoint }}", "authority_host": "{{ emu.authority_host }}",
                 "ca_path": "{{ emu.ca_path }}", "token_cache_path": "{{ emu.token_cache_path }}"}
    by_certificate = dict((key, value) for key, value in by_secret.items() if key != "client_secret")
    by_certificate.update(client_id=CERT_CLIENT_ID, client_certificate_path=str(pem_file),
                          client_certificate_password=CERT_PASSWORD, auth_method="certificate")

    def hosts(generation, unknown=False, verify=True):
        inventory = dict(("leak-%d" % i, {"cloudflare_scim_account_id": account_id(i), "cloudflare_scim_token": passed_token(i, generation),
                                          "cloudflare_scim_assignments": [{"type": "group", "display_name": GROUP}]})
                         for i in range(ACCOUNTS))
        if unknown:
            # With the checks (the default) the unknown token fails before anything is written, at the role's own try of
            # the token; without them (verify=False) it fails at Entra's Test Connection: both failure paths are scanned.
            inventory[BAD_HOST] = {"cloudflare_scim_account_id": account_id(ACCOUNTS), "cloudflare_scim_token": UNKNOWN_TOKEN,
                                   "cloudflare_scim_assignments": [{"type": "group", "display_name": GROUP}],
                                   "cloudflare_scim_verify": verify}
        return inventory

    def access_tokens():
        found = set()
        for root, dummy, files in os.walk(str(cache_dir)):
            for name in files:
                if name.endswith(".json"):  # the cache files; the lock files beside them are empty
                    with open(os.path.join(root, name)) as handle:
                        found.update(json_secrets(json.load(handle)))
        return dict(("access token %d" % index, value) for index, value in enumerate(sorted(found)))

    outputs = []
    reports_text = {}

    def scan():
        """Every leak in what the steps so far produced, and the number of returned values and the files scanned."""
        forms = patterns(dict(used, **access_tokens()))
        leaks = []
        for label, output in outputs:
            for number, line in enumerate(output.splitlines(), 1):
                leaks.extend(find_leaks(forms, "%s output line %d" % (label, number), line))
        records = []
        if results.exists():
            with open(str(results)) as handle:
                records = handle.readlines()
        for number, line in enumerate(records, 1):
            record = json.loads(line)
            leaks.extend(find_leaks(forms, "returned value %d (%s, %s)" % (number, record["host"], record["task"]),
                                    line, *json_strings(record)))
        scanned = set()
        for root, dummy, files in os.walk(str(run_dir)):
            for name in files:
                path = os.path.join(root, name)
                where = os.path.relpath(path, str(run_dir))
                with open(path, "rb") as handle:
                    data = handle.read().decode("utf-8", "replace")
                texts = [data]
                if name.endswith(".json"):
                    try:
                        texts.extend(json_strings(json.loads(data)))
                    except ValueError:
                        pass  # searched as text only
                scanned.add(where)
                leaks.extend(find_leaks(forms, "file %s" % where, *texts))
        return leaks, len(records), scanned

    def fail(message, step=None, text=None):
        """Fail with the output of ``outputs[step]`` (or the report text of ``text``) redacted. Only a message without
        secrets and indexes are arguments: pytest prints the arguments of every function in the traceback."""
        forms = patterns(dict(used, **access_tokens()))
        leaks = scan()[0]
        output = outputs[step][1] if step is not None else (reports_text[text] if text is not None else "")
        # Redacted before it is cut, so that no part of a secret is left at the cut.
        pytest.fail("%s\nleaks so far: %s\n%s" % (redact(forms, message), "; ".join(leaks[:50]) or "none", redact(forms, output)[-4000:]))

    common = {"cloudflare_scim_api_endpoint": emulator.cloudflare_api_endpoint, "cloudflare_scim_ca_path": emulator.ca_path,
              "cloudflare_scim_wait": "initial_cycle", "cloudflare_scim_poll_interval": 1, "cloudflare_scim_wait_timeout": 60,
              "cloudflare_scim_notification_email": "ops@contoso.com", "cloudflare_scim_audit_dir": str(run_dir / "audit")}
    # (playbook, inventory, extra vars, the hosts expected to fail)
    steps = [
        ("provision", hosts(0, unknown=True), dict(common, cloudflare_scim_graph=by_secret), [BAD_HOST]),
        ("provision", hosts(0, unknown=True, verify=False), dict(common, cloudflare_scim_graph=by_certificate), [BAD_HOST]),
        ("rotate_token", hosts(1), dict(common, cloudflare_scim_graph=by_certificate), []),
        ("audit", hosts(1, unknown=True), dict(common, cloudflare_scim_graph=by_secret), [BAD_HOST]),
        ("deprovision", hosts(1, unknown=True), dict(common, cloudflare_scim_graph=by_secret, cloudflare_scim_confirm_removal=True), []),
    ]
    for number, (name, inventory, extra, failing) in enumerate(steps, 1):
        result = playbook(os.path.join(PLAYBOOKS, name + ".yml"), hosts=inventory, extra_vars=extra, verbosity=3, diff=True, env=env,
                          expect_rc=None)
        label = "step %d (%s)" % (number, name)
        outputs.append((label, result.output))
        failed = sorted(host for host, counts in result.recap.items() if counts["failed"] or counts["unreachable"])
        if failed != sorted(failing) or result.rc != (2 if failing else 0) or not set(inventory) <= set(result.recap):
            fail("%s: exit code %d, failed hosts %s (expected %s)" % (label, result.rc, failed, sorted(failing)), step=number - 1)

    # The rotation really happened, so the rotated tokens really flowed through the modules.
    if "changed (secrets" not in outputs[2][1]:
        fail("step 3 (rotate_token) rotated no token", step=2)
    # The unknown token failed where Cloudflare is asked, both times.
    with open(str(results)) as handle:
        records = [json.loads(line) for line in handle]
    failures = sorted(set(record["task"] for record in records if record["outcome"] == "failed" and record["host"] == BAD_HOST))
    for task in ("Try the token against the Cloudflare SCIM endpoint, before anything is written",
                 "Test and store the Cloudflare SCIM URL and token", "Check the Cloudflare SCIM endpoint with the token"):
        if not any(name.endswith(task) for name in failures):  # role tasks are named "<role> : <task>"
            fail("%s did not fail at %r: its failed tasks are %s" % (BAD_HOST, task, failures))

    assert access_tokens(), "the token cache held no access token: the guard would not test access tokens"
    leaks, returned, scanned = scan()
    assert returned > 50, "the result dump callback recorded too little to be a real check"
    reports = ["audit/%s.%s" % (host, ext) for host in hosts(1, unknown=True) for ext in ("md", "json")]
    missing = [report for report in reports if report not in scanned]
    assert not missing, "audit reports not written where the guard looks: %s (scanned: %s)" % (missing, sorted(scanned))
    with open(str(run_dir / "audit" / (BAD_HOST + ".json"))) as handle:
        reports_text["error"] = json.load(handle)["error"] or ""
    if not reports_text["error"].startswith("Check the Cloudflare SCIM endpoint with the token"):
        fail("the audit report of %s records no token failure" % BAD_HOST, text="error")
    assert not leaks, "secret values leaked: %s" % "; ".join(leaks[:50])

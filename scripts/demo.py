"""`make demo`: the whole flow against the local emulator, as a user would run it.

1. start the emulator with the demo directory (playbooks/demo/emulator_seed.json: 3 Cloudflare accounts,
   5 users, 2 groups, one user whose UPN differs from their mail);
2. write an inventory (demo-output/inventory.yml, mode 0600) from playbooks/demo/inventory.yml, pointing the
   modules at the emulator;
3. run playbooks/provision.yml with cloudflare_scim_wait=initial_cycle and verification, show the summary;
4. run it again: changed=0;
5. run playbooks/audit.yml, which writes a Markdown and a JSON report per account to demo-output/audit/;
6. stop the emulator.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.emulator import harness  # noqa: E402  pylint: disable=wrong-import-position

OUT = os.path.join(ROOT, "demo-output")
SEED = os.path.join(ROOT, "playbooks", "demo", "emulator_seed.json")
ACCOUNTS = os.path.join(ROOT, "playbooks", "demo", "inventory.yml")
RECAP = re.compile(r"^\S+\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def banner(text):
    print("\n" + "=" * 100 + "\n== " + text + "\n" + "=" * 100, flush=True)


def write_inventory(emu, seed):
    import yaml  # pylint: disable=import-outside-toplevel

    with open(ACCOUNTS) as handle:
        hosts = yaml.safe_load(handle)["cloudflare_accounts"]["hosts"]
    tokens = dict((acct["account_id"], acct["tokens"][0]["value"]) for acct in seed["cloudflare_accounts"])
    for variables in hosts.values():
        variables["cloudflare_scim_token"] = tokens[variables["cloudflare_scim_account_id"]]
    client = seed["clients"][0]
    inventory = {
        "cloudflare_accounts": {
            "hosts": hosts,
            "vars": {
                "cloudflare_scim_graph": {
                    "tenant_id": seed["tenant_id"],
                    "client_id": client["client_id"],
                    "client_secret": client["client_secret"],
                    "graph_endpoint": emu.graph_endpoint,
                    "authority_host": emu.authority_host,
                    "ca_path": emu.ca_path,
                    "token_cache_path": os.path.join(OUT, "token-cache"),
                },
                "cloudflare_scim_api_endpoint": emu.cloudflare_api_endpoint,
                "cloudflare_scim_ca_path": emu.ca_path,
                "cloudflare_scim_wait": "initial_cycle",
                "cloudflare_scim_poll_interval": 2,
                "cloudflare_scim_wait_timeout": 120,
                "cloudflare_scim_notification_email": "identity-ops@contoso.example",
            },
        },
    }
    path = os.path.join(OUT, "inventory.yml")
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        yaml.safe_dump(inventory, handle, default_flow_style=False, sort_keys=False)
    return path


def run_playbook(name, inventory, *extra):
    cmd = ["ansible-playbook", "-i", inventory, os.path.join(ROOT, "playbooks", name)] + list(extra)
    print("$ " + " ".join(os.path.relpath(part, ROOT) if part.startswith(ROOT) else part for part in cmd), flush=True)
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_DEPRECATION_WARNINGS="0")
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          check=False)
    print(proc.stdout, flush=True)
    changed = failed = 0
    for line in proc.stdout.splitlines():
        match = RECAP.match(line.strip())
        if match:
            changed += int(match.group(1))
            failed += int(match.group(2)) + int(match.group(3))
    if proc.returncode != 0 or failed:
        raise SystemExit("demo: %s failed (exit %d)" % (name, proc.returncode))
    return changed


def main():
    started = time.time()
    os.makedirs(OUT, exist_ok=True)
    with open(SEED) as handle:
        seed = json.load(handle)
    banner("Starting the emulator (Microsoft Graph + Entra login + Cloudflare SCIM) with the demo directory")
    with harness.Emulator(os.path.join(OUT, "emulator"), seed=seed, faults="none", cycle_interval=2) as emu:
        print("Graph: %s   Cloudflare: %s" % (emu.graph_endpoint, emu.cloudflare_api_endpoint))
        inventory = write_inventory(emu, seed)

        banner("1/3 provision.yml: 3 Cloudflare accounts, wait for the first provisioning cycle, verify both sides")
        run_playbook("provision.yml", inventory)

        banner("2/3 provision.yml again: nothing to change")
        changed = run_playbook("provision.yml", inventory)
        if changed:
            raise SystemExit("demo: the second run changed %d things; expected changed=0" % changed)
        print("Second run: changed=0 on every account.")

        banner("3/3 audit.yml: read-only report per account in demo-output/audit/")
        run_playbook("audit.yml", inventory, "-e", "cloudflare_scim_audit_dir=%s" % os.path.join(OUT, "audit"))

        state = emu.state()
        banner("What the emulated Cloudflare accounts now hold")
        for account in state.get("cloudflare_accounts", []):
            users = sorted(user.get("userName") for user in account.get("users", []) if user.get("active", True))
            groups = sorted(group.get("displayName") for group in account.get("groups", []))
            print("%s  users: %s  groups: %s" % (account.get("account_id"), ", ".join(users) or "-", ", ".join(groups) or "-"))
    print("\nDemo finished in %.0f s. Reports: demo-output/audit/" % (time.time() - started))


if __name__ == "__main__":
    main()

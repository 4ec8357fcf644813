"""`make bench` / `make bench-small`: the fleet benchmark of the collection against the emulator (docs/performance.md).

For each fleet size (25, 50 and 100 Cloudflare accounts by default), against a fresh emulator with a realistic
latency profile (150 ms per Graph call, 1 s for instantiate, 10 s replication lag, 2 % of Graph calls answered 429
with Retry-After), it measures side by side:

* a fresh ``provision.yml`` and a converged re-run: wall time, CPU of every child process (ansible-playbook, its
  workers and the modules: the rusage ``os.wait4`` gives for ansible-playbook's pid), the emulator's own CPU, Graph requests per
  account (reads, writes, throttled), Cloudflare requests, token requests per run (each run starts with an empty
  token cache, as a fresh AWX job does);
* the Ansible floor: the same hosts x the number of module tasks the converged run really executed per host
  (counted by tests/bench/callback_plugins/bench_task_counter.py), each task the no-op ``ansible.builtin.ping``;
* the baseline: the seed guide's calls (token, instantiate, wait until the service principal is readable, create
  the job, save the secrets, start; no idempotency) as a plain sequential ``requests`` script, one account after
  the other, in a separate process against its own emulator with the same faults, running while the fleet runs
  run (it sleeps through replication lag nearly all the time). Being sequential, its time for the first 25 / 50
  accounts of one 100-account run is its time for 25 / 50 accounts.

It prints progress while it runs, a Markdown report at the end (also written to ``--report``), and the raw numbers as
JSON (``--json``). ``--small`` is the version in ``make test``: 10 accounts, the same profile 10 times faster, no
baseline and no floor; with ``--check`` it exits 1 when token requests per run exceed 1 per credential, when the converged run
writes anything or makes more than 8 Graph requests per account, or when a run fails.

    .venv/bin/python scripts/bench.py                       # make bench
    .venv/bin/python scripts/bench.py --small --check       # make bench-small
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.emulator import harness  # noqa: E402  pylint: disable=wrong-import-position

# The latency profile of a real tenant (throttling: microsoftgraph/microsoft-graph-docs-contrib concepts/throttling-limits.md;
# replication: "Designing for Eventual Consistency for Microsoft Entra", devblogs.microsoft.com/identity, and the readiness
# note of concepts/application-saml-sso-configure-api.md; the numbers themselves are our estimate): a fault config for
# Emulator.set_faults / --faults FILE (docs/emulator.md, "Faults and profiles").
REALISTIC = {
    "profile": "none",
    "latency_ms": {"default": 150, "instantiate": 1000},
    "rate_429": 0.02,
    "retry_after": 1,
    "replication_lag_s": 10.0,
}
# bench-small: the same shape, every latency and lag 10 times shorter (15 ms, 100 ms, 1 s).
FAST = dict(REALISTIC, time_scale=0.1)

TARGETS = {
    "token_requests_per_credential": 1,
    "converged_writes": 0,
    "converged_graph_requests_per_account": 8,
    "converged_over_floor": 1.3,
    "fresh_over_baseline_at_100": 0.33,
}

MAX_FORKS = 50
GROUP = "Bench Cloudflare Users"
MEMBERS = ["bench.ann@contoso.com", "bench.ben@contoso.com"]
NON_GALLERY_TEMPLATE_ID = harness.NON_GALLERY_TEMPLATE_ID
CALLBACKS = os.path.join(ROOT, "tests", "bench", "callback_plugins")
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                   r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)")
# Tasks that run in the controller only (no module process): not counted as module tasks for the floor.
CONTROLLER_ACTIONS = frozenset([
    "assert", "debug", "fail", "set_fact", "include_tasks", "import_tasks", "include_role", "import_role", "meta",
    "include_vars", "add_host", "group_by", "set_stats", "pause", "wait_for_connection", "validate_argument_spec",
])


def say(text):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), text), flush=True)


def account_id(index):
    return "%032x" % (0xbe0c4000 + index)


def token(index):
    return "bench-cf-scim-token-%03d-Hx4q" % index


def host_name(index):
    return "bench-%03d" % index


# ---------------------------------------------------------------------------------------------- environment
def machine():
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", "r", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import ansible  # pylint: disable=import-outside-toplevel
        ansible_version = ansible.__version__ if hasattr(ansible, "__version__") else "?"
    except ImportError:
        ansible_version = "?"
    try:
        from ansible.release import __version__ as core_version  # pylint: disable=import-outside-toplevel
        ansible_version = core_version
    except ImportError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(), "ansible_core": ansible_version,
            "system": "%s %s" % (platform.system(), platform.release()), "load_at_start": [round(x, 2) for x in load]}


def stage_collection(workdir):
    """A private copy of the collection (ansible_collections/entrascim/cloudflare under ``workdir``): other engineers'
    `make stage` replaces build/ at any time, a benchmark must not run from under it."""
    path = os.path.join(workdir, "collections")
    dest = os.path.join(path, "ansible_collections", "entrascim", "cloudflare")
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "stage-collection"), dest], check=True, stdout=subprocess.DEVNULL)
    return path


def process_cpu(pid):
    """User + system CPU seconds of a running process (from /proc), or None."""
    try:
        with open("/proc/%d/stat" % pid, "r", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


# ---------------------------------------------------------------------------------------------- emulator data
def seed_fleet(emu, count):
    users = [{"userPrincipalName": upn, "mail": upn, "displayName": upn.split("@", maxsplit=1)[0], "givenName": "Bench",
              "surname": upn.split("@", maxsplit=1)[0], "accountEnabled": True} for upn in MEMBERS]
    emu.seed({
        "users": users,
        "groups": [{"displayName": GROUP, "members": MEMBERS}],
        "cloudflare_accounts": [{"account_id": account_id(i), "tokens": [{"value": token(i), "scim_permission": True}]}
                                for i in range(count)],
    })


def write_inventory(emu, count, path, cache_dir):
    client = harness.DEFAULT_CLIENT
    hosts = dict((host_name(i), {
        "cloudflare_scim_account_id": account_id(i),
        "cloudflare_scim_token": token(i),
        "cloudflare_scim_assignments": [{"type": "group", "display_name": GROUP}],
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
    }) for i in range(count))
    inventory = {"cloudflare_accounts": {"hosts": hosts, "vars": {
        "cloudflare_scim_graph": {
            "tenant_id": client["tenant_id"], "client_id": client["client_id"], "client_secret": client["client_secret"],
            "graph_endpoint": emu.graph_endpoint, "authority_host": emu.authority_host, "ca_path": emu.ca_path,
            "token_cache_path": cache_dir,
        },
        "cloudflare_scim_api_endpoint": emu.cloudflare_api_endpoint,
        "cloudflare_scim_ca_path": emu.ca_path,
    }}}
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(inventory, handle, indent=1)
    return path


def request_counts(emu, accounts):
    """Graph requests (HTTP, not counting items inside $batch), Cloudflare requests and token requests since the last reset."""
    log = emu.requests_log()
    entries = log["entries"]
    counts = log["counts"]
    graph = [e for e in entries if not e.get("in_batch") and not e["operation"].startswith(("token", "login.", "cloudflare."))]
    result = {
        "graph_reads": sum(1 for e in graph if not e["write"]),
        "graph_writes": sum(1 for e in graph if e["write"]),
        "graph_throttled": sum(1 for e in graph if e["status"] == 429),
        "batch_items": sum(1 for e in entries if e.get("in_batch")),
        "cloudflare": sum(1 for e in entries if e["operation"].startswith("cloudflare.")),
        "token_requests": counts["token_requests"],
        "log_complete": len(entries) == sum(counts["by_operation"].values()),
        "by_operation": counts["by_operation"],
    }
    result["graph_requests"] = result["graph_reads"] + result["graph_writes"]
    for key in ("graph_reads", "graph_writes", "graph_requests"):
        result[key + "_per_account"] = round(result[key] / float(accounts), 2)
    return result


def check_fleet(emu, count):
    """Every account has exactly one app and one started job with the token saved: the fresh run really provisioned."""
    state = emu.state()
    problems = []
    for i in range(count):
        name = "Cloudflare SCIM - %s" % host_name(i)
        sps = [sp for sp in state["service_principals"] if sp["displayName"] == name]
        apps = [app for app in state["applications"] if app["displayName"] == name]
        if len(apps) != 1 or len(sps) != 1:
            problems.append("%s: %d apps, %d service principals" % (host_name(i), len(apps), len(sps)))
            continue
        jobs = [job for job in state["jobs"] if job.get("servicePrincipalId") == sps[0]["id"]]
        if len(jobs) != 1 or jobs[0]["schedule"]["state"] != "Active":
            problems.append("%s: %d jobs, not started" % (host_name(i), len(jobs)))
    return problems


# ---------------------------------------------------------------------------------------------- ansible runs
def ansible_env(collections_path, forks, extra=None):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_FORKS=str(forks), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_HOST_KEY_CHECKING="0")
    env.pop("ANSIBLE_CONFIG", None)
    # ansible-playbook of this Python's environment (the venv), also when the script is not run through make
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def counter_env(tasks_file):
    """Environment that enables tests/bench/callback_plugins/bench_task_counter.py, writing to ``tasks_file``."""
    return {"ANSIBLE_CALLBACK_PLUGINS": CALLBACKS, "ANSIBLE_CALLBACKS_ENABLED": "bench_task_counter", "BENCH_TASKS_FILE": tasks_file}


def run_playbook(label, cmd, env, log_path, timeout, heartbeat=15.0):
    """Run ansible-playbook with its output in ``log_path``; print progress; return wall, CPU, recap.

    The CPU is that of ansible-playbook and everything it waited for (workers, modules), from ``os.wait4`` on its pid:
    other children of this script (emulators, the baseline running meanwhile) are not counted.
    """
    say("%s: %s" % (label, " ".join(os.path.basename(part) if os.path.isabs(part) else part for part in cmd)))
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as out:
        executable = shutil.which(cmd[0], path=env["PATH"]) or cmd[0]
        proc = subprocess.Popen([executable] + cmd[1:], stdout=out, stderr=subprocess.STDOUT, env=env,  # pylint: disable=consider-using-with
                                cwd=os.path.dirname(log_path))
        next_beat = started + heartbeat
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.5)
            now = time.monotonic()
            if now - started > timeout:
                proc.kill()
                proc.wait()
                raise SystemExit("bench: %s did not finish within %d s; see %s" % (label, timeout, log_path))
            if now >= next_beat:
                next_beat = now + heartbeat
                say("  %s: %3.0f s, %s" % (label, now - started, progress_of(log_path)))
    wall = time.monotonic() - started
    cpu = usage.ru_utime + usage.ru_stime
    with open(log_path, "r", encoding="utf-8", errors="replace") as handle:
        output = handle.read()
    recap = {}
    for line in output.splitlines():
        match = RECAP.match(line.strip())
        if match:
            values = match.groupdict()
            host = values.pop("host")
            recap[host] = dict((key, int(value)) for key, value in values.items())
    result = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "rc": proc.returncode, "load_1m": round(os.getloadavg()[0], 1),
              "changed": sum(r["changed"] for r in recap.values()),
              "failed": sum(r["failed"] + r["unreachable"] for r in recap.values()), "log": log_path}
    say("%s: done in %.1f s wall, %.1f s CPU, changed=%d failed=%d rc=%d (machine load average %.1f)"
        % (label, wall, cpu, result["changed"], result["failed"], proc.returncode, result["load_1m"]))
    return result


def progress_of(log_path):
    """"task k: <name>, n host results" from a running playbook's output."""
    tasks = 0
    name = "starting"
    results = 0
    try:
        with open(log_path, "r", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("TASK ["):
                    tasks += 1
                    name = line[6:].split("]", 1)[0]
                    results = 0
                elif re.match(r"^(ok|changed|skipping|failed|fatal): \[", line):
                    results += 1
    except OSError:
        pass
    return "task %d (%s): %d host results so far" % (tasks, name, results)


def write_floor_playbook(path, tasks):
    lines = ["---", "# Ansible floor for the benchmark: the same hosts, %d no-op module tasks per host." % tasks,
             "- name: Ansible floor", "  hosts: cloudflare_accounts", "  connection: local", "  gather_facts: false",
             "  tasks:"]
    for number in range(1, tasks + 1):
        lines += ["    - name: No-op module task %d" % number, "      ansible.builtin.ping:"]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def module_tasks_per_host(tasks_file, hosts):
    with open(tasks_file, "r", encoding="utf-8") as handle:
        counts = json.load(handle)["hosts"]
    per_host = []
    for host in hosts:
        actions = counts.get(host, {})
        per_host.append((sum(n for action, n in actions.items() if action.split(".")[-1] not in CONTROLLER_ACTIONS),
                         sum(actions.values())))
    modules = max(item[0] for item in per_host)
    total = max(item[1] for item in per_host)
    actions = counts.get(hosts[0], {})
    return modules, total, actions


def provision_run(label, emu, count, args, collections_path, size_dir):
    """One provision.yml run with an empty token cache; returns its numbers (wall, CPU, requests, recap)."""
    cache_dir = os.path.join(size_dir, "token-cache-%s" % label)  # every run starts without a token, like a fresh AWX job
    inventory = write_inventory(emu, count, os.path.join(size_dir, "inventory-%s.json" % label), cache_dir)
    emu.reset_log()
    emu_cpu = process_cpu(emu.process.pid)
    outcome = run_playbook("%d accounts, %s provision.yml" % (count, label), ["ansible-playbook", "-i", inventory, "entrascim.cloudflare.provision"],
                           ansible_env(collections_path, args.forks, counter_env(os.path.join(size_dir, "tasks-%s.json" % label))),
                           os.path.join(size_dir, "%s.log" % label), args.timeout)
    after = process_cpu(emu.process.pid)
    outcome["emulator_cpu_s"] = round(after - emu_cpu, 1) if None not in (after, emu_cpu) else None
    outcome["requests"] = request_counts(emu, count)
    outcome["tasks_file"] = os.path.join(size_dir, "tasks-%s.json" % label)
    say("  requests: Graph %d (%.1f per account: %.1f reads, %.1f writes, %d throttled), Cloudflare %d, tokens %d"
        % (outcome["requests"]["graph_requests"], outcome["requests"]["graph_requests_per_account"],
           outcome["requests"]["graph_reads_per_account"], outcome["requests"]["graph_writes_per_account"],
           outcome["requests"]["graph_throttled"], outcome["requests"]["cloudflare"], outcome["requests"]["token_requests"]))
    if outcome["rc"] != 0 or outcome["failed"]:
        say("  the %s run failed; last lines of %s:\n%s" % (label, outcome["log"], tail(outcome["log"])))
    return outcome


def best_of(samples):
    """The run with the smallest wall time, with every sample's wall and CPU kept (other load on the machine only ever
    makes a run slower, so the fastest of several is the best estimate of what the run costs)."""
    best = dict(min(samples, key=lambda item: item["wall_s"]))
    best["samples"] = [{"wall_s": item["wall_s"], "cpu_s": item["cpu_s"], "load_1m": item.get("load_1m")} for item in samples]
    best["cpu_s"] = min(item["cpu_s"] for item in samples)
    return best


def bench_size(count, args, collections_path, workdir):
    """Fresh run, then ``args.repeat`` times a converged run and the floor, alternately; return the numbers."""
    size_dir = os.path.join(workdir, "fleet-%d" % count)
    os.makedirs(size_dir)
    result = {"accounts": count, "forks": args.forks, "repeat": args.repeat}
    say("=== %d accounts: starting the emulator (%s profile), forks %d" % (count, args.profile_name, args.forks))
    hosts = [host_name(i) for i in range(count)]
    converged, floors = [], []
    with harness.Emulator(os.path.join(size_dir, "emulator"), faults=args.faults, cycle_interval=args.cycle_interval) as emu:
        seed_fleet(emu, count)
        result["fresh"] = provision_run("fresh", emu, count, args, collections_path, size_dir)
        if result["fresh"]["rc"] != 0 or result["fresh"]["failed"]:
            return result
        problems = check_fleet(emu, count)
        if problems:
            raise SystemExit("bench: the fresh run did not provision every account: %s" % "; ".join(problems[:5]))
        converged.append(provision_run("converged", emu, count, args, collections_path, size_dir))
        result["converged"] = converged[0]
        if converged[0]["rc"] != 0 or converged[0]["failed"]:
            return result
        modules, total, actions = module_tasks_per_host(converged[0]["tasks_file"], hosts)
        result["tasks_per_host"] = {"module": modules, "all": total, "actions": actions}
        say("  the converged run executed %d tasks per host, %d of them module tasks: %s"
            % (total, modules, ", ".join("%s=%d" % (a.split(".")[-1], n) for a, n in sorted(actions.items()))))
        if args.no_floor:
            return result
        floor_inventory = os.path.join(size_dir, "inventory-floor.json")
        shutil.copy(os.path.join(size_dir, "inventory-converged.json"), floor_inventory)
        playbook = write_floor_playbook(os.path.join(size_dir, "floor.yml"), modules)
        for number in range(1, args.repeat + 1):
            if number > 1:
                converged.append(provision_run("converged-%d" % number, emu, count, args, collections_path, size_dir))
                if converged[-1]["rc"] != 0 or converged[-1]["failed"]:
                    result["converged"] = converged[-1]
                    return result
            label = "floor" if number == 1 else "floor-%d" % number
            floors.append(run_playbook("%d accounts, %s (%d x ping)" % (count, label, modules), ["ansible-playbook", "-i", floor_inventory, playbook],
                                       ansible_env(collections_path, args.forks, counter_env(os.path.join(size_dir, "tasks-%s.json" % label))),
                                       os.path.join(size_dir, "%s.log" % label), args.timeout))
    result["floor"] = best_of(floors)
    result["converged"] = dict(best_of(converged), requests=converged[0]["requests"])
    result["converged_over_floor"] = round(result["converged"]["wall_s"] / max(result["floor"]["wall_s"], 0.1), 2)
    result["converged_over_floor_cpu"] = round(result["converged"]["cpu_s"] / max(result["floor"]["cpu_s"], 0.1), 2)
    return result


def tail(path, lines=30):
    with open(path, "r", encoding="utf-8", errors="replace") as handle:
        return "".join(handle.readlines()[-lines:])


# ---------------------------------------------------------------------------------------------- baseline
def baseline_worker(ready_file, count, checkpoints):
    """The seed guide's calls with plain requests, one account after the other (runs in its own process).

    Prints one JSON line per checkpoint: {"accounts", "wall_s", "cpu_s"}. No idempotency: it creates what the guide
    creates and stops at the first unexpected answer. 429 and the replication answers (404 on new objects; 403, 409,
    400 on synchronization calls for a new service principal) are retried after Retry-After or 1 s, as a careful
    script would.
    """
    import requests  # pylint: disable=import-outside-toplevel

    with open(ready_file, "r", encoding="utf-8") as handle:
        ready = json.load(handle)
    session = requests.Session()
    session.trust_env = False
    session.verify = ready["ca_path"]
    graph = ready["graph_endpoint"] + "/v1.0"
    client = harness.DEFAULT_CLIENT

    def call(method, url, expect, retry_on=(), **kwargs):
        for dummy in range(600):
            response = session.request(method, url, timeout=60, **kwargs)
            if response.status_code == expect:
                return response
            if response.status_code == 429 or response.status_code in retry_on:
                time.sleep(float(response.headers.get("Retry-After") or 1))
                continue
            raise SystemExit("baseline: %s %s answered %d" % (method, url.split("?")[0], response.status_code))
        raise SystemExit("baseline: %s %s never answered %d" % (method, url.split("?")[0], expect))

    started = time.monotonic()
    for index in range(count):
        reply = call("POST", "%s/%s/oauth2/v2.0/token" % (ready["authority_host"], client["tenant_id"]), 200,
                     data={"grant_type": "client_credentials", "client_id": client["client_id"],
                           "client_secret": client["client_secret"], "scope": ready["graph_endpoint"] + "/.default"})
        headers = {"Authorization": "Bearer " + reply.json()["access_token"]}
        created = call("POST", "%s/applicationTemplates/%s/instantiate" % (graph, NON_GALLERY_TEMPLATE_ID), 201, headers=headers,
                       json={"displayName": "Cloudflare SCIM - baseline-%03d" % index}).json()
        sp_id = created["servicePrincipal"]["id"]
        call("GET", "%s/servicePrincipals/%s" % (graph, sp_id), 200, retry_on=(404,), headers=headers)
        job = call("POST", "%s/servicePrincipals/%s/synchronization/jobs" % (graph, sp_id), 201, retry_on=(400, 403, 404, 409),
                   headers=headers, json={"templateId": "scim"}).json()
        base = "%s/accounts/%s/scim/v2" % (ready["cloudflare_api_endpoint"], account_id(index))
        call("PUT", "%s/servicePrincipals/%s/synchronization/secrets" % (graph, sp_id), 204, retry_on=(400, 403, 404, 409),
             headers=headers, json={"value": [{"key": "BaseAddress", "value": base}, {"key": "SecretToken", "value": token(index)}]})
        call("POST", "%s/servicePrincipals/%s/synchronization/jobs/%s/start" % (graph, sp_id, job["id"]), 204,
             retry_on=(400, 403, 404, 409), headers=headers)
        if index + 1 in checkpoints:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            print(json.dumps({"accounts": index + 1, "wall_s": round(time.monotonic() - started, 1),
                              "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}), flush=True)
        else:
            print(json.dumps({"progress": index + 1, "wall_s": round(time.monotonic() - started, 1)}), flush=True)


def bench_baseline(sizes, args, workdir):
    count = max(sizes)
    base_dir = os.path.join(workdir, "baseline")
    os.makedirs(base_dir)
    say("=== baseline: the seed guide's calls, sequential plain requests, %d accounts (checkpoints %s)"
        % (count, ", ".join(str(s) for s in sizes)))
    results = {}
    with harness.Emulator(os.path.join(base_dir, "emulator"), faults=args.faults, cycle_interval=args.cycle_interval) as emu:
        seed_fleet(emu, count)
        ready_file = os.path.join(base_dir, "emulator", "emulator-ready.json")
        emu.reset_log()
        cmd = [sys.executable, os.path.abspath(__file__), "--baseline-worker", ready_file, "--baseline-count", str(count),
               "--sizes", ",".join(str(s) for s in sizes)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, universal_newlines=True, cwd=ROOT)  # pylint: disable=consider-using-with
        last_print = time.monotonic()
        for line in proc.stdout:
            point = json.loads(line)
            if "accounts" in point:
                results[str(point["accounts"])] = {"wall_s": point["wall_s"], "cpu_s": point["cpu_s"]}
                say("  baseline: %d accounts after %.1f s" % (point["accounts"], point["wall_s"]))
            elif time.monotonic() - last_print >= 15:
                last_print = time.monotonic()
                say("  baseline: %d/%d accounts, %.0f s, %.1f s per account" % (point["progress"], count, point["wall_s"],
                                                                                point["wall_s"] / point["progress"]))
        if proc.wait() != 0:
            raise SystemExit("bench: the baseline failed (exit %d)" % proc.returncode)
        counts = request_counts(emu, count)
    results["requests"] = counts
    return results


def baseline_in_background(box, args, workdir):
    """Thread body: ``box["result"]`` = the baseline's numbers, or ``box["error"]``."""
    try:
        box["result"] = bench_baseline(args.sizes, args, workdir)
    except BaseException as exc:  # pylint: disable=broad-exception-caught  # reported by the main thread
        box["error"] = exc


# ---------------------------------------------------------------------------------------------- report
def met(value, limit, lower_is_better=True):
    if value is None:
        return "not measured"
    return "met" if (value <= limit if lower_is_better else value >= limit) else "**missed**"


def report(results):
    sizes = results["sizes"]
    lines = ["Machine: %(cpus)s CPUs (%(cpu_model)s), %(system)s, Python %(python)s, ansible-core %(ansible_core)s, "
             "load average at start %(load_at_start)s." % results["machine"],
             "Profile: %s (%s); forks %s; emulator provisioning cycle every %d s." % (
                 results["profile"], json.dumps(results["faults"], sort_keys=True),
                 ", ".join(sorted(set(str(s["forks"]) for s in sizes))) or "-", results["cycle_interval"]),
             "",
             "| accounts | run | wall s | CPU s (children) | emulator CPU s | Graph req/account (reads + writes) | throttled | Cloudflare req "
             "| token req | changed | failed |",
             "| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for size in sizes:
        for run in ("fresh", "converged"):
            item = size.get(run)
            if not item:
                continue
            req = item["requests"]
            lines.append("| %d | %s | %.1f | %.1f | %s | %.1f (%.1f + %.1f) | %d | %d | %d | %d | %d |" % (
                size["accounts"], run, item["wall_s"], item["cpu_s"], item["emulator_cpu_s"], req["graph_requests_per_account"],
                req["graph_reads_per_account"], req["graph_writes_per_account"], req["graph_throttled"], req["cloudflare"],
                req["token_requests"], item["changed"], item["failed"]))
        if size.get("floor"):
            lines.append("| %d | floor (%d x ping per host) | %.1f | %.1f | | | | | | | |" % (
                size["accounts"], size["tasks_per_host"]["module"], size["floor"]["wall_s"], size["floor"]["cpu_s"]))
    baseline = results.get("baseline") or {}
    lines += ["", "| accounts | fresh wall s | baseline wall s | fresh / baseline | converged wall s | floor wall s | converged / floor (wall) "
                  "| converged / floor (CPU) |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for size in sizes:
        if not size.get("floor"):
            continue
        base = baseline.get(size["accounts"]) or baseline.get(str(size["accounts"]))
        ratio = round(size["fresh"]["wall_s"] / base["wall_s"], 3) if base else None
        size["fresh_over_baseline"] = ratio
        lines.append("| %d | %.1f | %s | %s | %.1f | %.1f | %.2f | %.2f |" % (
            size["accounts"], size["fresh"]["wall_s"], "%.1f" % base["wall_s"] if base else "-", "%.3f" % ratio if ratio else "-",
            size["converged"]["wall_s"], size["floor"]["wall_s"], size["converged_over_floor"], size["converged_over_floor_cpu"]))
    repeated = [size for size in sizes if len((size.get("converged") or {}).get("samples") or []) > 1]
    if repeated:
        walls = "; ".join("%d accounts converged %s, floor %s" % (
            size["accounts"], " / ".join(sample_text(item) for item in size["converged"]["samples"]),
            " / ".join(sample_text(item) for item in size["floor"]["samples"])) for size in repeated)
        lines += ["", "Converged runs and floors alternate, %d of each per size; the fastest of each counts. All walls in s, with the "
                  "1-minute load average of the machine when each run ended: %s." % (repeated[0]["repeat"], walls)]
    if baseline.get("requests"):
        req = baseline["requests"]
        lines += ["", "| baseline accounts | wall s | s per account | CPU s |", "| ---: | ---: | ---: | ---: |"]
        for count in sorted(int(key) for key in baseline if str(key).isdigit()):
            point = baseline.get(count) or baseline.get(str(count))
            lines.append("| %d | %.1f | %.1f | %.1f |" % (count, point["wall_s"], point["wall_s"] / count, point["cpu_s"]))
        lines += ["", "Baseline requests: Graph %.1f per account (%.1f reads + %.1f writes), %d throttled, %d token requests." % (
            req["graph_requests_per_account"], req["graph_reads_per_account"], req["graph_writes_per_account"], req["graph_throttled"],
            req["token_requests"])]
    lines += ["", "| target | value | status |", "| --- | --- | --- |"]
    for verdict in verdicts(results):
        lines.append("| %s | %s | %s |" % verdict)
    return "\n".join(lines) + "\n"


def sample_text(item):
    """``61.2`` or ``61.2 (load 3.4)``: a run's wall time and the machine's load average when it ended."""
    return "%.1f" % item["wall_s"] + (" (load %.1f)" % item["load_1m"] if item.get("load_1m") is not None else "")


def verdicts(results):
    """(target, measured value, met / missed) for every target, over every fleet size measured."""
    rows = []
    sizes = [s for s in results["sizes"] if s.get("converged")]
    tokens = [(s["accounts"], run, s[run]["requests"]["token_requests"]) for s in sizes for run in ("fresh", "converged")]
    worst = max(entry[2] for entry in tokens) if tokens else None
    rows.append(("token requests per run = 1 per credential (1 credential)",
                 ", ".join("%d/%s %d" % t for t in tokens), met(worst, TARGETS["token_requests_per_credential"])))
    writes = max(s["converged"]["requests"]["graph_writes"] for s in sizes) if sizes else None
    rows.append(("converged re-run: 0 writes", ", ".join("%d: %d" % (s["accounts"], s["converged"]["requests"]["graph_writes"]) for s in sizes),
                 met(writes, TARGETS["converged_writes"])))
    per_account = max(s["converged"]["requests"]["graph_requests_per_account"] for s in sizes) if sizes else None
    rows.append(("converged re-run: <= 8 Graph requests per account",
                 ", ".join("%d: %.1f" % (s["accounts"], s["converged"]["requests"]["graph_requests_per_account"]) for s in sizes),
                 met(per_account, TARGETS["converged_graph_requests_per_account"])))
    floors = [s for s in sizes if s.get("floor")]
    if floors:
        rows.append(("converged re-run <= 1.3 x floor (wall)", ", ".join("%d: %.2f" % (s["accounts"], s["converged_over_floor"]) for s in floors),
                     met(max(s["converged_over_floor"] for s in floors), TARGETS["converged_over_floor"])))
    ratios = [s for s in floors if s.get("fresh_over_baseline")]
    if ratios:
        biggest = max(ratios, key=lambda s: s["accounts"])
        rows.append(("fresh run <= 0.33 x sequential baseline at 100 accounts",
                     ", ".join("%d: %.3f" % (s["accounts"], s["fresh_over_baseline"]) for s in ratios),
                     met(biggest["fresh_over_baseline"], TARGETS["fresh_over_baseline_at_100"]) if biggest["accounts"] >= 100
                     else "not measured at 100 accounts"))
    return rows


def gate(results):
    """bench-small: the regressions that fail `make test`."""
    failures = []
    for size in results["sizes"]:
        for run in ("fresh", "converged"):
            item = size.get(run)
            if item is None:
                failures.append("%d accounts: the %s run did not happen" % (size["accounts"], run))
                continue
            if item["rc"] != 0 or item["failed"]:
                failures.append("%d accounts: the %s run failed (rc %d, %d failed hosts; see %s)"
                                % (size["accounts"], run, item["rc"], item["failed"], item["log"]))
            if item["requests"]["token_requests"] > TARGETS["token_requests_per_credential"]:
                failures.append("%d accounts: %d token requests in the %s run (target: 1 per credential)"
                                % (size["accounts"], item["requests"]["token_requests"], run))
        converged = size.get("converged")
        if converged is None:
            continue
        if converged["changed"]:
            failures.append("%d accounts: the converged run reported changed=%d" % (size["accounts"], converged["changed"]))
        if converged["requests"]["graph_writes"] > TARGETS["converged_writes"]:
            failures.append("%d accounts: %d Graph writes in the converged run (target 0)" % (size["accounts"], converged["requests"]["graph_writes"]))
        if converged["requests"]["graph_requests_per_account"] > TARGETS["converged_graph_requests_per_account"]:
            failures.append("%d accounts: %.1f Graph requests per account in the converged run (target <= %d)"
                            % (size["accounts"], converged["requests"]["graph_requests_per_account"], TARGETS["converged_graph_requests_per_account"]))
    return failures


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(description="Fleet benchmark of entrascim.cloudflare against the emulator (docs/performance.md).")
    parser.add_argument("--sizes", default=None, help="comma-separated fleet sizes (default 25,50,100; 10 with --small)")
    parser.add_argument("--small", action="store_true", help="the make test version: 10 accounts, the fast profile, no baseline, no floor")
    parser.add_argument("--profile", choices=["realistic", "fast"], default=None, help="latency profile (default realistic; fast with --small)")
    parser.add_argument("--forks", type=int, default=None, help="Ansible forks (default: the number of accounts, at most %d)" % MAX_FORKS)
    parser.add_argument("--cycle-interval", type=int, default=30, help="emulator provisioning cycle interval in seconds (default 30)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the sequential baseline")
    parser.add_argument("--repeat", type=int, default=None,
                        help="converged runs and floors per size, alternately; the fastest of each counts (default 2; 1 with --small)")
    parser.add_argument("--baseline-only", action="store_true", help="only the sequential baseline (it does not depend on the collection)")
    parser.add_argument("--no-floor", action="store_true", help="skip the Ansible floor (implied by --small: make test gates no ratio)")
    parser.add_argument("--timeout", type=int, default=3600, help="limit per playbook run in seconds")
    parser.add_argument("--workdir", help="keep logs, inventories and emulator logs here (default: a temporary directory, removed)")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--report", help="write the Markdown report here")
    parser.add_argument("--check", action="store_true", help="exit 1 on a token, converged-write or converged-request regression")
    parser.add_argument("--baseline-worker", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in (args.sizes or ("10" if args.small else "25,50,100")).split(",") if s.strip()]
    args.profile_name = args.profile or ("fast" if args.small else "realistic")
    args.repeat = max(1, args.repeat or (1 if args.small else 2))
    args.faults = dict(FAST if args.profile_name == "fast" else REALISTIC)
    if args.small:
        args.no_baseline = True
        args.no_floor = True
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.baseline_worker:
        baseline_worker(args.baseline_worker, args.baseline_count, set(args.sizes))
        return 0
    workdir = os.path.abspath(args.workdir) if args.workdir else tempfile.mkdtemp(prefix="entrascim-bench-")
    os.makedirs(workdir, exist_ok=True)
    started = time.monotonic()
    try:
        results = {"machine": machine(), "profile": args.profile_name, "faults": args.faults, "cycle_interval": args.cycle_interval,
                   "sizes": []}
        say("workdir %s; %s CPUs; profile %s %s" % (workdir, results["machine"]["cpus"], args.profile_name, json.dumps(args.faults)))
        collections_path = None if args.baseline_only else stage_collection(workdir)
        # The baseline sleeps through replication lag almost all of its ~27 s per account and uses ~0.1 s of CPU per
        # account: it runs next to the fleet runs (against its own emulator) instead of adding 45 minutes after them.
        baseline = {}
        thread = None
        if not args.no_baseline:
            thread = threading.Thread(target=baseline_in_background, args=(baseline, args, workdir), name="baseline", daemon=True)
            thread.start()
        for count in ([] if args.baseline_only else args.sizes):
            size_args = argparse.Namespace(**vars(args))
            size_args.forks = args.forks or min(count, MAX_FORKS)
            results["sizes"].append(bench_size(count, size_args, collections_path, workdir))
        if thread is not None:
            if thread.is_alive():
                say("fleet runs done; waiting for the baseline")
            thread.join()
            if "error" in baseline:
                raise SystemExit("bench: the baseline failed: %s" % baseline["error"])
            results["baseline"] = baseline["result"]
        results["wall_s"] = round(time.monotonic() - started, 1)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(results, handle, indent=1, sort_keys=True)
        text = report(results)
        print("\n" + text, flush=True)
        if args.report:
            with open(args.report, "w", encoding="utf-8") as handle:
                handle.write(text)
        say("finished in %.0f s" % results["wall_s"])
        failures = gate(results) if args.check else []
        for failure in failures:
            say("FAIL: %s" % failure)
        return 1 if failures else 0
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

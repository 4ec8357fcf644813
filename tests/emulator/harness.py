"""Test harness: start the emulator in a subprocess and talk to its admin API.

    from tests.emulator.harness import DEFAULT_CLIENT, Emulator

    with Emulator(tmp_path) as emu:
        emu.graph_endpoint, emu.ca_path, ...
        emu.mutate("revoke_cloudflare_token", account_id=..., token=...)

The emulator runs ``sys.executable -m tests.emulator`` with cwd = the collection root computed from this file's
location, so it works from a staged copy of the repository too.
"""

import json
import os
import signal
import subprocess
import sys
import time

import requests

from .tls import make_client_certificate

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SEED_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_seed.json")

with open(DEFAULT_SEED_PATH, "r", encoding="utf-8") as _handle:
    DEFAULT_SEED = json.load(_handle)

# The default seed's fully privileged client (well-known test values).
DEFAULT_CLIENT = {"tenant_id": DEFAULT_SEED["tenant_id"], "client_id": DEFAULT_SEED["clients"][0]["client_id"],
                  "client_secret": DEFAULT_SEED["clients"][0]["client_secret"]}
# Its read-only client (no write permissions): for 403 tests.
READONLY_CLIENT = {"tenant_id": DEFAULT_SEED["tenant_id"], "client_id": DEFAULT_SEED["clients"][1]["client_id"],
                   "client_secret": DEFAULT_SEED["clients"][1]["client_secret"]}
# Cloudflare accounts of the default seed with their valid SCIM token.
DEFAULT_CLOUDFLARE_ACCOUNTS = [{"account_id": account["account_id"], "token": account["tokens"][0]["value"]}
                               for account in DEFAULT_SEED["cloudflare_accounts"]]
DEFAULT_IDENTITY_HEADER = DEFAULT_SEED["identity_header"]
USER_ROLE_ID = "18d14569-c3bd-439b-9a66-3a2aee01d14f"
NON_GALLERY_TEMPLATE_ID = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"

__all__ = ["COLLECTION_ROOT", "DEFAULT_CLIENT", "DEFAULT_CLOUDFLARE_ACCOUNTS", "DEFAULT_IDENTITY_HEADER", "DEFAULT_SEED", "Emulator",
           "EmulatorError", "GraphAdmin", "NON_GALLERY_TEMPLATE_ID", "READONLY_CLIENT", "USER_ROLE_ID", "make_client_certificate",
           "role_vars"]


class EmulatorError(RuntimeError):
    pass


class Emulator:
    """The emulator as a context manager. ``seed`` and ``faults`` may be dicts (written to ``workdir``) or file paths /
    profile names; ``seed=None`` uses the built-in default seed."""

    def __init__(self, workdir, seed=None, faults="none", cycle_interval=2, page_size=None, port=0, verbose=False, ready_timeout=30):
        self.workdir = str(workdir)
        self.seed_spec = seed
        self.faults_spec = faults
        self.cycle_interval = cycle_interval
        self.page_size = page_size
        self.port = port
        self.verbose = verbose
        self.ready_timeout = ready_timeout
        self.process = None
        self.ready = None
        self.log_path = os.path.join(self.workdir, "emulator.log")
        self._log_handle = None
        self.session = requests.Session()
        self.session.trust_env = False  # our CA and no proxies, whatever the environment says

    # -------------------------------------------------------------- lifecycle
    def _write_json(self, name, payload):
        path = os.path.join(self.workdir, name)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)
        return path

    def command(self, ready_file):
        command = [sys.executable, "-m", "tests.emulator", "--ready-file", ready_file, "--port", str(self.port),
                   "--cycle-interval", str(self.cycle_interval)]
        if self.seed_spec is not None:
            command += ["--seed", self._write_json("seed.json", self.seed_spec) if isinstance(self.seed_spec, dict) else str(self.seed_spec)]
        if self.faults_spec is not None:
            command += ["--faults", self._write_json("faults.json", self.faults_spec) if isinstance(self.faults_spec, dict) else str(self.faults_spec)]
        if self.page_size is not None:
            command += ["--page-size", str(self.page_size)]
        if self.verbose:
            command.append("--verbose")
        return command

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        ready_file = os.path.join(self.workdir, "emulator-ready.json")
        if os.path.exists(ready_file):
            os.unlink(ready_file)
        self._log_handle = open(self.log_path, "ab")  # pylint: disable=consider-using-with
        self.process = subprocess.Popen(self.command(ready_file), cwd=COLLECTION_ROOT, stdin=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                                        stdout=self._log_handle, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout
        while not os.path.exists(ready_file):
            if self.process.poll() is not None:
                self._close_log()
                raise EmulatorError("the emulator exited with %s before it was ready; see %s:\n%s"
                                    % (self.process.returncode, self.log_path, self.log_tail()))
            if time.monotonic() > deadline:
                self.stop()
                raise EmulatorError("the emulator was not ready after %s s; see %s" % (self.ready_timeout, self.log_path))
            time.sleep(0.05)
        with open(ready_file, "r", encoding="utf-8") as handle:
            self.ready = json.load(handle)
        self.session.verify = self.ca_path
        return self

    def stop(self, timeout=10):
        """SIGTERM, wait, SIGKILL if needed; return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self._close_log()
        self.session.close()
        return self.process.returncode

    def _close_log(self):
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "r", encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -------------------------------------------------------------- endpoints
    def _ready(self, key):
        if self.ready is None:
            raise EmulatorError("the emulator is not started")
        return self.ready[key]

    graph_endpoint = property(lambda self: self._ready("graph_endpoint"))
    authority_host = property(lambda self: self._ready("authority_host"))
    cloudflare_api_endpoint = property(lambda self: self._ready("cloudflare_api_endpoint"))
    ca_path = property(lambda self: self._ready("ca_path"))
    admin_url = property(lambda self: self._ready("admin_url"))
    tenant_id = property(lambda self: self._ready("tenant_id"))
    managed_identity_endpoint = property(lambda self: self._ready("managed_identity_endpoint"))
    pid = property(lambda self: self._ready("pid"))

    def authority(self, tenant=None):
        return "%s/%s" % (self.authority_host, tenant or self.tenant_id)

    def cloudflare_base_address(self, account_id):
        """The SCIM BaseAddress ("Tenant URL") of an emulated Cloudflare account."""
        return "%s/accounts/%s/scim/v2" % (self.cloudflare_api_endpoint, account_id)

    # -------------------------------------------------------------- admin API
    def _admin(self, method, path, body=None):
        response = self.session.request(method, self.admin_url + path, json=body, timeout=30)
        if response.status_code >= 300:
            raise EmulatorError("admin %s %s -> %d: %s" % (method, path, response.status_code, response.text))
        return response.json()

    def seed(self, data):
        return self._admin("POST", "/seed", data)

    def state(self):
        return self._admin("GET", "/state")

    def requests_log(self):
        return self._admin("GET", "/requests")

    def reset_log(self):
        return self._admin("POST", "/requests/reset", {})

    def set_faults(self, profile_or_dict):
        return self._admin("POST", "/faults", profile_or_dict)

    def faults(self):
        """The active fault config (counts such as ``instantiate_503_after_create`` show what is left)."""
        return self._admin("GET", "/faults")

    def mutate(self, op, **kwargs):
        return self._admin("POST", "/mutate", dict(kwargs, op=op))

    def run_cycle(self, sp_id=None):
        return self._admin("POST", "/run_cycle", {"sp_id": sp_id} if sp_id else {})

    # -------------------------------------------------------------- conveniences for tests
    def token(self, client=None, scope=None):
        """An access token for ``client`` (default: DEFAULT_CLIENT) via the client-credentials grant with its secret."""
        client = client or DEFAULT_CLIENT
        response = self.session.post("%s/oauth2/v2.0/token" % self.authority(client.get("tenant_id")), timeout=30,
                                     data={"grant_type": "client_credentials", "client_id": client["client_id"],
                                           "client_secret": client["client_secret"], "scope": scope or self.graph_endpoint + "/.default"})
        if response.status_code != 200:
            raise EmulatorError("token request failed with %d: %s" % (response.status_code, response.json().get("error")))
        return response.json()["access_token"]


class GraphAdmin:
    """Plain Graph calls against the emulator with DEFAULT_CLIENT's token: what happens outside the modules in a test
    (its setup, the portal, an administrator)."""

    def __init__(self, emulator):
        self.emulator = emulator
        self.base = emulator.graph_endpoint.rstrip("/")
        if not self.base.endswith("/v1.0"):
            self.base += "/v1.0"
        self.headers = {"Authorization": "Bearer %s" % emulator.token()}

    def request(self, method, path, body=None, params=None):
        return self.emulator.session.request(method, "%s/%s" % (self.base, path), json=body, params=params, headers=self.headers,
                                             timeout=30)

    def call(self, method, path, body=None):
        """The JSON answer of a call that must succeed."""
        response = self.request(method, path, body)
        assert response.status_code < 300, "%s %s -> %d %s" % (method, path, response.status_code, response.text[:500])
        return response.json() if response.content else None

    def assign(self, sp_id, principal_id, role=USER_ROLE_ID):
        self.call("POST", "servicePrincipals/%s/appRoleAssignedTo" % sp_id, {"principalId": principal_id, "resourceId": sp_id, "appRoleId": role})


def role_vars(emulator):
    """The extra vars with which the collection's playbooks reach the emulator: Graph auth for module_defaults
    (``cloudflare_scim_graph``, templated from the ``emu`` variables of ``playbook``) and the Cloudflare endpoint."""
    return {
        "cloudflare_scim_graph": {
            "tenant_id": "{{ emu.tenant_id }}", "client_id": "{{ emu.client_id }}", "client_secret": "{{ emu.client_secret }}",
            "graph_endpoint": "{{ emu.graph_endpoint }}", "authority_host": "{{ emu.authority_host }}",
            "ca_path": "{{ emu.ca_path }}", "token_cache_path": "{{ emu.token_cache_path }}",
        },
        "cloudflare_scim_api_endpoint": emulator.cloudflare_api_endpoint,
        "cloudflare_scim_ca_path": emulator.ca_path,
    }

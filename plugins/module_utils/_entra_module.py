# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Glue shared by every Entra module: the common options, building the Graph client, failing cleanly.

A module is::

    def run(entra):
        with error_step("list service principals"):
            sps = entra.client.list("servicePrincipals", params={"$filter": filter_eq(displayName=name)})
        return {"changed": False, "service_principals": sps}

    def main():
        EntraModule(argument_spec=dict(display_name=dict(type="str", required=True))).run(run)

``ENTRA_ARGUMENT_SPEC`` and the ``entrascim.cloudflare.entra`` doc fragment describe the same options
(a unit test checks they agree).
"""

import copy
import time

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ._auth import AUTH_METHODS, HAS_MSAL, MSAL_IMPORT_ERROR, select_auth
from ._auth_tokens import run_with_deadline
from ._clouds import resolve_cloud
from ._graph import GraphClient
from ._runner import ModuleRunner
from ._transport import RetryPolicy, Transport

ENTRA_ARGUMENT_SPEC = dict(
    tenant_id=dict(type="str", fallback=(env_fallback, ["AZURE_TENANT_ID", "AZURE_TENANT"])),
    client_id=dict(type="str", fallback=(env_fallback, ["AZURE_CLIENT_ID"])),
    client_secret=dict(type="str", no_log=True, fallback=(env_fallback, ["AZURE_CLIENT_SECRET", "AZURE_SECRET"])),
    client_certificate_path=dict(type="path", fallback=(env_fallback, ["AZURE_CLIENT_CERTIFICATE_PATH"])),
    client_certificate_password=dict(type="str", no_log=True, fallback=(env_fallback, ["AZURE_CLIENT_CERTIFICATE_PASSWORD"])),
    access_token=dict(type="str", no_log=True),
    auth_method=dict(type="str", default="auto", choices=list(AUTH_METHODS)),
    managed_identity_client_id=dict(type="str"),
    cloud=dict(type="str", choices=["public", "usgovernment", "china"]),
    graph_endpoint=dict(type="str"),
    authority_host=dict(type="str", fallback=(env_fallback, ["AZURE_AUTHORITY_HOST"])),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    timeout=dict(type="int", default=30),
    token_cache=dict(type="bool", default=True, no_log=False),
    token_cache_path=dict(type="path", no_log=False),
)

# Auth methods that fetch tokens with msal (the others need only requests).
_MSAL_METHODS = ("client_secret", "certificate", "managed_identity")


def entra_argument_spec(**module_options):
    """A deep copy of ``ENTRA_ARGUMENT_SPEC`` updated with the module's own options."""
    spec = copy.deepcopy(ENTRA_ARGUMENT_SPEC)
    spec.update(module_options)
    return spec


class EntraModule:
    """Wraps ``AnsibleModule`` (amazon.aws style) for Entra modules.

    ``EntraModule(argument_spec, supports_check_mode=True, **kwargs)`` merges the shared spec
    and exposes ``module``, ``params``, ``check_mode``, ``diff_mode``, ``cloud`` (the resolved
    endpoints and ``non_gallery_template_id``), a lazy ``client`` (GraphClient), ``sleep``,
    ``progress`` (the list a service appends its wait steps to) and ``run(fn)``. Anything else is
    passed through to the AnsibleModule (``warn``, ``exit_json``, ...).
    """

    def __init__(self, argument_spec=None, supports_check_mode=True, sleep=None, clock=None, **kwargs):
        spec = entra_argument_spec(**(argument_spec or {}))
        self.module = AnsibleModule(argument_spec=spec, supports_check_mode=supports_check_mode, **kwargs)
        self.runner = ModuleRunner(self.module, spec)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.diff_mode = self.module._diff
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        problems = option_problems(self.params)
        if problems:
            self.module.fail_json(msg="Invalid options: %s" % " ".join(problems))
        try:
            self.cloud = resolve_cloud(self.params)
        except ValueError as exc:
            self.module.fail_json(msg="Invalid Microsoft Graph connection options: %s" % exc)
        if not self.params["validate_certs"]:
            self.runner.warn("validate_certs is false: the TLS certificates of Microsoft Graph and of the token endpoint are "
                             "not checked, so anyone on the network path can read the credentials and tokens sent. Use "
                             "ca_path for a private CA instead, and validate_certs=false only in tests.")
        self._client = None
        self._auth = None
        self.progress = []  # the wait steps of the module (returned as ``progress``, also on failure)

    def __getattr__(self, name):
        if name == "module":
            raise AttributeError(name)
        return getattr(self.module, name)

    @property
    def auth(self):
        """The auth object chosen by ``select_auth`` (built on first use)."""
        if self._auth is None:
            self._build_client()
        return self._auth

    @property
    def client(self):
        """The ``GraphClient`` (built on first use, so check-mode paths that need no Graph call make none)."""
        if self._client is None:
            self._build_client()
        return self._client

    def _build_client(self):
        params = self.params
        transport = Transport(
            validate_certs=params["validate_certs"], ca_path=params.get("ca_path"), timeout=params["timeout"],
            retry=RetryPolicy(), sleep=self.sleep, clock=self.clock,
        )
        auth = select_auth(params, transport, run_command=self._run_command, which=self._which)
        if auth.needs_msal and not HAS_MSAL:
            self.module.fail_json(msg=missing_required_lib("msal", reason="auth_method %s" % auth.method),
                                  exception=MSAL_IMPORT_ERROR)
        self._auth = auth
        self._client = GraphClient(transport, auth, self.cloud["graph_endpoint"])

    def _run_command(self, args, timeout):
        return run_with_deadline(self.module.run_command, self.module.get_bin_path, args, timeout)

    def _which(self, name):
        return self.module.get_bin_path(name)

    def _emit_auth_warnings(self):
        for warning in getattr(self._auth, "warnings", None) or []:
            self.runner.warn(warning)

    def _collect(self):
        """Before exiting: the auth warnings, and every access token obtained as a secret to redact."""
        for token in (getattr(self._client, "tokens", None) or []):
            self.runner.add_secret(token)
        self._emit_auth_warnings()

    def run(self, fn, step=None):
        """The one try/except of a module (``_runner.ModuleRunner.run``): ``fn(self)`` returns the result dict, which is
        passed to exit_json; an error becomes fail_json (the step is the error's ``error_step`` tag, else ``step``, else
        "call Microsoft Graph"), with every secret redacted."""
        self.runner.run(lambda: fn(self), step=step, before_exit=self._collect, diff_mode=self.diff_mode, progress=self.progress)


def option_problems(params):
    """What is wrong with the options every module shares, checked before anything is sent: a ``timeout`` that is not
    positive, a negative ``wait_timeout``, an id option given empty."""
    problems = []
    if params.get("timeout") is not None and params["timeout"] <= 0:
        problems.append("timeout must be more than 0 seconds (got %s)." % params["timeout"])
    if params.get("wait_timeout") is not None and params["wait_timeout"] < 0:
        problems.append("wait_timeout must be 0 or more seconds (got %s)." % params["wait_timeout"])
    for name in sorted(params):
        if name.endswith("_id") and isinstance(params[name], str) and not params[name].strip():
            problems.append("%s is empty: give the id, or leave the option out." % name)
    return problems

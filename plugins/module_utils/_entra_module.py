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

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import time

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ._auth import AUTH_METHODS, HAS_MSAL, MSAL_IMPORT_ERROR, resolve_cloud, select_auth
from ._consistency import ConsistencyTimeout
from ._errors import AuthError, GraphError, failure_details, failure_message
from ._graph import GraphClient
from ._transport import HAS_REQUESTS, REQUESTS_IMPORT_ERROR, RetryPolicy, Transport

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
    ``fail(step, err, **extra)`` and ``run(fn)``. Anything else is passed through to the
    AnsibleModule (``warn``, ``exit_json``, ...).
    """

    def __init__(self, argument_spec=None, supports_check_mode=True, sleep=None, clock=None, **kwargs):
        self.module = AnsibleModule(argument_spec=entra_argument_spec(**(argument_spec or {})),
                                    supports_check_mode=supports_check_mode, **kwargs)
        if not HAS_REQUESTS:
            self.module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.diff_mode = self.module._diff
        self.sleep = sleep or time.sleep
        self.clock = clock or time.monotonic
        try:
            self.cloud = resolve_cloud(self.params)
        except ValueError as exc:
            self.module.fail_json(msg="Invalid Microsoft Graph connection options: %s" % exc)
        self._client = None
        self._auth = None

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

    def _run_command(self, args):
        return self.module.run_command(args)

    def _which(self, name):
        return self.module.get_bin_path(name)

    def _emit_auth_warnings(self):
        for warning in getattr(self._auth, "warnings", None) or []:
            self.module.warn(warning)

    def fail(self, step, err, **extra):
        """``fail_json`` with "Failed to <step>: <code>: <message> (request-id ...)" plus status/error_code/request_id."""
        self._emit_auth_warnings()
        result = failure_details(err)
        result.update(extra)
        self.module.fail_json(msg=failure_message(step or getattr(err, "step", None), err), **result)

    def run(self, fn, step=None):
        """The one try/except of a module: ``fn(self)`` returns the result dict, which is passed to exit_json.

        GraphError, ConsistencyTimeout and AuthError become fail_json (the step is the error's
        ``error_step`` tag, else ``step``, else "call Microsoft Graph").
        """
        try:
            result = fn(self)
        except (GraphError, ConsistencyTimeout, AuthError) as err:
            self.fail(getattr(err, "step", None) or step, err)
            return
        result = dict(result or {})
        result.setdefault("changed", False)
        self._emit_auth_warnings()
        self.module.exit_json(**result)

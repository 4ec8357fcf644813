# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Auth methods whose token comes from elsewhere: a given ``access_token``, and the Azure CLI; and ``_BaseAuth``, the
interface of every auth method (``get_token()``, ``invalidate(token)``). The msal methods are in ``_auth``."""

import base64
import datetime
import json
import time

from ._clouds import CLOUDS
from ._errors import AuthError

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # the audience of a Graph token can be Graph's app id


class _BaseAuth:
    """Common interface: ``method``, ``warnings``, ``get_token()``, ``invalidate(token)``."""

    method = None
    needs_msal = False

    def __init__(self):
        self.warnings = []
        self.token_requests = 0

    def get_token(self):
        raise NotImplementedError

    def invalidate(self, token):
        return False


def _b64url_json(segment):
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"))


def jwt_claims(token):
    """The (unverified) claims of a JWT access token, or None for an opaque token."""
    parts = str(token).split(".")
    if len(parts) != 3:
        return None
    try:
        claims = _b64url_json(parts[1])
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


class AccessTokenAuth(_BaseAuth):
    """A pre-obtained access token. It cannot be refreshed; an expired or non-Graph JWT is refused early."""

    method = "access_token"

    def __init__(self, token, graph_endpoint=None, now=time.time):
        super(AccessTokenAuth, self).__init__()
        self._token = str(token).strip()
        if self._token.lower().startswith("bearer "):
            self._token = self._token[7:].strip()
        self.graph_endpoint = graph_endpoint.rstrip("/") if graph_endpoint else None
        self._now = now

    def get_token(self):
        claims = jwt_claims(self._token)
        if claims:
            exp = claims.get("exp")
            if isinstance(exp, (int, float)) and exp < self._now():
                when = datetime.datetime.fromtimestamp(exp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
                raise AuthError("The access_token expired at %s: get a new one (for example with 'az account "
                                "get-access-token --resource %s')" % (when, self.graph_endpoint or CLOUDS["public"]["graph_endpoint"]),
                                code="expired_token", secrets=[self._token])
            known = [c["graph_endpoint"] for c in CLOUDS.values()]
            aud = claims.get("aud")
            if self.graph_endpoint in known and isinstance(aud, str):
                accepted = (self.graph_endpoint, self.graph_endpoint + "/", GRAPH_APP_ID)
                if aud.rstrip("/") not in [a.rstrip("/") for a in accepted]:
                    raise AuthError("The access_token is for %s, not for Microsoft Graph (%s): request it with --resource %s"
                                    % (aud, self.graph_endpoint, self.graph_endpoint), code="invalid_audience", secrets=[self._token])
        return self._token


class CommandTimeout(Exception):
    """The command runner stopped a command that ran past its deadline."""


def run_with_deadline(run_command, which, args, timeout):
    """Run ``args`` with ``run_command(args) -> (rc, stdout, stderr)`` (``AnsibleModule.run_command``, which has no
    deadline of its own: a hung ``az`` would hang the task forever) under coreutils ``timeout``, which stops it after
    ``timeout`` seconds (and kills it 5 s later if it ignores that). Raises ``CommandTimeout`` when it was stopped.
    Without a ``timeout`` program the command runs without a deadline."""
    wrapper = which("timeout")
    if not wrapper:
        return run_command(args)
    rc, out, err = run_command([wrapper, "--kill-after=5", str(max(1, int(timeout)))] + list(args))
    if rc in (124, 137):  # timeout(1): 124 when the deadline passed, 128+9 when it had to kill
        raise CommandTimeout(args[0])
    return rc, out, err


class AzureCliAuth(_BaseAuth):
    """Token from ``az account get-access-token --resource <graph_endpoint> [--tenant T] --output json``.

    ``run_command(args) -> (rc, stdout, stderr)`` runs the command (``AnsibleModule.run_command``).
    """

    method = "azure_cli"

    def __init__(self, graph_endpoint, run_command, tenant_id=None, az_path="az", timeout=30):
        super(AzureCliAuth, self).__init__()
        self.timeout = timeout
        self.resource = graph_endpoint.rstrip("/")
        self.run_command = run_command
        self.tenant_id = tenant_id
        self.az_path = az_path
        self._token = None
        self._expires_on = 0

    def command(self):
        args = [self.az_path, "account", "get-access-token", "--resource", self.resource]
        if self.tenant_id:
            args += ["--tenant", self.tenant_id]
        return args + ["--output", "json"]

    def get_token(self):
        if self._token and self._expires_on - time.time() > 60:
            return self._token
        self.token_requests += 1
        try:
            rc, out, err = self.run_command(self.command(), self.timeout)
        except OSError as exc:
            raise AuthError("Could not run the Azure CLI (%s): %s" % (self.az_path, exc.strerror or exc))
        except CommandTimeout:
            raise AuthError("The Azure CLI ('%s account get-access-token') gave no token within timeout=%s seconds and was "
                            "stopped. Check that 'az' runs non-interactively as this user (az login done, no prompt), or "
                            "raise timeout." % (self.az_path, self.timeout), code="Timeout")
        if rc != 0:
            detail = " ".join(str(err or "").split())[-600:] or "no error output"
            message = "The Azure CLI failed (rc=%s): %s" % (rc, detail)
            if "az login" in detail:
                message += " Run 'az login' (add --tenant for a specific tenant) as the user that runs Ansible."
            raise AuthError(message, code="azure_cli_failed")
        try:
            payload = json.loads(out)
            token = payload["accessToken"]
        except (ValueError, KeyError, TypeError):
            raise AuthError("The Azure CLI did not print a token document (JSON with accessToken) for "
                            "'az account get-access-token'", code="azure_cli_failed")
        expires_on = payload.get("expires_on")
        try:
            expires_on = float(expires_on) if expires_on is not None else time.time() + 300
        except (TypeError, ValueError):
            expires_on = time.time() + 300
        self._token = token
        self._expires_on = expires_on
        return token

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Microsoft clouds: Graph and login endpoints and the non-gallery application template of each, and how module
options and ``AZURE_CLOUD_ENVIRONMENT`` pick one."""

import os
import re

from urllib.parse import urlparse

# Endpoints: microsoft-graph-docs-contrib concepts/deployments.md ("App registration and token service
# root endpoints", "Microsoft Graph and Graph Explorer service root endpoints"); non-gallery template
# ids per cloud: api-reference/v1.0/api/applicationtemplate-instantiate.md (the same repository).
CLOUDS = {
    "public": {
        "graph_endpoint": "https://graph.microsoft.com",
        "authority_host": "https://login.microsoftonline.com",
        "non_gallery_template_id": "8adf8e6e-67b2-4cf2-a259-e3dc5476c621",
    },
    "usgovernment": {
        "graph_endpoint": "https://graph.microsoft.us",
        "authority_host": "https://login.microsoftonline.us",
        "non_gallery_template_id": "4602d0b4-76bb-404b-bca9-2652e1a39c6d",
    },
    "china": {
        "graph_endpoint": "https://microsoftgraph.chinacloudapi.cn",
        "authority_host": "https://login.chinacloudapi.cn",
        "non_gallery_template_id": "5a532e38-1581-4918-9658-008dc27c1d68",
    },
}

# AZURE_CLOUD_ENVIRONMENT values (azure.azcollection / AWX "Microsoft Azure Resource Manager" credential).
CLOUD_ENVIRONMENTS = {
    "azurecloud": "public",
    "azurepubliccloud": "public",
    "azureusgovernment": "usgovernment",
    "azureusgovernmentcloud": "usgovernment",
    "azurechinacloud": "china",
}

# Authority hosts msal knows (msal.authority.WELL_KNOWN_AUTHORITY_HOSTS): for these msal's instance
# discovery is a no-op; for any other host (an emulator, a test server) it must be turned off,
# and the host must then serve <authority>/v2.0/.well-known/openid-configuration over HTTPS.
MICROSOFT_AUTHORITY_HOSTS = frozenset([
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
    "login.chinacloudapi.cn", "login.partner.microsoftonline.cn", "login.microsoftonline.de",
    "login-us.microsoftonline.com", "login.microsoftonline.us", "login.usgovcloudapi.net",
])


def _strip_url(value, what):
    """Normalise an https base URL (scheme added if missing, trailing slash removed); refuse other schemes."""
    value = str(value).strip()
    if "://" not in value:
        value = "https://" + value
    parsed = urlparse(value)
    if parsed.scheme.lower() != "https" or not parsed.netloc:
        raise ValueError("%s must be an https:// URL, got %r" % (what, value))
    return value.rstrip("/")


def resolve_cloud(params, environ=None):
    """Return the endpoints to use: ``name``, ``graph_endpoint``, ``authority_host``, ``non_gallery_template_id``.

    ``cloud`` (or else ``AZURE_CLOUD_ENVIRONMENT``, else ``public``) picks the defaults;
    ``graph_endpoint`` and ``authority_host`` override them. Raises ValueError on bad values.
    """
    environ = os.environ if environ is None else environ
    name = params.get("cloud")
    if not name:
        env_value = (environ.get("AZURE_CLOUD_ENVIRONMENT") or "").strip()
        if env_value:
            name = CLOUD_ENVIRONMENTS.get(env_value.lower())
            if name is None and env_value.lower() in CLOUDS:
                name = env_value.lower()
            if name is None:
                raise ValueError(
                    "AZURE_CLOUD_ENVIRONMENT=%s is not supported: use AzureCloud, AzureUSGovernment or AzureChinaCloud "
                    "(or the cloud option: public, usgovernment, china)" % env_value)
        else:
            name = "public"
    if name not in CLOUDS:
        raise ValueError("cloud must be one of %s, got %r" % (", ".join(sorted(CLOUDS)), name))
    cloud = dict(CLOUDS[name], name=name)
    if params.get("graph_endpoint"):
        endpoint = _strip_url(params["graph_endpoint"], "graph_endpoint")
        endpoint = re.sub(r"/(v1\.0|beta)$", "", endpoint)
        cloud["graph_endpoint"] = endpoint
    if params.get("authority_host"):
        cloud["authority_host"] = _strip_url(params["authority_host"], "authority_host")
    return cloud

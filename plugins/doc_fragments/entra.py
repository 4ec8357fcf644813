# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    """Microsoft Graph authentication and connection options shared by every Entra module.

    Must stay identical to ENTRA_ARGUMENT_SPEC in plugins/module_utils/_entra_module.py.
    """

    DOCUMENTATION = r"""
options:
  tenant_id:
    description:
      - The Microsoft Entra tenant (directory) ID or a verified domain name of the tenant.
      - Required for O(auth_method=client_secret) and O(auth_method=certificate); optional for
        O(auth_method=azure_cli) (passed as C(--tenant)).
      - If not set, the environment variable E(AZURE_TENANT_ID), else E(AZURE_TENANT), is used.
    type: str
  client_id:
    description:
      - The application (client) ID of the app registration used to call Microsoft Graph.
      - Required for O(auth_method=client_secret) and O(auth_method=certificate).
      - If not set, the environment variable E(AZURE_CLIENT_ID) is used.
    type: str
  client_secret:
    description:
      - A client secret (its value, not its secret ID) of the app registration.
      - If not set, the environment variable E(AZURE_CLIENT_SECRET), else E(AZURE_SECRET), is used, so a stock
        AWX "Microsoft Azure Resource Manager" credential works unchanged.
    type: str
  client_certificate_path:
    description:
      - Path to a PEM file holding the private key and the certificate registered on the app registration.
      - The client assertion is signed with PS256 and identifies the certificate by its SHA-256 thumbprint.
      - If not set, the environment variable E(AZURE_CLIENT_CERTIFICATE_PATH) is used.
    type: path
  client_certificate_password:
    description:
      - Password of the private key in O(client_certificate_path), when it is encrypted.
      - If not set, the environment variable E(AZURE_CLIENT_CERTIFICATE_PASSWORD) is used.
    type: str
  access_token:
    description:
      - A Microsoft Graph access token obtained elsewhere, for example with
        C(az account get-access-token --resource https://graph.microsoft.com --query accessToken -o tsv).
      - The token cannot be refreshed; an expired token or a token for another resource is refused.
    type: str
  auth_method:
    description:
      - How to get a Microsoft Graph access token.
      - V(auto) picks, in this order, O(access_token); a certificate (O(client_certificate_path)); a client secret
        (O(client_secret)); a managed identity when O(managed_identity_client_id) is set or E(IDENTITY_ENDPOINT) or
        E(MSI_ENDPOINT) is in the environment; the Azure CLI when C(az) is on E(PATH). When nothing usable is
        given the task fails and lists every way to supply credentials.
      - V(managed_identity) uses the system-assigned identity, or the user-assigned identity
        O(managed_identity_client_id). On an Azure VM (no identity environment variables) set it explicitly.
      - V(azure_cli) runs C(az account get-access-token) as the user running the module (after C(az login)).
      - No Azure subscription is needed for any method.
    type: str
    default: auto
    choices: [auto, client_secret, certificate, managed_identity, access_token, azure_cli]
  managed_identity_client_id:
    description:
      - Client ID of a user-assigned managed identity. Without it O(auth_method=managed_identity) uses the
        system-assigned identity.
    type: str
  cloud:
    description:
      - The Microsoft cloud. It sets the Graph endpoint, the login authority host and the non-gallery
        application template ID (V(public) C(8adf8e6e-67b2-4cf2-a259-e3dc5476c621), V(usgovernment)
        C(4602d0b4-76bb-404b-bca9-2652e1a39c6d), V(china) C(5a532e38-1581-4918-9658-008dc27c1d68)).
      - If not set, the environment variable E(AZURE_CLOUD_ENVIRONMENT) is used (V(AzureCloud), V(AzureUSGovernment)
        or V(AzureChinaCloud)), else V(public).
      - O(graph_endpoint) and O(authority_host) override the endpoints this option sets.
    type: str
    choices: [public, usgovernment, china]
  graph_endpoint:
    description:
      - Base URL of Microsoft Graph (without C(/v1.0)), overriding the one set by O(cloud).
      - Must be C(https://). Used for the token scope too (C(<graph_endpoint>/.default)).
    type: str
  authority_host:
    description:
      - Base URL of the Microsoft Entra login service, overriding the one set by O(cloud). The authority is
        C(<authority_host>/<tenant_id>).
      - Must be C(https://). For a host that is not a Microsoft login host (for example a local emulator) instance
        discovery is turned off; the host must serve C(<authority_host>/<tenant_id>/v2.0/.well-known/openid-configuration).
      - If not set, the environment variable E(AZURE_AUTHORITY_HOST) is used.
    type: str
  validate_certs:
    description:
      - Whether to verify the TLS certificates of Microsoft Graph and of the login service.
      - Set to V(false) only for tests.
    type: bool
    default: true
  ca_path:
    description:
      - A CA bundle file (or a directory prepared with C(c_rehash)) used to verify the TLS certificates of Microsoft Graph
        and of the login service.
      - It takes precedence over the E(REQUESTS_CA_BUNDLE) and E(CURL_CA_BUNDLE) environment variables. Proxy
        environment variables (E(HTTPS_PROXY), E(NO_PROXY)) are honoured.
    type: path
  timeout:
    description:
      - Timeout in seconds of each HTTP request.
      - Throttled (429) and unavailable (503) answers are retried after their C(Retry-After) time, and 500, 502, 504 and
        connection errors with exponential back-off, within a bounded number of attempts and total time.
    type: int
    default: 30
  token_cache:
    description:
      - Keep access tokens in a cache on disk so that all tasks of a run that use the same credential share one token
        (one token request per credential instead of one per task).
      - The cache is a mode 0600 file per credential (authority, tenant, client and resource) in a mode 0700 directory;
        it holds access tokens, never the client secret or the certificate key. It is skipped, with a warning, when
        the directory is accessible by other users.
      - Not used by O(auth_method=access_token) and O(auth_method=azure_cli).
    type: bool
    default: true
  token_cache_path:
    description:
      - Directory of the token cache.
      - Defaults to C($XDG_CACHE_HOME/entrascim-cloudflare), else C(~/.cache/entrascim-cloudflare).
    type: path
notes:
  - The app registration needs Microsoft Graph application permissions with admin consent; a 401 or 403 answer names
    the permission the failed step needs.
"""

    ACTION_GROUP = r"""
attributes:
  action_group:
    description: Use C(group/entrascim.cloudflare.entra) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - entrascim.cloudflare.entra
"""

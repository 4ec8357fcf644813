# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    """Connection options of the Cloudflare API (``module_defaults: group/entrascim.cloudflare.cloudflare``)."""

    DOCUMENTATION = r"""
options:
  api_endpoint:
    description:
      - Base URL of the Cloudflare API v4.
      - The SCIM endpoint of an account is C(<api_endpoint>/accounts/<account_id>/scim/v2), the Tenant URL that
        M(entrascim.cloudflare.entra_sync_secrets) stores as C(BaseAddress).
      - Change it only for a proxy or a test server.
    type: str
    default: https://api.cloudflare.com/client/v4
  validate_certs:
    description:
      - Whether to verify the TLS certificate of O(api_endpoint).
      - Set to V(false) only for a test server; use O(ca_path) for a private CA instead.
    type: bool
    default: true
  ca_path:
    description:
      - A CA bundle file (or a directory of hashed CA certificates) to verify O(api_endpoint) with, for TLS-inspecting
        proxies or test servers.
      - It applies to every request and wins over the E(REQUESTS_CA_BUNDLE) and E(CURL_CA_BUNDLE) environment variables.
    type: path
  timeout:
    description:
      - Seconds to wait for each HTTP answer from Cloudflare.
      - Requests answered with 429 or 503 are retried after C(Retry-After); 5xx answers and connection errors are
        retried with exponential back-off, for at most a few attempts.
    type: int
    default: 30
"""

    ACTION_GROUP = r"""
attributes:
  action_group:
    description: Use C(group/entrascim.cloudflare.cloudflare) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - entrascim.cloudflare.cloudflare
"""

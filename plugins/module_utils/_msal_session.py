# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``requests`` session msal sends its token requests with: the transport's TLS settings, a default timeout, and
never a redirect (each of its requests carries a credential). Imported only when a token is fetched."""


from ._transport import USER_AGENT, RedirectRefused


def make_tls_session(forced_verify=None, default_timeout=None):
    """A ``requests.Session`` whose TLS setting beats the CA-bundle environment variables (for msal).

    requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE replace ``Session.verify`` whenever a request is
    sent with ``verify`` unset (which is what msal does), so the session re-applies ``forced_verify``
    (False, a CA file/directory, or None for requests' default) after requests merged the environment.
    ``default_timeout`` applies when the caller (msal) sends no timeout. Proxy variables keep working.
    """
    import requests
    import requests.adapters

    class TLSSession(requests.Session):
        def __init__(self):
            super(TLSSession, self).__init__()
            self.forced_verify = forced_verify
            self.default_timeout = default_timeout
            self.headers["User-Agent"] = USER_AGENT
            adapter = requests.adapters.HTTPAdapter(max_retries=0)
            self.mount("https://", adapter)
            self.mount("http://", adapter)
            if forced_verify is not None:
                self.verify = forced_verify

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            settings = super(TLSSession, self).merge_environment_settings(url, proxies, stream, verify, cert)
            if self.forced_verify is not None:
                settings["verify"] = self.forced_verify
            return settings

        def request(self, method, url, *args, **kwargs):
            if kwargs.get("timeout") is None and self.default_timeout is not None:
                kwargs["timeout"] = self.default_timeout
            # Every request of this session carries a credential (a client secret or assertion, a managed identity
            # header): never follow a redirect, which would send it to wherever the Location header points.
            kwargs["allow_redirects"] = False
            response = super(TLSSession, self).request(method, url, *args, **kwargs)
            if 300 <= response.status_code < 400:
                response.close()
                raise RedirectRefused(url, response.status_code, response.headers.get("Location"))
            return response

    return TLSSession()

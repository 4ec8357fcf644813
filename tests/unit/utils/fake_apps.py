# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Applications and service principals in memory (entra_app's part of Graph), with the quirks the module must survive."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import uuid

from ansible_collections.entrascim.cloudflare.plugins.module_utils._service_principals import MARKER_TAG
from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import FakeGraph, matches, not_found

TEMPLATE = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
OTHER_TEMPLATE = "4602d0b4-76bb-404b-bca9-2652e1a39c6d"
USER_ROLE = {"id": "18d14569-c3bd-439b-9a66-3a2aee01d14f", "value": None, "displayName": "User", "isEnabled": True}
TEMPLATE_TAGS = ["WindowsAzureActiveDirectoryCustomSingleSignOnApplication", "WindowsAzureActiveDirectoryIntegratedApp"]


class FakeAppsGraph(FakeGraph):
    """Applications and service principals in memory, with the quirks the module must survive.

    ``hidden_reads[object id]`` = how many more reads (GET by id or list) answer as if it did not exist yet;
    ``instantiate_404`` creates the objects but answers 404; ``instantiate_creates`` False makes that 404 honest.
    """

    def __init__(self, instantiate_404=False, instantiate_creates=True, lag=0):
        super(FakeAppsGraph, self).__init__()
        self.apps = {}
        self.sps = {}
        self.hidden_reads = {}
        self.instantiate_404 = instantiate_404
        self.instantiate_creates = instantiate_creates
        self.lag = lag
        self.fail_on = {}
        self.templates = {TEMPLATE, OTHER_TEMPLATE}

    def add_app(self, name, template=TEMPLATE, with_sp=True, notes="fingerprint:abc", tags=None):
        """An existing app; by default one this collection made (its service principal carries the marker tag)."""
        app_id = str(uuid.uuid4())
        app = {"id": str(uuid.uuid4()), "appId": app_id, "displayName": name, "applicationTemplateId": template}
        self.apps[app["id"]] = app
        if with_sp:
            sp = {"id": str(uuid.uuid4()), "appId": app_id, "displayName": name, "applicationTemplateId": template,
                  "appRoles": [dict(USER_ROLE)], "notes": notes,
                  "tags": list(TEMPLATE_TAGS + [MARKER_TAG] if tags is None else tags)}
            self.sps[sp["id"]] = sp
        return app

    def sp_of(self, app):
        return next(sp for sp in self.sps.values() if sp["appId"] == app["appId"])

    @property
    def writes(self):
        return [call for call in self.calls if call[0] != "GET"]

    def _visible(self, object_id):
        remaining = self.hidden_reads.get(object_id, 0)
        if remaining > 0:
            self.hidden_reads[object_id] = remaining - 1
            return False
        return True

    def _check_failure(self, method, path):
        error = self.fail_on.get((method, path.split("?")[0].rstrip("/")))
        if error is not None:
            raise error

    def list(self, path, params=None):
        self.calls.append(("GET", path, dict(params or {})))
        self._check_failure("GET", path)
        source = self.apps if path == "/applications" else self.sps
        return [dict(obj) for obj in list(source.values()) if matches(obj, params) and self._visible(obj["id"])]

    def get(self, path, params=None):
        self.calls.append(("GET", path, dict(params or {})))
        self._check_failure("GET", path)
        kind, object_id = path.strip("/").split("/")
        if kind == "applicationTemplates":
            if object_id not in self.templates:
                raise not_found(object_id)
            return {"id": object_id, "displayName": "Non-gallery"}
        obj = (self.apps if kind == "applications" else self.sps).get(object_id)
        if obj is None or not self._visible(object_id):
            raise not_found(object_id)
        return dict(obj)

    def post(self, path, body=None):
        self.calls.append(("POST", path, body))
        self._check_failure("POST", path)
        template = path.split("/")[2]
        if self.instantiate_404 and not self.instantiate_creates:
            raise not_found(template)
        app = self.add_app(body["displayName"], template=template, notes=None, tags=TEMPLATE_TAGS)
        sp = self.sp_of(app)
        for object_id in (app["id"], sp["id"]):
            self.hidden_reads[object_id] = self.lag
        if self.instantiate_404:
            raise not_found(app["id"])
        return {"application": dict(app), "servicePrincipal": dict(sp)}

    def delete(self, path):
        self.calls.append(("DELETE", path, None))
        self._check_failure("DELETE", path)
        object_id = path.strip("/").split("/")[1]
        app = self.apps.pop(object_id, None)
        if app is None:
            raise not_found(object_id)
        for sp_id in [sp["id"] for sp in self.sps.values() if sp["appId"] == app["appId"]]:
            del self.sps[sp_id]

    def patch(self, path, body):
        """Only the marker tags of a service principal may be written (never its notes: the token fingerprint)."""
        self.calls.append(("PATCH", path, body))
        self._check_failure("PATCH", path)
        kind, object_id = path.strip("/").split("/")
        assert kind == "servicePrincipals" and set(body) == {"tags"}, "entra_app may only write service principal tags"
        sp = self.sps.get(object_id)
        if sp is None or not self._visible(object_id):
            raise not_found(object_id)
        sp["tags"] = list(body["tags"])

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Users, groups and one service principal's app role assignments in memory (entra_app_assignment's part of Graph)."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import uuid

from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import FakeGraph, graph_error, matches, not_found

USER_ROLE_ID = "18d14569-c3bd-439b-9a66-3a2aee01d14f"
MSIAM_ROLE_ID = "b9632174-c057-4f7e-951b-be3adc52bfe6"
SP_ID = "a750f6cf-2319-464a-bcc3-456926736a91"
ROLES = [
    {"id": USER_ROLE_ID, "value": None, "displayName": "User", "isEnabled": True},
    {"id": MSIAM_ROLE_ID, "value": None, "displayName": "msiam_access", "isEnabled": True},
]


def writes(graph):
    """The writes made, plain or in a ``$batch``."""
    return [call for call in graph.calls if call[0].split("(")[0] in ("POST", "DELETE")]


class FakeAssignmentsGraph(FakeGraph):
    """Users, groups, one service principal and its appRoleAssignedTo collection."""

    def __init__(self):
        super(FakeAssignmentsGraph, self).__init__()
        self.users = {}
        self.groups = {}
        self.assignments = []
        self.batches = []
        self.sp_hidden = 0  # reads of the service principal answering 404 (replication)
        self.post_hidden = 0  # assignment POSTs answering 404 (the SP is not replicated to the writer yet)
        self.post_errors = {}  # principal id -> GraphError
        self.list_lags = False  # the list does not show assignments yet
        self.batch_outages = 0  # batched requests answered 503 (no Retry-After) before they run

    def user(self, upn, name=None):
        obj = {"id": str(uuid.uuid4()), "userPrincipalName": upn, "displayName": name or upn.split("@")[0].title()}
        self.users[obj["id"]] = obj
        return obj

    def group(self, name):
        obj = {"id": str(uuid.uuid4()), "displayName": name}
        self.groups[obj["id"]] = obj
        return obj

    def assign(self, principal, role_id=USER_ROLE_ID):
        kind = "User" if principal["id"] in self.users else "Group"
        item = {"id": "asg-%s" % uuid.uuid4().hex, "appRoleId": role_id, "principalId": principal["id"], "principalType": kind,
                "principalDisplayName": principal["displayName"], "resourceId": SP_ID}
        self.assignments.append(item)
        return item

    @property
    def writes(self):
        return [call for call in self.calls if call[0] in ("POST", "DELETE")]

    def assigned(self):
        return sorted((a["principalDisplayName"], a["appRoleId"]) for a in self.assignments)

    # ------------------------------------------------------------------ client interface
    def get(self, path, params=None):
        self.calls.append(("GET", path, dict(params or {})))
        return self._get(path, params or {})

    def _get(self, path, params):
        parts = path.strip("/").split("/")
        if parts[0] == "servicePrincipals" and parts[2:] == ["appRoleAssignedTo"]:
            return {"value": self._listing()}
        if parts[0] == "servicePrincipals":
            if self.sp_hidden > 0:
                self.sp_hidden -= 1
                raise not_found(parts[1])
            return {"id": SP_ID, "appId": "app", "displayName": "Prod", "appRoles": ROLES}
        source = self.users if parts[0] == "users" else self.groups
        if len(parts) == 2:
            if parts[1] not in source:
                raise not_found(parts[1])
            return dict(source[parts[1]])
        return {"value": [dict(obj) for obj in source.values() if matches(obj, params)]}

    def list(self, path, params=None):
        self.calls.append(("GET", path, dict(params or {})))
        assert path == "/servicePrincipals/%s/appRoleAssignedTo" % SP_ID
        return self._listing()

    def _listing(self):
        return [] if self.list_lags else [dict(a) for a in self.assignments]

    def post(self, path, body=None):
        self.calls.append(("POST", path, body))
        return self._post(body)

    def _post(self, body):
        assert body["resourceId"] == SP_ID
        if self.post_hidden > 0:
            self.post_hidden -= 1
            raise not_found(SP_ID)
        if body["principalId"] in self.post_errors:
            raise self.post_errors[body["principalId"]]
        if any(a["principalId"] == body["principalId"] and a["appRoleId"] == body["appRoleId"] for a in self.assignments):
            raise graph_error(400, "Request_BadRequest", "Permission being assigned already exists on the object")
        principal = self.users.get(body["principalId"]) or self.groups[body["principalId"]]
        return dict(self.assign(principal, body["appRoleId"]))

    def delete(self, path):
        self.calls.append(("DELETE", path, None))
        self._delete(path)

    def _delete(self, path):
        assignment_id = path.rsplit("/", 1)[1]
        for index, item in enumerate(self.assignments):
            if item["id"] == assignment_id:
                del self.assignments[index]
                return
        raise not_found(assignment_id)

    def record_batch(self, requests):
        assert 1 < len(requests) <= 20
        self.batches.append(requests)

    def answer_batched(self, request, path, params):
        """Reads, adds and removes in one ``$batch``, each recorded as ``<method>(batch)``; outages first."""
        method = request["method"]
        self.calls.append((method + "(batch)", request["url"], request.get("body")))
        if self.batch_outages > 0:
            self.batch_outages -= 1
            return 503, {"error": {"code": "serviceNotAvailable", "message": "Retry later."}}
        if method == "GET":
            return 200, self._get(path, params)
        if method == "POST":
            return 201, self._post(request["body"])
        self._delete(path)
        return 204, None

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One service principal's synchronization (jobs, secrets, provisioning logs) in memory: the part of Graph that
entra_sync_job, entra_sync_secrets and entra_sync_job_info use."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import copy
import re
import uuid

from ansible_collections.entrascim.cloudflare.tests.unit.utils.fake_graph import FakeGraph, graph_error

SP_ID = "a750f6cf-2319-464a-bcc3-456926736a91"
APP_ID = "17cad0e7-cd2b-4e51-a75d-ba810f3e4045"
BASE = "https://api.cloudflare.com/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/scim/v2"
TOKEN = "cf-scim-token-Unit-Test-Value-9f8e7d6c5b4a"
NEW_TOKEN = "cf-scim-token-Rotated-Value-0a1b2c3d4e5f"
NEVER = "0001-01-01T00:00:00Z"
SENSITIVE = ("SecretToken",)
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def make_job(job_id=None, schedule="Disabled", code="NotConfigured", execution=None, quarantine=None, template="scim"):
    return {
        "id": job_id or "scim.%s.%s" % (uuid.uuid4().hex, APP_ID),
        "templateId": template,
        "schedule": {"expiration": None, "interval": "P10675199DT2H48M5.4775807S" if schedule == "Disabled" else "PT40M",
                     "state": schedule},
        "status": {"code": code, "countSuccessiveCompleteFailures": 0, "escrowsPruned": False, "lastExecution": execution,
                   "quarantine": quarantine, "steadyStateFirstAchievedTime": NEVER, "steadyStateLastAchievedTime": NEVER,
                   "synchronizedEntryCountByType": []},
    }


def execution(state="Succeeded", began="2025-06-02T10:00:00Z", ended="2025-06-02T10:00:30Z", cycle="cycle-1", error=None):
    return {"activityIdentifier": cycle, "state": state, "timeBegan": began, "timeEnded": ended, "countExported": 3,
            "countImported": 5, "countEscrowed": 0, "error": error}


QUARANTINE = {"reason": "EncounteredQuarantineException", "currentBegan": "2025-06-02T10:00:00Z", "nextAttempt": "2025-06-02T10:40:00Z",
              "seriesBegan": "2025-06-02T09:00:00Z", "seriesCount": 2,
              "error": {"code": "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
                        "message": "Error validating credentials.", "tenantActionable": True}}


class FakeSyncGraph(FakeGraph):
    """One service principal's synchronization in memory.

    ``fail[(method, suffix)]`` is a list of errors raised (one per call) before the call succeeds; the suffix is the
    end of the path (``jobs``, ``start``, ``secrets``...). ``validate`` decides whether validateCredentials accepts
    (base address, token). ``logs`` are provisioningObjectSummary items, served ``page_size`` per page.
    """

    def __init__(self, sp_id=SP_ID, notes=None):
        super(FakeSyncGraph, self).__init__()
        self.sp = {"id": sp_id, "appId": APP_ID, "displayName": "Cloudflare SCIM - Prod", "notes": notes,
                   "applicationTemplateId": "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"}
        self.sps = [self.sp]
        self.jobs = {}
        self.secrets = {}
        self.fail = {}
        self.validate = lambda base, token: token != "rejected-token-value-000"
        self.logs = []
        self.page_size = 2
        self.on_get_job = None
        self.create_then_fail = []  # errors answered by job creations that did create the job

    # -- helpers
    @property
    def writes(self):
        return [(method, path) for method, path, dummy in self.calls if method in WRITE_METHODS and not path.endswith("/validateCredentials")]

    def add_job(self, **kwargs):
        job = make_job(**kwargs)
        self.jobs[job["id"]] = job
        return job

    def _maybe_fail(self, method, path):
        for (fail_method, suffix), errors in self.fail.items():
            if fail_method == method and path.endswith(suffix) and errors:
                raise errors.pop(0)

    def _job_of(self, path):
        match = re.search(r"/synchronization/jobs/([^/]+)", path)
        job = self.jobs.get(match.group(1).replace("%2E", ".")) if match else None
        if job is None:
            raise graph_error(404, "Request_ResourceNotFound")
        return job

    # -- GraphClient interface
    def get(self, path, params=None, headers=None):
        path = path.lstrip("/")  # GraphClient takes both forms
        self.calls.append(("GET", path, params))
        self._maybe_fail("GET", path)
        if path.endswith("/synchronization/secrets"):
            return {"value": [{"key": k, "value": "*" if k in SENSITIVE else v} for k, v in self.secrets.items()]}
        if "/synchronization/jobs/" in path:
            job = self._job_of(path)
            if self.on_get_job is not None:
                self.on_get_job(job)
            return copy.deepcopy(job)
        if path.startswith("servicePrincipals/"):
            sp_id = path.split("/")[1]
            for sp in self.sps:
                if sp["id"] == sp_id:
                    return copy.deepcopy(sp)
            raise graph_error(404, "Request_ResourceNotFound")
        raise AssertionError("unexpected GET %s" % path)

    def answer_batched(self, request, path, params):
        """$batch of GETs: each item is answered like ``get`` (recorded as a GET)."""
        assert request["method"] == "GET"
        return 200, self.get(path.lstrip("/"), params=params or None)

    def list(self, path, params=None, headers=None):
        path = path.lstrip("/")  # GraphClient takes both forms
        self.calls.append(("LIST", path, params))
        self._maybe_fail("LIST", path)
        if path.endswith("/synchronization/jobs"):
            return [copy.deepcopy(job) for job in self.jobs.values()]
        if path == "servicePrincipals":
            name = re.search(r"displayName eq '((?:[^']|'')*)'", params["$filter"]).group(1).replace("''", "'")
            return [copy.deepcopy(sp) for sp in self.sps if sp["displayName"] == name]
        raise AssertionError("unexpected list %s" % path)

    def iter_pages(self, path, params=None, headers=None):
        path = path.lstrip("/")  # GraphClient takes both forms
        assert path == "auditLogs/provisioning"
        job_id = re.search(r"jobId eq '((?:[^']|'')*)'", params["$filter"]).group(1).replace("''", "'")
        items = [item for item in self.logs if item["jobId"] == job_id and item["provisioningStatusInfo"]["status"] == "failure"]
        items.sort(key=lambda item: item["activityDateTime"], reverse=True)
        start = 0
        while True:
            self.calls.append(("GET", path, params))
            page = items[start:start + self.page_size]
            start += self.page_size
            document = {"value": copy.deepcopy(page)}
            if start < len(items):
                document["@odata.nextLink"] = "https://graph.example/v1.0/auditLogs/provisioning?$skiptoken=%d" % start
            yield document
            if "@odata.nextLink" not in document:
                return

    def post(self, path, body=None, headers=None, idempotent=False):
        path = path.lstrip("/")  # GraphClient takes both forms
        self.calls.append(("POST", path, copy.deepcopy(body)))
        if path.endswith("/synchronization/jobs") and self.create_then_fail:
            self.add_job()
            raise self.create_then_fail.pop(0)
        self._maybe_fail("POST", path)
        if path.endswith("/synchronization/jobs"):
            job = self.add_job(template=body["templateId"])
            return copy.deepcopy(job)
        job = self._job_of(path)
        action = path.rsplit("/", 1)[1]
        if action == "start":
            job["schedule"]["state"] = "Active"
            job["status"]["code"] = "Active" if job["status"]["lastExecution"] else "NotRun"
            job["status"]["quarantine"] = None
        elif action == "pause":
            job["schedule"]["state"] = "Paused"
            job["status"]["code"] = "Paused"
        elif action == "restart":
            job["schedule"]["state"] = "Active"
            job["status"]["code"] = "Active" if job["status"]["lastExecution"] else "NotRun"
            job["status"]["quarantine"] = None
        elif action == "validateCredentials":
            assert body["useSavedCredentials"] is False
            creds = dict((item["key"], item["value"]) for item in body["credentials"])
            if not self.validate(creds["BaseAddress"], creds["SecretToken"]):
                raise graph_error(400, "CredentialValidationUnavailable", "Error validating credentials. HTTP 401 from the target.")
        else:
            raise AssertionError("unexpected POST %s" % path)
        return None

    def put(self, path, body, headers=None):
        path = path.lstrip("/")  # GraphClient takes both forms
        self.calls.append(("PUT", path, copy.deepcopy(body)))
        self._maybe_fail("PUT", path)
        assert path.endswith("/synchronization/secrets")
        for item in body["value"]:
            self.secrets[item["key"]] = item["value"]

    def patch(self, path, body, headers=None):
        path = path.lstrip("/")  # GraphClient takes both forms
        self.calls.append(("PATCH", path, copy.deepcopy(body)))
        self._maybe_fail("PATCH", path)
        assert path == "servicePrincipals/%s" % self.sp["id"] and set(body) == {"notes"}
        self.sp["notes"] = body["notes"]

    def delete(self, path, headers=None):
        path = path.lstrip("/")  # GraphClient takes both forms
        self.calls.append(("DELETE", path, None))
        self._maybe_fail("DELETE", path)
        job = self._job_of(path)
        del self.jobs[job["id"]]


def only_job(graph):
    assert len(graph.jobs) == 1
    return next(iter(graph.jobs.values()))


def log(job_id, when, status="failure", name="alice@example.com"):
    return {"id": str(uuid.uuid4()), "jobId": job_id, "cycleId": "c1", "activityDateTime": when, "provisioningAction": "create",
            "provisioningStatusInfo": {"status": status, "errorInformation": {"errorCode": "SystemForCrossDomainIdentityManagementBadRequest",
                                                                              "reason": "userName must be an e-mail"} if status == "failure" else None},
            "sourceIdentity": {"id": "u1", "displayName": name, "identityType": "User", "details": {}},
            "targetIdentity": {"id": "", "displayName": name, "identityType": "urn:ietf:params:scim:schemas:core:2.0:User", "details": {}}}

# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the per-account summary (plugins/filter/summary.py), with host variables as the collection's playbooks
register them."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

from ansible_collections.entrascim.cloudflare.plugins.filter.summary import FilterModule, scim_summary

PROVISION = ["cloudflare_scim_app", "cloudflare_scim_job_present", "cloudflare_scim_secrets", "cloudflare_scim_assignment",
             "cloudflare_scim_job"]
AUDIT = ["cloudflare_scim_cycle", "cloudflare_scim_preflight", "cloudflare_scim_check"]
ACCOUNT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
APP_ID = "f34d6555-1d02-4f2b-908e-13588c4ed99a"
SKIPPED = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}


def job(code="Active"):
    return {"id": "scim.1", "schedule": {"state": "Active"}, "status": {"code": code}}


def provisioned(changed=(), **extra):
    """The variables of an account after provision.yml, ``changed`` naming the results that changed."""
    variables = {
        "cloudflare_scim_account_id": ACCOUNT,
        "cloudflare_scim_app": {"changed": "cloudflare_scim_app" in changed, "application": {"app_id": APP_ID}},
        "cloudflare_scim_job_present": {"changed": "cloudflare_scim_job_present" in changed, "job": job("NotRun")},
        "cloudflare_scim_secrets": {"changed": "cloudflare_scim_secrets" in changed},
        "cloudflare_scim_assignment": {"changed": "cloudflare_scim_assignment" in changed},
        "cloudflare_scim_job": {"changed": "cloudflare_scim_job" in changed, "job": job()},
        "cloudflare_scim_check": {"changed": False, "users": 3, "groups": 1},
        "cloudflare_scim_preflight": {"changed": False, "counts": {"errors": 0, "warnings": 2}},
    }
    variables.update(extra)
    return variables


def line(host, outcome, job_status="Active", extra=" | cloudflare users=3 groups=1 | preflight errors=0 warnings=2",
         app=APP_ID, account=ACCOUNT):
    return "%s | account %s | app %s | job %s%s | %s" % (host, account, app, job_status, extra, outcome)


def test_the_filter_is_registered():
    assert FilterModule().filters() == {"scim_summary": scim_summary}


def test_ok_changed_failed_and_not_run():
    hostvars = {
        "acme-prod": provisioned(),
        "acme-staging": provisioned(changed=("cloudflare_scim_secrets", "cloudflare_scim_job")),
        "acme-dev": {"cloudflare_scim_account_id": ACCOUNT,
                     "cloudflare_scim_failure": "Test and store the Cloudflare SCIM URL and token: Failed to validate credentials"},
        "acme-new": {"cloudflare_scim_account_id": ACCOUNT},
    }
    assert scim_summary(hostvars, ["acme-staging", "acme-prod", "acme-new", "acme-dev"], PROVISION) == [
        "acme-dev | account %s | app - | job - | FAILED: Test and store the Cloudflare SCIM URL and token: Failed to "
        "validate credentials" % ACCOUNT,
        "acme-new | account %s | app - | job - | FAILED or not run (see the task output above)" % ACCOUNT,
        line("acme-prod", "ok"),
        line("acme-staging", "changed (secrets, job)"),
    ]


def test_hosts_are_sorted_ignoring_letter_case():
    hostvars = dict((host, {}) for host in ["b", "A", "a", "C"])
    assert [text.split(" |")[0] for text in scim_summary(hostvars, ["b", "C", "A", "a"], PROVISION)] == ["A", "a", "b", "C"]


def test_an_account_without_its_id_shows_a_dash_and_null_shows_none():
    assert scim_summary({"x": {}}, ["x"], PROVISION) == ["x | account - | app - | job - | FAILED or not run (see the task output above)"]
    assert scim_summary({"x": {"cloudflare_scim_account_id": None}}, ["x"], PROVISION)[0].startswith("x | account None | ")


def test_a_skipped_result_did_not_run_and_the_changed_ones_are_listed_in_the_given_order():
    variables = {"cloudflare_scim_account_id": ACCOUNT, "cloudflare_scim_app": SKIPPED, "cloudflare_scim_job": SKIPPED}
    assert scim_summary({"x": variables}, ["x"], PROVISION)[0].endswith("| FAILED or not run (see the task output above)")
    variables = provisioned(changed=PROVISION)
    assert scim_summary({"x": variables}, ["x"], list(reversed(PROVISION)))[0].endswith(
        "| changed (job, assignment, secrets, job_present, app)")


def test_the_job_status_comes_from_the_last_job_result():
    # The second entra_sync_job, then the first one, then nothing; entra_sync_job_info wins over both.
    assert scim_summary({"x": provisioned()}, ["x"], PROVISION)[0].split(" | ")[3] == "job Active"
    variables = provisioned(cloudflare_scim_job=SKIPPED)
    assert scim_summary({"x": variables}, ["x"], PROVISION)[0].split(" | ")[3] == "job NotRun"
    variables = provisioned(cloudflare_scim_job={"changed": True, "job": None})  # deprovision: the job is gone
    assert scim_summary({"x": variables}, ["x"], PROVISION)[0].split(" | ")[3] == "job -"
    variables = provisioned(cloudflare_scim_cycle={"jobs": [dict(job("Quarantine"), quarantined=True)]})
    assert scim_summary({"x": variables}, ["x"], PROVISION)[0].split(" | ")[3] == "job Quarantine"
    variables = provisioned(cloudflare_scim_job={"job": {"id": "scim.1", "status": {"code": None}}})
    assert scim_summary({"x": variables}, ["x"], PROVISION)[0].split(" | ")[3] == "job None"


def test_the_arrivals_count_over_the_first_check():
    variables = provisioned(cloudflare_scim_arrivals={"users": 5, "groups": 2})
    assert "| cloudflare users=5 groups=2 |" in scim_summary({"x": variables}, ["x"], PROVISION)[0]
    variables = provisioned(cloudflare_scim_arrivals=SKIPPED)
    assert "| cloudflare users=3 groups=1 |" in scim_summary({"x": variables}, ["x"], PROVISION)[0]
    variables = provisioned(cloudflare_scim_check={"failed": True, "users": None, "groups": None})
    assert "| cloudflare users=None groups=None |" in scim_summary({"x": variables}, ["x"], PROVISION)[0]
    variables = provisioned(cloudflare_scim_check=SKIPPED, cloudflare_scim_preflight=SKIPPED)
    assert scim_summary({"x": variables}, ["x"], PROVISION)[0] == line("x", "ok", extra="")


def test_the_app_id_of_an_audit_comes_from_the_service_principal():
    variables = {"cloudflare_scim_account_id": ACCOUNT,
                 "cloudflare_scim_cycle": {"changed": False, "service_principal": {"app_id": APP_ID}, "jobs": [job()]},
                 "cloudflare_scim_preflight": {"changed": False, "counts": {"errors": 1, "warnings": 0}},
                 "cloudflare_scim_check": {"changed": False, "users": 2, "groups": 0}}
    assert scim_summary({"x": variables}, ["x"], AUDIT) == [
        line("x", "ok", extra=" | cloudflare users=2 groups=0 | preflight errors=1 warnings=0")]
    variables["cloudflare_scim_app"] = {"changed": True, "application": None}  # deprovision: the app was deleted
    assert scim_summary({"x": variables}, ["x"], AUDIT)[0].split(" | ")[2] == "app %s" % APP_ID


def test_no_hosts():
    assert scim_summary({}, [], PROVISION) == []
    assert scim_summary({}, None, PROVISION) == []

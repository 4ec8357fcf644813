# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``scim_summary`` filter: one line per Cloudflare account, printed by playbooks/summary.yml at the end of every
playbook of the collection. Its documentation is in scim_summary.yml next to this file."""

from collections.abc import Mapping

_MISSING = object()
REGISTER_PREFIX = "cloudflare_scim_"


def _get(mapping, key, default=_MISSING):
    """``mapping[key]``, or ``default`` when ``mapping`` is not a mapping or has no such key (a key whose value is
    None is there: None is shown as None, as Jinja's ``default`` filter leaves it)."""
    if isinstance(mapping, Mapping) and key in mapping:
        return mapping[key]
    return default


def _result(hostvars, name):
    """A variable of the host (a registered result), or an empty dict when it is not defined."""
    value = _get(hostvars, name)
    return {} if value is _MISSING else value


def account_line(host, hostvars, results):
    """The summary line of one account: ``<host> | account <id> | app <app id> | job <status>[ | cloudflare users=..
    groups=..][ | preflight errors=.. warnings=..] | <outcome>``."""
    cycle = _result(hostvars, "cloudflare_scim_cycle")
    info_jobs = _get(cycle, "jobs", [])
    job = _get(_result(hostvars, "cloudflare_scim_job"), "job", _MISSING)
    if job is _MISSING:
        job = _get(_result(hostvars, "cloudflare_scim_job_present"), "job", {})
    if info_jobs:
        status = info_jobs[0]["status"]["code"]
    else:
        status = _get(_get(job, "status", {}), "code", "-")

    ran = []
    changed = []
    for name in results:
        value = _get(hostvars, name)
        if value is not _MISSING and not _get(value, "skipped", False):
            ran.append(name)
        if _get(value, "changed", False):
            changed.append(name)

    extra = ""
    arrivals = _result(hostvars, "cloudflare_scim_arrivals")
    check = arrivals if _get(arrivals, "users") is not _MISSING else _result(hostvars, "cloudflare_scim_check")
    if _get(check, "users") is not _MISSING:
        extra += " | cloudflare users=%s groups=%s" % (check["users"], _get(check, "groups", ""))
    counts = _get(_result(hostvars, "cloudflare_scim_preflight"), "counts", None)
    if counts:
        extra += " | preflight errors=%s warnings=%s" % (_get(counts, "errors", ""), _get(counts, "warnings", ""))

    app_id = _get(_get(_result(hostvars, "cloudflare_scim_app"), "application", {}), "app_id", _MISSING)
    if app_id is _MISSING:
        app_id = _get(_get(cycle, "service_principal", {}), "app_id", "-")

    failure = _get(hostvars, "cloudflare_scim_failure")
    if failure is not _MISSING:
        outcome = "FAILED: %s" % failure
    elif not ran:
        outcome = "FAILED or not run (see the task output above)"
    elif changed:
        outcome = "changed (%s)" % ", ".join(name[len(REGISTER_PREFIX):] if name.startswith(REGISTER_PREFIX) else name
                                             for name in changed)
    else:
        outcome = "ok"
    account_id = _get(hostvars, "cloudflare_scim_account_id", "-")
    return "%s | account %s | app %s | job %s%s | %s" % (host, account_id, app_id, status, extra, outcome)


def scim_summary(hostvars, hosts, results):
    """One line per host of ``hosts`` (sorted, ignoring letter case), from its variables in ``hostvars``; ``results``
    names the registered results whose ``changed`` makes the account's outcome ``changed (...)``."""
    return [account_line(host, _get(hostvars, host, {}), results or [])
            for host in sorted(hosts or [], key=lambda name: name.lower() if isinstance(name, str) else name)]


class FilterModule(object):
    """The per-account summary of the collection's playbooks."""

    def filters(self):
        return {"scim_summary": scim_summary}

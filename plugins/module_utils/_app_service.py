# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Enterprise applications made from an application template: find, instantiate, wait, delete.

Graph facts used here (microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/applicationtemplate-instantiate.md,
application-list.md, application-delete.md and concepts/application-saml-sso-configure-api.md; replication: the Microsoft
Identity blog post "Designing for Eventual Consistency for Microsoft Entra", devblogs.microsoft.com/identity):

* ``instantiate`` is not idempotent: every call creates another application and service principal, so we
  always look up first, by display name **and** application template id (``'`` doubled in the literal).
* ``instantiate`` may answer 404 although it created the objects (terraform-provider-azuread PR #1406): then we
  poll by name and template for what it created instead of calling it again.
* A new application / service principal answers 404 for a while (replication); Microsoft suggests polling
  ``GET`` until it succeeds. With ``wait`` we return only after several consecutive successful reads, which
  include the name lookup so that a re-run right away adopts the app instead of creating a second one.
* ``DELETE /applications/{id}`` removes the application and its service principal (204).
* What this collection created or adopted carries a marker: the tag ``entrascim.cloudflare`` (and
  ``entrascim.cloudflare:account:<account id>`` when the Cloudflare account is known) in the service principal's
  ``tags``, "custom strings that can be used to categorize and identify the service principal"
  (microsoft-graph-docs-contrib api-reference/v1.0/resources/serviceprincipal.md; written with ``PATCH``,
  api-reference/v1.0/api/serviceprincipal-update.md, sending the whole list: the template's own tags such as
  ``WindowsAzureActiveDirectoryIntegratedApp`` are kept). ``state=absent`` deletes only marked apps; an unmarked app
  with the same name is reported and left alone unless it is pinned by ``app_id`` with ``delete_unmarked``.
  Names are matched exactly (Graph's ``eq`` ignores letter case: the lookup's answer is filtered again).
  The service principal's ``notes`` (the token fingerprint of entra_sync_secrets) are never touched here.
* Two runs can both find no app and both instantiate: two ``ansible-playbook`` at the same time, or a run started
  again within the replication lag of one killed right after its ``instantiate``. The run that instantiated reads
  the name lookup until its own app is listed; if an older app (``createdDateTime``, then ``id``) is listed too, it
  deletes its own app and adopts the oldest, so every run that sees both keeps the same one. A run only ever deletes
  the app it created itself; duplicates that exist *before* a run creates anything are reported, never resolved
  (docs/resilience.md).
"""

import datetime
import time

from ._consistency import is_not_found, retry_replication, wait_until, wait_until_visible
from ._errors import GraphError, ReportedError, error_step
from ._graph import batch_get, odata_quote
from ._service_principals import (
    SERVICE_PRINCIPAL_FIELDS, app_path, marked_tags, service_principal_of_app, sp_path, template_path,
)

APPLICATION_FIELDS = "id,appId,displayName,applicationTemplateId,createdDateTime"
DEFAULT_INTERVAL = 2.0
CONSECUTIVE_READS = 3
# How long before the answer of an instantiate that said 404 the app it created can have been created (seconds).
INSTANTIATE_WINDOW = 3


class AppError(ReportedError):
    """A problem with what was found (duplicates, a pinned app that does not match, a missing service principal);
    ``extra`` are more keys for ``fail_json`` (for example ``duplicates``)."""


def _ids(apps):
    return ", ".join("%s (app_id %s%s)" % (app.get("id"), app.get("appId"), ", created %s" % app["createdDateTime"] if app.get("createdDateTime") else "")
                     for app in apps)


def _age(app):
    """Sort key, oldest first: ``createdDateTime`` (ISO 8601 in UTC, sorts as text), then ``id``."""
    return (app.get("createdDateTime") or "", str(app.get("id") or "").lower())


def _timestamp(value):
    """Seconds since the epoch of a Graph ``createdDateTime``/``innerError.date`` or an HTTP ``Date``; None if unreadable."""
    if not value:
        return None
    text = str(value).strip()
    try:
        moment = datetime.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
        return moment.replace(tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        pass
    import email.utils  # only for an HTTP Date (after instantiate): importing it costs every module process ~3 ms
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


class AppService:
    """Graph operations on template-made enterprise apps, with injectable ``sleep`` and ``clock`` for tests.

    ``progress`` (optional callable taking one message string) hears about every wait step.
    """

    def __init__(self, client, wait_timeout=300, interval=DEFAULT_INTERVAL, consecutive=CONSECUTIVE_READS,
                 sleep=time.sleep, clock=time.monotonic, progress=None, now=time.time):
        self.client = client
        self.now = now  # wall clock, to compare with createdDateTime
        self.create_window = None  # (start, end) of this run's instantiate request, wall clock
        self.wait_timeout = wait_timeout
        self.interval = interval
        self.consecutive = consecutive
        self.sleep = sleep
        self.clock = clock
        self.progress = progress
        self.listed = []  # the apps with the display name that the last consistency read listed
        self.unclear = []  # the apps an instantiate that answered 404 may have created, when it cannot tell which
        self.retried_create = False  # the instantiate request was sent more than once (throttled or 503 and retried)

    def _say(self, message):
        if self.progress is not None:
            self.progress(message)

    # ------------------------------------------------------------------ reads
    @staticmethod
    def _by_name_params(display_name, template_id):
        """Query of the applications with this display name made from this template (the lookup every run starts with)."""
        query = "displayName eq %s and applicationTemplateId eq %s" % (odata_quote(display_name), odata_quote(template_id))
        return {"$filter": query, "$select": APPLICATION_FIELDS}

    def find_by_name(self, display_name, template_id, exact=True):
        """Applications whose display name (exactly, unless ``exact`` is false: Graph's ``eq`` ignores letter case) and
        application template id equal the given ones."""
        with error_step("list applications"):
            apps = self.client.list("/applications", params=self._by_name_params(display_name, template_id))
        return [app for app in apps if app.get("displayName") == display_name] if exact else apps

    def find_by_name_with_service_principals(self, display_name, template_id):
        """``(applications, service principals)`` named ``display_name``, with one ``$batch``.

        The applications are those of ``find_by_name``; the service principals of the same name come in the same request
        so that an existing app's service principal needs no read of its own (one request per converged run).
        """
        (apps, apps_error), (sps, sps_error) = batch_get(self.client, [
            ("/applications", self._by_name_params(display_name, template_id), "list applications"),
            ("/servicePrincipals", {"$filter": "displayName eq %s" % odata_quote(display_name), "$select": SERVICE_PRINCIPAL_FIELDS}),
        ], again=lambda err: True)
        # A failed item costs the plain read it replaces (with that read's own retries); the service principals are only
        # a shortcut (each app's is read on its own when missing).
        if apps_error is not None:
            raise apps_error
        return (apps or {}).get("value") or [], [] if sps_error is not None else (sps or {}).get("value") or []

    def find_by_app_id(self, app_id):
        """The application with this application (client) id, or None."""
        with error_step("list applications"):
            params = {"$filter": "appId eq %s" % odata_quote(app_id), "$select": APPLICATION_FIELDS}
            apps = self.client.list("/applications", params=params)
        return apps[0] if apps else None

    def service_principal_of(self, app_id):
        """The service principal of the application with this app id, or None."""
        return service_principal_of_app(self.client, app_id)

    # ------------------------------------------------------------------ waits
    def _poll(self, what, probe):
        """``probe()`` every ``interval`` seconds until it returns something truthy; fail after ``wait_timeout``."""
        return wait_until(probe, self.wait_timeout, interval=self.interval, sleep=self.sleep, clock=self.clock,
                          progress=self.progress, what=what,
                          on_timeout=lambda polls, waited: AppError("Timed out after %s seconds waiting for %s (%d polls)"
                                                                    % (self.wait_timeout, what, polls)))

    def wait_for_service_principal(self, app):
        """The service principal of ``app``, polling while replication hides it."""
        sp = self.service_principal_of(app["appId"])
        if sp:
            return sp
        return self._poll("the service principal of application %s (app_id %s) to appear" % (app["id"], app["appId"]),
                          lambda: self.service_principal_of(app["appId"]))

    def wait_until_consistent(self, app, sp, display_name, template_id):
        """Return once the application, its service principal and the name lookup answer several times in a row."""
        application = app_path(app["id"])
        principal = sp_path(sp["id"])

        def read():
            with error_step("read application"):
                self.client.get(application, params={"$select": "id"})
            with error_step("read service principal"):
                fresh = self.client.get(principal, params={"$select": SERVICE_PRINCIPAL_FIELDS})
            if display_name is not None:
                listed = self.find_by_name(display_name, template_id)
                if not any(item.get("id") == app["id"] for item in listed):
                    error = GraphError("application %s is not yet listed under its display name" % app["id"], status=404,
                                       code="Request_ResourceNotFound")
                    error.step = "list applications"
                    raise error
                self.listed = listed
            return fresh

        return wait_until_visible(read, self.wait_timeout, consecutive=self.consecutive, interval=self.interval,
                                  sleep=self.sleep, clock=self.clock, progress=self.progress,
                                  what="application %s and its service principal %s" % (app["id"], sp["id"]))

    def wait_until_gone(self, app):
        """Return once the deleted application answers 404 several times in a row."""
        path = app_path(app["id"])
        state = {"misses": 0}

        def gone():
            try:
                with error_step("read application"):
                    self.client.get(path, params={"$select": "id"})
            except GraphError as err:
                if not is_not_found(err):
                    raise
                state["misses"] += 1
                return state["misses"] >= self.consecutive
            state["misses"] = 0
            return False

        self._poll("application %s to disappear" % app["id"], gone)

    # ------------------------------------------------------------------ writes
    def check_template(self, template_id):
        """Fail before ``instantiate`` when the template does not exist: ``instantiate`` with an unknown id answers 404,
        which is also its answer while it creates (see ``instantiate``), so it would be polled for ``wait_timeout``."""
        try:
            with error_step("read application template"):
                self.client.get(template_path(template_id), params={"$select": "id,displayName"})
        except GraphError as err:
            if err.status in (400, 404):
                raise AppError("No application template with id %s exists in this cloud (Microsoft Graph answered HTTP %s %s): "
                               "check template_id and cloud. Nothing was created." % (template_id, err.status, err.code or ""))
            raise

    def mark(self, sp, account_id=None):
        """Add the marker tags to the service principal (its other tags kept); return it with the new tags. Retried while
        a just-created service principal is replicating."""
        tags = marked_tags(sp, account_id)
        path = sp_path(sp["id"])

        def call():
            with error_step("mark the service principal as managed by entrascim.cloudflare"):
                return self.client.patch(path, {"tags": tags})

        retry_replication(call, self.wait_timeout, sleep=self.sleep, clock=self.clock, progress=self.progress,
                          what="tagging service principal %s" % sp["id"], interval=self.interval)
        marked = dict(sp)
        marked["tags"] = tags
        return marked

    def instantiate(self, template_id, display_name):
        """Create the application and service principal; return ``(application, service_principal)``.

        A 404 from ``instantiate`` may mean "created, not yet visible": then poll by name and template for the
        new app (never call instantiate twice).
        """
        try:
            started = self.now()
            with error_step("instantiate application"):
                created = self.client.post(template_path(template_id) + "/instantiate", {"displayName": display_name})
            self.retried_create = (getattr(self.client, "last_attempts", 1) or 1) > 1
            self.create_window = (started, self.now())
        except GraphError as err:
            if not is_not_found(err):
                raise
            self._say("instantiate answered 404 (%s); looking for the application it may have created" % (err.code or "no code"))
            apps = self._poll("application '%s' created by instantiate to appear" % display_name,
                              lambda: self.find_by_name(display_name, template_id))
            app = self._created_by(apps, err.date)
            if app is None:
                # Another run created one at the same time: go on with the oldest (the one every run keeps, see settle_race).
                self.unclear = apps
                app = min(apps, key=_age)
            return app, self.wait_for_service_principal(app)
        created = created or {}
        app, sp = created.get("application"), created.get("servicePrincipal")
        if not app or not app.get("id"):
            raise AppError("instantiate returned no application for '%s'" % display_name)
        if not sp or not sp.get("id"):
            sp = self.wait_for_service_principal(app)
        return app, sp

    @staticmethod
    def _created_by(apps, answered):
        """The app an ``instantiate`` that answered 404 at ``answered`` (its error date) created, among ``apps`` (which were
        not listed before it): the only one, else the only one created in the seconds before the answer; None if unclear."""
        if len(apps) == 1:
            return apps[0]
        end = _timestamp(answered)
        if end is None:
            return None
        recent = [app for app in apps if _timestamp(app.get("createdDateTime")) is not None
                  and end - INSTANTIATE_WINDOW <= _timestamp(app.get("createdDateTime")) <= end + 1]
        return recent[0] if len(recent) == 1 else None

    def _own_retries(self, keep):
        """Apps (besides ``keep``) that an earlier attempt of this run's own ``instantiate`` made: when the request was
        sent more than once, the listed apps created between its start and its answer. A 503 does not say whether the
        service acted before answering (microsoft-graph-docs-contrib concepts/errors.md), so an attempt answered 503 may
        have made an app nobody else would clean up. (A 429 means the request was not processed; the run cannot tell
        which attempt got which answer, so any retried create is settled.) An app a concurrent run made within the
        same seconds is indistinguishable and is deleted too: every run keeps the oldest, so it converges on the same
        app (docs/resilience.md)."""
        if not self.retried_create or not self.create_window:
            return []
        start, end = self.create_window
        return [item for item in self.listed if item.get("id") != keep.get("id") and _timestamp(item.get("createdDateTime")) is not None
                and start - INSTANTIATE_WINDOW <= _timestamp(item.get("createdDateTime")) <= end + 1]

    def settle_race(self, app, sp):
        """After this run created ``app`` and read it consistently: if the last read listed an older app with the same name
        (made by a concurrent run, or by a run killed right after its instantiate), delete ``app`` and adopt the oldest.
        The apps an earlier attempt of this run's own instantiate made are deleted too (``_own_retries``).

        Returns ``(kept app, its service principal, [deleted apps])``. Every run that sees both apps keeps the same one.
        """
        keep = min(self.listed or [app], key=_age)
        doomed = [] if keep.get("id") == app.get("id") else [app]
        doomed += [item for item in self._own_retries(keep) if item.get("id") not in [d.get("id") for d in doomed]]
        if not doomed:
            return app, sp, []
        self._say("keeping application %s (app_id %s), the oldest named alike; deleting %s, made by this run"
                  % (keep["id"], keep["appId"], ", ".join(item["id"] for item in doomed)))
        deleted = [item for item in doomed if self.delete(item)]
        for item in deleted:
            self.wait_until_gone(item)
        if keep.get("id") == app.get("id"):
            return app, sp, deleted
        return keep, self.wait_for_service_principal(keep), deleted

    def delete(self, app):
        """Delete the application (its service principal goes with it). Return False when it was already gone."""
        try:
            with error_step("delete application"):
                self.client.delete(app_path(app["id"]))
        except GraphError as err:
            if is_not_found(err):
                return False
            raise
        return True

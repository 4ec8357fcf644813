# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every wait of the collection, and the one place that says which Graph answers mean "not yet".

* ``wait_until(predicate, timeout, ...)``: poll a predicate (a named function per resource, kubernetes.core's
  ``waiter.py`` pattern) until it returns something truthy; ``WaitTimeout`` (or the caller's own error) after
  ``timeout``. ``wait_until_visible`` (several consecutive successful reads) and ``retry_replication`` (retry a call
  while the object replicates) are the two Graph-specific forms.
* The "not yet" vocabulary: ``is_replication_error`` (what a just-created object answers), ``is_not_found`` (a 404
  that means absent, never a wait that ran out of time).

Eventual consistency of Microsoft Entra: waiting for new objects, retrying calls on them.

A just-created application, service principal or synchronization job can answer 404
``Request_ResourceNotFound``, 403, 409 or 400 ``UnknownError`` for minutes (devblogs.microsoft.com/identity
"Designing for Eventual Consistency for Microsoft Entra": a new object may answer "Not Found"; Microsoft's SAML SSO
tutorial, microsoft-graph-docs-contrib concepts/application-saml-sso-configure-api.md, suggests polling every 5-10
seconds; hashicorp/terraform-provider-azuread retries synchronization calls on 403/409,
internal/services/synchronization/synchronization.go, and waits for several consecutive successful reads,
``ContinuousTargetOccurence`` in internal/helpers/consistency/consistency.go).
Polls start at 1 second and back off to at most 10 seconds. ``sleep``/``clock`` are injectable.
"""

import time

from ._errors import CollectionError, GraphError

DEFAULT_INTERVAL = 1.0
MAX_INTERVAL = 10.0


class ConsistencyTimeout(GraphError):
    """Waiting for an object (or retrying a call on one) ran out of time.

    Carries the last Graph error's ``status``/``code``/``request_id`` (so 403 answers still name
    the permission), plus ``what`` (what we waited for), ``waited`` (seconds), ``successes``
    (consecutive successful reads reached) and ``last_error``. Because ``status`` mirrors the last
    answer, code that maps a 404 to "absent" must let a ConsistencyTimeout through first.
    """

    def __init__(self, what, waited, last_error=None, successes=0, needed=None, attempts=0):
        if needed:
            text = "%s was not consistently visible after %d s (%d of %d consecutive successful reads, %d reads)" % (
                what, round(waited), successes, needed, attempts)
        else:
            text = "%s still failed after %d s of retries while waiting for replication (%d attempts)" % (
                what, round(waited), attempts)
        if last_error is not None:
            text += "; last answer: %s" % _describe(last_error)
        super(ConsistencyTimeout, self).__init__(
            text,
            status=getattr(last_error, "status", None),
            code=getattr(last_error, "code", None) or "ConsistencyTimeout",
            request_id=getattr(last_error, "request_id", None),
            date=getattr(last_error, "date", None),
            outer_code=getattr(last_error, "outer_code", None),
            attempts=attempts,
        )
        self.what = what
        self.waited = waited
        self.successes = successes
        self.needed = needed
        self.last_error = last_error
        if last_error is not None and getattr(last_error, "step", None):
            self.step = last_error.step


def _describe(err):
    status = getattr(err, "status", None)
    code = getattr(err, "code", None)
    head = " ".join(str(p) for p in (("HTTP %s" % status) if status is not None else None, code) if p)
    message = getattr(err, "message", None) or str(err)
    return "%s: %s" % (head, message) if head else message


def is_replication_error(err, forbidden=True):
    """True for the answers a freshly created object gives until it has replicated.

    404 (``Request_ResourceNotFound`` and friends), 409, 400 ``UnknownError``, and 403 unless ``forbidden`` is false
    (where a 403 can only mean a missing permission: a write on a service principal that worked before, an app role
    assignment). A 400 whose ``UnknownError`` wrapped a specific inner code (for example
    ``InvalidNotificationSettings``) is a real validation error, not replication lag, and is not retried.
    """
    if not isinstance(err, GraphError) or isinstance(err, ConsistencyTimeout):
        return False
    if err.status in (404, 409) or (forbidden and err.status == 403):
        return True
    return err.status == 400 and err.code == "UnknownError"


def is_not_found(err):
    """True for a 404 that means "absent" (a ``ConsistencyTimeout`` mirrors the last 404 of a wait: never absent)."""
    return isinstance(err, GraphError) and not isinstance(err, ConsistencyTimeout) and err.status == 404


class WaitTimeout(CollectionError):
    """``wait_until`` ran out of time: ``what`` was awaited for ``waited`` seconds over ``polls`` polls."""

    own_message = True

    def __init__(self, what, waited, polls):
        super(WaitTimeout, self).__init__("Timed out after %d seconds waiting for %s (%d polls)" % (round(waited), what, polls))
        self.what = what
        self.waited = waited
        self.polls = polls


def wait_until(predicate, timeout, interval=DEFAULT_INTERVAL, sleep=time.sleep, clock=time.monotonic, progress=None,
               what="the awaited state", describe=None, on_timeout=None):
    """Call ``predicate()`` until it returns something truthy and return that. When ``timeout`` seconds have passed or
    the next poll would end after them: ``on_timeout(polls, waited)`` decides (an exception it returns is raised,
    anything else is returned), else ``WaitTimeout`` is raised.

    ``interval`` is seconds between polls, or a function of the poll number (1-based) giving them. ``progress(message)``
    hears each poll that was not the last: "waiting for <what>: poll <n>[, <describe()>], <s> s elapsed". The predicate
    may raise to stop the wait (a quarantine, a permission error).
    """
    start = clock()
    polls = 0
    while True:
        polls += 1
        found = predicate()
        if found:
            return found
        elapsed = clock() - start
        delay = interval(polls) if callable(interval) else interval
        if elapsed >= timeout or elapsed + delay > timeout:
            outcome = on_timeout(polls, elapsed) if on_timeout is not None else WaitTimeout(what, elapsed, polls)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        if progress is not None:
            detail = describe() if describe is not None else None
            progress("waiting for %s: poll %d%s, %d s elapsed" % (what, polls, ", %s" % detail if detail else "", round(elapsed)))
        sleep(delay)


def _next_interval(current, max_interval):
    return min(max_interval, current * 2)


def wait_until_visible(read, timeout, consecutive=3, interval=DEFAULT_INTERVAL, sleep=time.sleep,
                       clock=time.monotonic, progress=None, what="the new object", max_interval=MAX_INTERVAL,
                       not_yet=None):
    """Call ``read()`` until it succeeds ``consecutive`` times in a row; return the last value.

    ``read`` returns a value, or raises GraphError: 404 and 403 (or whatever ``not_yet(err)`` accepts)
    mean "not visible yet" and reset the count; other errors propagate. Failed reads back off from
    ``interval`` to ``max_interval``; confirmation reads after a success wait ``interval``. Raises
    ``ConsistencyTimeout`` when ``timeout`` seconds pass. ``progress(message)`` is called on each read.
    """
    not_yet = not_yet or (lambda err: isinstance(err, GraphError) and err.status in (403, 404))
    start = clock()
    delay = interval
    successes = 0
    attempts = 0
    last_error = None
    value = None
    while True:
        attempts += 1
        try:
            value = read()
        except GraphError as err:
            if not not_yet(err):
                raise
            last_error = err
            successes = 0
            outcome = "not visible yet (%s)" % _describe(err)
            wait = delay
            delay = _next_interval(delay, max_interval)
        else:
            successes += 1
            outcome = "visible (%d of %d consecutive reads)" % (successes, consecutive)
            delay = interval
            wait = interval
        elapsed = clock() - start
        if progress is not None:
            progress("waiting for %s: read %d, %s, %d s elapsed" % (what, attempts, outcome, round(elapsed)))
        if successes >= consecutive:
            return value
        if elapsed + wait > timeout:
            raise ConsistencyTimeout(what, elapsed, last_error=last_error, successes=successes, needed=consecutive,
                                     attempts=attempts)
        sleep(wait)


def retry_replication(call, timeout, sleep=time.sleep, clock=time.monotonic, progress=None, what="the call",
                      interval=DEFAULT_INTERVAL, max_interval=MAX_INTERVAL, retry_on=is_replication_error):
    """Call ``call()`` until it stops failing with a replication error (``is_replication_error``); return its result.

    Other errors propagate at once. Raises ``ConsistencyTimeout`` (carrying the last error's status,
    code and request id) when ``timeout`` seconds pass.
    """
    start = clock()
    delay = interval
    attempts = 0
    while True:
        attempts += 1
        try:
            return call()
        except GraphError as err:
            if not retry_on(err):
                raise
            elapsed = clock() - start
            if progress is not None:
                progress("retrying %s: attempt %d answered %s, %d s elapsed" % (what, attempts, _describe(err), round(elapsed)))
            if elapsed + delay > timeout:
                raise ConsistencyTimeout(what, elapsed, last_error=err, attempts=attempts)
            sleep(delay)
            delay = _next_interval(delay, max_interval)

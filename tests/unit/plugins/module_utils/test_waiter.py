# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one waiter (``_consistency.wait_until``) and the "not yet" vocabulary."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import pytest

from ansible_collections.entrascim.cloudflare.plugins.module_utils._consistency import (
    ConsistencyTimeout, WaitTimeout, is_not_found, is_replication_error, wait_until,
)
from ansible_collections.entrascim.cloudflare.plugins.module_utils._errors import GraphError
from ansible_collections.entrascim.cloudflare.tests.unit.utils.common import FakeClock


def answers(*values):
    values = list(values)
    return lambda: values.pop(0)


def test_returns_the_first_truthy_answer_with_a_progress_line_per_poll():
    clock, lines = FakeClock(), []
    found = wait_until(answers(None, 0, "ready"), 30, interval=5, sleep=clock.sleep, clock=clock.clock, progress=lines.append,
                       what="the job", describe=lambda: "status NotRun")
    assert found == "ready" and clock.clock() == 1010.0
    assert lines == ["waiting for the job: poll 1, status NotRun, 0 s elapsed", "waiting for the job: poll 2, status NotRun, 5 s elapsed"]


def test_times_out_before_a_poll_would_end_past_the_timeout():
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as caught:
        wait_until(lambda: False, 12, interval=5, sleep=clock.sleep, clock=clock.clock, what="the app")
    assert caught.value.polls == 3 and clock.clock() == 1010.0
    assert str(caught.value) == "Timed out after 10 seconds waiting for the app (3 polls)"


def test_on_timeout_builds_the_error_or_the_value():
    clock = FakeClock()
    with pytest.raises(KeyError):
        wait_until(lambda: False, 1, interval=2, sleep=clock.sleep, clock=clock.clock, on_timeout=lambda polls, waited: KeyError(polls))
    assert wait_until(lambda: False, 0, sleep=clock.sleep, clock=clock.clock, on_timeout=lambda polls, waited: "gave up") == "gave up"


def test_interval_can_follow_a_schedule():
    clock = FakeClock()
    wait_until(answers(None, None, None, True), 100, interval=lambda poll: [1, 2, 4][poll - 1], sleep=clock.sleep, clock=clock.clock)
    assert clock.clock() == 1007.0


@pytest.mark.parametrize("status, code, forbidden, expected", [
    (404, "Request_ResourceNotFound", True, True), (409, "Conflict", True, True), (400, "UnknownError", True, True),
    (403, "Authorization_RequestDenied", True, True), (403, "Authorization_RequestDenied", False, False),
    (400, "BadRequest", True, False), (500, "InternalServerError", True, False),
])
def test_replication_answers(status, code, forbidden, expected):
    assert is_replication_error(GraphError("x", status=status, code=code), forbidden=forbidden) is expected


def test_a_timeout_that_saw_404_is_not_absent():
    assert is_not_found(GraphError("gone", status=404, code="Request_ResourceNotFound"))
    timeout = ConsistencyTimeout("the app", 10, last_error=GraphError("gone", status=404, code="Request_ResourceNotFound"))
    assert timeout.status == 404 and not is_not_found(timeout) and not is_replication_error(timeout)

# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback for scripts/bench.py: what a run really executed, per host and per task.

Enabled by the benchmark only (ANSIBLE_CALLBACK_PLUGINS=tests/bench/callback_plugins,
ANSIBLE_CALLBACKS_ENABLED=bench_task_counter). When the playbook ends it writes to the file named by the
environment variable BENCH_TASKS_FILE::

    {"hosts": {host: {action: count}},            # tasks that ran (ok, changed or failed; skipped ones are not counted)
     "tasks": [{"name", "action", "hosts", "wall_s"}]}   # every task in order, with the time from its start to the next

The benchmark sizes its Ansible floor from ``hosts`` and shows where the time goes from ``tasks``.
"""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_task_counter
type: aggregate
short_description: count executed tasks per host and time each task, for the benchmark
description: Writes the counts and timings to the file named by BENCH_TASKS_FILE at the end of the playbook.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_task_counter"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.counts = {}
        self.tasks = []
        self.started = None

    def _close_task(self):
        if self.tasks and self.started is not None:
            self.tasks[-1]["wall_s"] = round(time.monotonic() - self.started, 2)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close_task()
        self.started = time.monotonic()
        self.tasks.append({"name": task.get_name(), "action": task.action, "hosts": 0, "wall_s": None})

    def _count(self, result):
        host = self.counts.setdefault(result.host.get_name(), {})
        action = result.task.action
        host[action] = host.get(action, 0) + 1
        if self.tasks:
            self.tasks[-1]["hosts"] += 1

    def v2_runner_on_ok(self, result):
        self._count(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result)

    def v2_playbook_on_stats(self, stats):
        self._close_task()
        path = os.environ.get("BENCH_TASKS_FILE")
        if path:
            with open(path, "w") as handle:
                json.dump({"hosts": self.counts, "tasks": self.tasks}, handle, indent=1, sort_keys=True)

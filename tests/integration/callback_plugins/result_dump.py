# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: append every task result (as the controller received it) to $RESULT_DUMP_FILE as JSON lines.

The secret-leak guard (tests/integration/test_leak_guard.py) scans that file, so "every returned value" is checked,
not only what the default callback prints.
"""

from __future__ import absolute_import, division, print_function

import json
import os

from ansible.plugins.callback import CallbackBase

__metaclass__ = type

DOCUMENTATION = r"""
name: result_dump
type: aggregate
short_description: Write every task result to a JSON-lines file (tests only)
description:
  - Appends each task result to the file named by the environment variable E(RESULT_DUMP_FILE).
requirements:
  - enable in configuration
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "result_dump"
    CALLBACK_NEEDS_ENABLED = True

    def _dump(self, result, outcome):
        # pylint: disable=protected-access
        path = os.environ.get("RESULT_DUMP_FILE")
        if not path:
            return
        record = {"host": result._host.get_name(), "task": result._task.get_name(), "outcome": outcome,
                  "result": result._result}
        with open(path, "a") as handle:
            handle.write(json.dumps(record, default=str, sort_keys=True) + "\n")

    def v2_runner_on_ok(self, result):
        self._dump(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._dump(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._dump(result, "skipped")

    def v2_runner_item_on_ok(self, result):
        self._dump(result, "item_ok")

    def v2_runner_item_on_failed(self, result):
        self._dump(result, "item_failed")

    def v2_runner_retry(self, result):
        self._dump(result, "retry")

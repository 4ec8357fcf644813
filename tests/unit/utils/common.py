# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test constants, the registry of secret values, a fake clock and a child-process runner."""

from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

import json
import os
import subprocess
import sys

TENANT_ID = "contoso-tenant"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "Cl1ent~Secret.Value-For-Tests-0123456789abcdef"
MI_CLIENT_ID = "99999999-8888-7777-6666-555555555555"

# Every secret value a test used; checked against the captured output after each test.
SECRET_VALUES = set([CLIENT_SECRET])


def collections_root():
    """The directory that contains ``ansible_collections`` (for PYTHONPATH of child processes)."""
    path = os.path.dirname(os.path.abspath(__file__))
    while os.path.basename(path) != "ansible_collections":
        parent = os.path.dirname(path)
        if parent == path:
            raise RuntimeError("tests must run from a staged .../ansible_collections/entrascim/cloudflare tree")
        path = parent
    return os.path.dirname(path)


class FakeClock:
    """Injected ``sleep``/``clock``: sleeping advances the clock and is recorded, instantly.

    Pass ``clock=fake.clock`` or the clock itself (it is callable); ``now`` is the time, ``on_sleep`` (if set) runs after
    each sleep, as "meanwhile" in a test.
    """

    def __init__(self, start=1000.0):
        self.now = start
        self.sleeps = []
        self.on_sleep = None

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep()

    def clock(self):
        return self.now

    __call__ = clock

    def advance(self, seconds):
        self.now += seconds


def run_python(code, env=None, timeout=60):
    """Run ``code`` in a fresh Python process with the staged collection importable; return the last JSON line."""
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env["PYTHONPATH"] = collections_root()
    proc = subprocess.run([sys.executable, "-c", code], env=child_env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, "child failed (rc %s): %s" % (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert not any(secret and (secret in proc.stdout or secret in proc.stderr) for secret in list(SECRET_VALUES)), \
        "a secret value appeared in the child's output"
    return json.loads(lines[-1])

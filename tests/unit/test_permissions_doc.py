# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/permissions.md lists every step of _permissions.py with the same permissions (the doc cannot drift)."""

from __future__ import absolute_import, division, print_function

import os

from ansible_collections.entrascim.cloudflare.plugins.module_utils._permissions import permissions_table

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "permissions.md")


def test_every_step_is_documented_with_its_permissions():
    with open(DOC) as handle:
        rows = dict((line.split("|")[1].strip(), line) for line in handle if line.startswith("| ") and line.count("|") == 4)
    for step, permission in permissions_table():
        assert step in rows, "docs/permissions.md lacks the step %r" % step
        for name in permission.required:
            assert "`%s`" % name in rows[step], "docs/permissions.md: step %r does not name %s" % (step, name)


def test_every_module_has_a_row():
    with open(DOC) as handle:
        text = handle.read()
    modules = os.listdir(os.path.join(os.path.dirname(DOC), "..", "plugins", "modules"))
    for name in sorted(module[:-3] for module in modules if module.endswith(".py")):
        assert "| `%s` |" % name in text, "docs/permissions.md has no row for %s" % name

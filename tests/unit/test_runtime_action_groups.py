# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module named in an action group of meta/runtime.yml exists and documents that membership.

Nothing else checks this: ansible-test accepts a group naming a module that does not exist, and a module
that forgets its ``action_group`` attribute silently drops out of ``module_defaults`` documentation.
"""

from __future__ import absolute_import, division, print_function

import ast
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = os.path.join(ROOT, "plugins", "modules")


def _runtime():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as handle:
        return yaml.safe_load(handle)


def _documentation(module):
    with open(os.path.join(MODULES, module + ".py")) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "DOCUMENTATION" for target in node.targets):
            return yaml.safe_load(node.value.value)
    raise AssertionError("%s has no DOCUMENTATION" % module)


def test_requires_ansible_is_three_part():
    assert _runtime()["requires_ansible"] == ">=2.17.0"


def test_action_groups_are_the_documented_ones():
    assert sorted(_runtime()["action_groups"]) == ["cloudflare", "entra"]


def test_every_grouped_module_exists_and_documents_its_group():
    runtime = _runtime()
    for group, modules in runtime["action_groups"].items():
        for module in modules or []:
            assert os.path.isfile(os.path.join(MODULES, module + ".py")), "%s (group %s) does not exist" % (module, group)
            doc = _documentation(module)
            membership = doc.get("attributes", {}).get("action_group", {}).get("membership", [])
            assert "entrascim.cloudflare.%s" % group in membership, "%s does not document group %s" % (module, group)


def test_every_module_is_in_exactly_one_group():
    runtime = _runtime()
    grouped = [module for modules in runtime["action_groups"].values() for module in modules or []]
    present = sorted(name[:-3] for name in os.listdir(MODULES) if name.endswith(".py") and name != "__init__.py")
    assert sorted(grouped) == present

# -*- coding: utf-8 -*-
# Copyright: contributors to the entrascim.cloudflare collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module named in an action group of meta/runtime.yml exists and documents that membership.

Nothing else checks this: ansible-test accepts a group naming a module that does not exist, and a module
that forgets its ``action_group`` attribute silently drops out of ``module_defaults`` documentation.
"""

from __future__ import absolute_import, division, print_function

import ast
import functools
import json
import os
import subprocess

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = os.path.join(ROOT, "plugins", "modules")


def _runtime():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as handle:
        return yaml.safe_load(handle)


def _modules():
    return sorted(name[:-3] for name in os.listdir(MODULES) if name.endswith(".py") and name != "__init__.py")


@functools.lru_cache(maxsize=1)
def _documentations():
    """Every module's documentation as ansible-doc shows it (its DOCUMENTATION with the doc fragments merged in), from
    one ansible-doc run on the staged collection."""
    names = ["entrascim.cloudflare.%s" % module for module in _modules()]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.dirname(os.path.dirname(os.path.dirname(ROOT))))
    proc = subprocess.run(["ansible-doc", "--json", "-t", "module"] + names, capture_output=True, text=True, check=True, env=env)
    return dict((name.rsplit(".", 1)[1], value["doc"]) for name, value in json.loads(proc.stdout).items())


def _documentation(module):
    return _documentations()[module]


def _raw_documentation(module):
    """The module's own DOCUMENTATION (with its ``extends_documentation_fragment``, which ansible-doc drops)."""
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
    assert sorted(grouped) == _modules()


def test_the_entra_group_is_the_modules_that_take_the_entra_options():
    """module_defaults for group/entrascim.cloudflare.entra sets the Graph options: every module taking them (the ``entra``
    doc fragment) is in that group, and every module in it takes them."""
    extending = [module for module in _modules() if "entrascim.cloudflare.entra" in _raw_documentation(module).get("extends_documentation_fragment", [])]
    assert sorted(_runtime()["action_groups"]["entra"]) == extending


# (check mode support, diff mode support) of each module: what the modules implement, as their documentation says.
SUPPORT = {
    "cloudflare_scim_check": ("full", "none"), "entra_app": ("full", "full"), "entra_app_assignment": ("full", "full"),
    "entra_scim_preflight": ("full", "none"), "entra_sync_job": ("full", "full"), "entra_sync_job_info": ("full", "none"),
    "entra_sync_secrets": ("full", "full"),
}


def test_every_module_documents_its_check_and_diff_support():
    assert sorted(SUPPORT) == _modules()
    for module, (check, diff) in SUPPORT.items():
        attributes = _documentation(module)["attributes"]
        assert (attributes["check_mode"]["support"], attributes["diff_mode"]["support"]) == (check, diff), module
        assert attributes["check_mode"]["description"] and attributes["platform"]["platforms"] == "posix", module

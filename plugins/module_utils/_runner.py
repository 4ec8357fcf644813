# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place where a module's work becomes ``exit_json`` or ``fail_json``, for Entra and Cloudflare modules alike.

``ModuleRunner(module)`` cleans the secret options when it is made (``clean_secret_options``) and ``run(fn)`` is the
one ``try/except`` of a module (kubernetes.core's ``run_module`` pattern): ``fn()`` returns the result dict; a typed
error of module_utils (``GraphError``, ``AuthError``, ``CloudflareError``, ``ConsistencyTimeout``, ``AppError``...)
becomes "Failed to <step>: ..." through ``_errors.failure_message``; **any other exception** becomes a ``fail_json``
too, so a Python traceback (which would print a header value, a request body or a token in clear) never reaches
Ansible's output. Everything the runner hands to Ansible (message, result keys, warnings) is redacted of every secret
the module knows, in each form ``_errors.secret_forms`` lists (plain, JSON-escaped, ``repr``-escaped, URL-encoded):
the values of the ``no_log`` options and every access token obtained while running (``add_secret``). Ansible's own
``no_log`` masking only knows the plain value of the options.
"""

import sys
import traceback

from ._errors import CollectionError, clean_secret, failure_details, failure_message, redact, redact_value


def secret_option_names(argument_spec):
    """The names of the top-level string options marked ``no_log`` (client secret, tokens, passwords)."""
    return [name for name, spec in (argument_spec or {}).items()
            if spec.get("no_log") and spec.get("type", "str") in ("str", "raw")]


class ModuleRunner:
    """Result and error protocol of every module (see the module docstring)."""

    def __init__(self, module, argument_spec=None):
        self.module = module
        self._secrets = []
        self._warnings = []
        # Every fail_json of the module, wherever it is called, goes through the redaction below.
        self._fail_json = module.fail_json
        module.fail_json = self.fail_message
        self.clean_secret_options(argument_spec if argument_spec is not None else module.argument_spec)

    def clean_secret_options(self, argument_spec):
        """Strip the ``no_log`` options of surrounding whitespace; refuse one that still holds a control character (the
        message names the option, never the value). Every value (as given and stripped) is a secret to redact."""
        params = self.module.params
        for name in secret_option_names(argument_spec):
            value = params.get(name)
            if value is None:
                continue
            self.add_secret(value)
            try:
                params[name] = clean_secret(name, value)
            except ValueError as exc:
                self.fail_message("Invalid option %s" % exc)
            self.add_secret(params[name])

    def add_secret(self, value):
        """Remember ``value`` (a token obtained at run time, a secret option) so that no output carries it."""
        if value and isinstance(value, str) and value not in self._secrets:
            self._secrets.append(value)
            no_log_values = getattr(self.module, "no_log_values", None)
            if isinstance(no_log_values, set):
                no_log_values.add(value)

    @property
    def secrets(self):
        return list(self._secrets)

    def warn(self, text):
        """A warning, redacted, once."""
        text = redact(text, self._secrets)
        if text not in self._warnings:
            self._warnings.append(text)
            self.module.warn(text)

    def fail_message(self, msg, **extra):
        """``fail_json`` with a redacted message and redacted extra keys. Ansible adds the traceback of the exception
        being handled (its text can hold a header value or a request body): it gets the redacted traceback instead."""
        extra.pop("exception", None)
        if sys.exc_info()[1] is not None:
            extra["exception"] = redact(traceback.format_exc(), self._secrets)
        self._fail_json(**redact_value(dict(extra, msg=msg), self._secrets))

    def fail_error(self, err, step=None, **extra):
        """``fail_json`` for an error: "Failed to <step>: <code>: <message> (request-id ...)" plus status/error_code/
        request_id (``_errors.failure_details``) and the error's own ``details`` keys."""
        result = failure_details(err)
        result.update(getattr(err, "extra", None) or {})
        result.update(extra)
        self.fail_message(failure_message(getattr(err, "step", None) or step, err), **result)

    def exit(self, result):
        result = dict(result or {})
        result.setdefault("changed", False)
        for warning in result.pop("warnings", None) or []:
            self.warn(warning)
        self.module.exit_json(**redact_value(result, self._secrets))

    def run(self, fn, step=None, before_exit=None, diff_mode=True, progress=None):
        """Call ``fn()`` and exit with its result; any exception becomes ``fail_json`` (see the module docstring).

        ``before_exit`` (optional) is called before exiting either way (to emit the auth warnings, collect tokens).
        The result's ``warnings`` become Ansible warnings; its ``diff`` is kept only in ``diff_mode``; a non-empty
        ``progress`` list (the module's wait steps) is returned as ``progress``, also when the module fails.
        """
        failure = None
        result = None
        try:
            result = fn()
        except Exception as err:  # pylint: disable=broad-exception-caught  # the one last line of defence of a module
            failure = err
        if before_exit is not None:
            before_exit()
        shown = {"progress": list(progress)} if progress else {}
        if failure is not None:
            if not isinstance(failure, CollectionError):
                failure = UnexpectedError(failure)
            self.fail_error(failure, step=step, **shown)
        result = dict(result or {})
        if not diff_mode:
            result.pop("diff", None)
        result.update(shown)
        self.exit(result)


class UnexpectedError(CollectionError):
    """An exception that module_utils did not expect (a bug or a hostile answer), reported without its traceback."""

    def __init__(self, cause):
        text = " ".join(str(cause).split())[:500] or "no message"
        super(UnexpectedError, self).__init__("unexpected error %s: %s" % (type(cause).__name__, text))
        self.message = str(self)
        self.status = None
        self.code = type(cause).__name__
        self.request_id = None
        self.step = getattr(cause, "step", None)

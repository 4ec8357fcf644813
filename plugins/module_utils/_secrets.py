# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Synchronization secrets: the Tenant URL (``BaseAddress``) and ``SecretToken`` tested and saved, ``SyncAll``, the
failure notification e-mail, and the token fingerprint that tells whether the saved token changed.

Graph behaviour relied upon (microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/api/
synchronization-serviceprincipal-put-synchronization.md, synchronization-synchronizationjob-validatecredentials.md):
a ``PUT .../synchronization/secrets`` replaces the keys it names and sensitive values read back as ``"*"``;
``validateCredentials`` with ``useSavedCredentials: false`` tests the given credentials without saving them.

The SCIM token can never be read back, so ``entra_sync_secrets`` keeps a fingerprint of it in the service
principal's ``notes``: one line ``entrascim.cloudflare:scim-token-sha256:<64 hex>`` where the hex is the SHA-256 of
``<service principal id>:<token>`` (UTF-8). Any other text in ``notes`` is kept as it is.
"""

import hashlib
import json
import re

from urllib.parse import urlparse

from ._consistency import ConsistencyTimeout
from ._errors import GraphError, InputError
from ._sync import DEFAULT_TEMPLATE_ID, SyncError

UPDATE_TOKEN_MODES = ("when_changed", "always", "on_create")
NOTES_MAX_LENGTH = 1024  # servicePrincipal.notes: "Maximum allowed size is 1024 characters" (serviceprincipal resource page)
MASKED = "*"
FINGERPRINT_PREFIX = "entrascim.cloudflare:scim-token-sha256:"
_FINGERPRINT_LINE = re.compile(r"^[ \t]*entrascim\.cloudflare:scim-token-sha256:([0-9a-fA-F]*)[ \t]*$", re.MULTILINE)


# ---------------------------------------------------------------------------------------------- secrets decisions
def token_fingerprint(sp_id, token):
    """Salted SHA-256 (salt = service principal id) of the SCIM token, as 64 hex digits. Never reversible to the token."""
    return hashlib.sha256(("%s:%s" % (sp_id, token)).encode("utf-8")).hexdigest()


def read_fingerprint(notes):
    """The fingerprint stored in ``notes`` (lowercase hex), or None."""
    match = _FINGERPRINT_LINE.search(notes or "")
    if not match or len(match.group(1)) != 64:
        return None
    return match.group(1).lower()


def write_fingerprint(notes, fingerprint):
    """``notes`` with the fingerprint line replaced (or appended on its own line); other text is kept as it is."""
    line = FINGERPRINT_PREFIX + fingerprint
    notes = notes or ""
    if _FINGERPRINT_LINE.search(notes):
        return _FINGERPRINT_LINE.sub(lambda match: line, notes, count=1)
    if not notes:
        return line
    return notes + ("" if notes.endswith("\n") else "\n") + line


def check_base_address(base_address):
    """Raise InputError (a ValueError) unless ``base_address`` is an https URL with a host."""
    parsed = urlparse(base_address or "")
    if parsed.scheme.lower() != "https" or not parsed.hostname:
        raise InputError("base_address must be an https URL such as https://api.cloudflare.com/client/v4/accounts/<account id>/scim/v2, "
                         "got %r" % base_address)


def _parse_settings(text):
    if not text or text == MASKED:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _recipients(text):
    return sorted(part.strip().lower() for part in re.split(r"[;,]", text or "") if part.strip())


def desired_notification(current_text, email):
    """The SyncNotificationSettings dict for ``email`` ("" = notifications off), keeping the other settings."""
    desired = dict(_parse_settings(current_text) or {})
    if email:
        desired["Enabled"] = True
        desired["Recipients"] = email
    else:
        desired["Enabled"] = False
    desired.setdefault("DeleteThresholdEnabled", False)
    return desired


def notification_matches(current_text, email):
    current = _parse_settings(current_text)
    if current is None:
        return False
    if not email:
        return current.get("Enabled") is False
    return current.get("Enabled") is True and _recipients(current.get("Recipients")) == _recipients(email)


def secrets_view(values, fingerprint, token_saved):
    """The non-secret picture of the saved secrets, for diffs and the ``settings`` return value."""
    settings = _parse_settings(values.get("SyncNotificationSettings"))
    sync_all = values.get("SyncAll")
    return {
        "base_address": values.get("BaseAddress"),
        "sync_all": None if sync_all in (None, "", MASKED) else str(sync_all).lower() == "true",
        "notification_email": (settings or {}).get("Recipients") or None,
        "notifications_enabled": None if settings is None else bool(settings.get("Enabled")),
        "secret_token_saved": token_saved,
        "secret_token_fingerprint": fingerprint,
    }


def plan_secrets(sp_id, current, notes, base_address, secret_token, sync_all=None, notification_email=None,
                 update_secret_token="when_changed"):
    """Decide what to write. Returns a dict with ``values`` (the PUT, all keys at once, empty when nothing changes),
    ``changed_keys`` (names), ``notes`` (new notes, or None when unchanged) and the diff ``before``/``after``."""
    if update_secret_token not in UPDATE_TOKEN_MODES:
        raise ValueError("update_secret_token must be one of %s" % ", ".join(UPDATE_TOKEN_MODES))
    fingerprint = token_fingerprint(sp_id, secret_token)
    saved_fingerprint = read_fingerprint(notes)
    token_saved = bool(current.get("SecretToken"))
    if update_secret_token == "always":
        write_token = True
    elif update_secret_token == "on_create":
        write_token = not token_saved
    else:
        write_token = not token_saved or saved_fingerprint != fingerprint
    changed = []
    if current.get("BaseAddress") != base_address:
        changed.append("BaseAddress")
    if write_token:
        changed.append("SecretToken")
    sync_all_value = None if sync_all is None else ("true" if sync_all else "false")
    if sync_all_value is not None and str(current.get("SyncAll") or "").lower() != sync_all_value:
        changed.append("SyncAll")
    notification_value = None
    if notification_email is not None:
        notification_value = json.dumps(desired_notification(current.get("SyncNotificationSettings"), notification_email),
                                        separators=(",", ":"), sort_keys=True)
        if not notification_matches(current.get("SyncNotificationSettings"), notification_email):
            changed.append("SyncNotificationSettings")
    values = {}
    if changed:
        # One PUT with every key we manage, so the saved set is always consistent (nothing half-written). The token
        # is left out only when update_secret_token=on_create keeps an existing one.
        values["BaseAddress"] = base_address
        if write_token or update_secret_token != "on_create":
            values["SecretToken"] = secret_token
        if sync_all_value is not None:
            values["SyncAll"] = sync_all_value
        if notification_value is not None:
            values["SyncNotificationSettings"] = notification_value
    new_notes = None
    if "SecretToken" in values and saved_fingerprint != fingerprint:
        new_notes = write_fingerprint(notes, fingerprint)
        if len(new_notes) > NOTES_MAX_LENGTH:
            raise SyncError("store the token fingerprint", "NotesTooLong",
                            "the service principal's notes would exceed %d characters with the token fingerprint line (%d "
                            "characters); shorten the notes of service principal %s" % (NOTES_MAX_LENGTH, len(new_notes), sp_id))
    after_values = dict(current)
    after_values.update((key, value) for key, value in values.items() if key != "SecretToken")
    token_fp_after = fingerprint if "SecretToken" in values else saved_fingerprint
    return {
        "values": values,
        "changed_keys": changed,
        "notes": new_notes,
        "before": secrets_view(current, saved_fingerprint, token_saved),
        "after": secrets_view(after_values, token_fp_after, token_saved or "SecretToken" in values),
    }


def connection_test_failure(err, base_address, token_saved):
    """The error for a Test Connection (validateCredentials) that the SCIM endpoint failed: Graph's reason, what was kept, what to check."""
    failure = SyncError(
        "validate credentials with the SCIM endpoint", err.code or "CredentialValidationUnavailable",
        "Entra's Test Connection with %s and the given token failed: %s Nothing was saved%s. Check that the token is valid (not "
        "revoked or expired) and is a Cloudflare API token of this account with the SCIM Provisioning permission (Account > "
        "SCIM Provisioning > Edit), and that the URL is the account's SCIM endpoint."
        % (base_address, (err.message or "").rstrip(), ": the token saved before is still in place" if token_saved else ""))
    failure.status = err.status
    failure.request_id = err.request_id
    failure.date = err.date
    return failure


def ensure_secrets(service, base_address, secret_token, sync_all=None, notification_email=None, validate=True,
                   update_secret_token="when_changed", job_id=None, template_id=DEFAULT_TEMPLATE_ID, check_mode=False):
    """Validate (when something is to be written) and save the secrets in one PUT, then store the token fingerprint.

    Returns the module result: changed, validated, changed_keys, job_id, settings, diff, warnings.
    """
    check_base_address(base_address)
    if not secret_token:
        raise InputError("secret_token must not be empty")
    notes, current = service.read_notes_and_secrets()
    plan = plan_secrets(service.sp_id, current, notes, base_address, secret_token, sync_all=sync_all,
                        notification_email=notification_email, update_secret_token=update_secret_token)
    warnings = []
    if current.get("BaseAddress") == MASKED:
        warnings.append("Graph returned BaseAddress masked; it cannot be compared and is written again.")
    validated = False
    if plan["values"] and validate:
        if not job_id:
            job = service.find_job(template_id)
            job_id = job["id"] if job else None
        if job_id:
            # Test the NEW credentials before anything is written: a token Cloudflare rejects never replaces a saved one.
            try:
                service.validate_credentials(job_id, base_address, secret_token)
            except GraphError as err:
                if isinstance(err, ConsistencyTimeout) or err.status != 400:
                    raise
                raise connection_test_failure(err, base_address, bool(current.get("SecretToken")))
            validated = True
        elif check_mode:
            warnings.append("No synchronization job exists yet, so the credentials could not be tested in check mode.")
        else:
            raise SyncError("validate credentials with the SCIM endpoint", "NoSynchronizationJob",
                            "the service principal %s has no synchronization job from template %s to test the credentials with; "
                            "create it first (entrascim.cloudflare.entra_sync_job) or set validate=false" % (service.sp_id, template_id))
    if plan["values"] and not check_mode:
        service.save_secrets(plan["values"])
        if plan["notes"] is not None:
            service.save_notes(plan["notes"])
    return {
        "changed": bool(plan["values"]),
        "validated": validated,
        "changed_keys": plan["changed_keys"],
        "job_id": job_id,
        "settings": dict((key, value) for key, value in plan["after"].items() if key != "secret_token_fingerprint"),
        "warnings": warnings,
        "diff": {"before": plan["before"], "after": plan["after"]},
    }

# -*- coding: utf-8 -*-
# Copyright (c) entrascim.cloudflare contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The on-disk token cache: one credential's msal token cache in a 0600 JSON file in a 0700 directory (see
``TokenCacheFile``). A valid token is read from it with ``json`` alone, so a cached run imports no msal."""

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
import time

try:
    import fcntl
except ImportError:  # not a POSIX system: the cache still works, writes are atomic but not serialised
    fcntl = None

CACHE_DIR_NAME = "entrascim-cloudflare"
MIN_VALIDITY = 300  # seconds a cached token must still be valid for (msal uses the same 5 minutes)


def default_cache_dir(environ=None):
    """``$XDG_CACHE_HOME/entrascim-cloudflare``, else ``~/.cache/entrascim-cloudflare``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, CACHE_DIR_NAME)


def well_formed_cache(document):
    """True when ``document`` has the shape of msal's serialized cache: a dict whose sections (``AccessToken``,
    ``RefreshToken``, ``Account``...) are dicts of dicts."""
    if not isinstance(document, dict):
        return False
    return all(isinstance(section, dict) and all(isinstance(entry, dict) for entry in section.values())
               for section in document.values())


class TokenCacheFile:
    """One credential's msal token cache on disk: a 0600 JSON file in a 0700 directory.

    Why not msal-extensions' ``PersistedTokenCache``? Three reasons, all about many forks running
    modules at once: (1) its lock without the optional ``portalocker`` package is an
    ``open(..., "x")`` lock file that a killed process leaves behind, after which every writer
    fails with LockError; (2) it saves by truncating and rewriting the file in place, so a
    concurrent reader can see half a document; (3) it only locks the write, so N forks starting
    together all ask the token endpoint. Here the whole "look in the cache, else fetch and save"
    sequence holds an ``fcntl.flock`` (released by the kernel if the process dies), the file is
    replaced atomically (``mkstemp`` 0600 + ``os.replace``), and readers never lock. The file holds
    msal's serialized cache (access tokens, never the client secret or the certificate key).
    One file per key = sha256(authority host, tenant, client id, resource[, credential fingerprint]).
    """

    def __init__(self, directory, key_parts, lock_timeout=120.0):
        self.directory = os.path.abspath(os.path.expanduser(directory))
        self.key = hashlib.sha256("\n".join(str(p or "") for p in key_parts).encode("utf-8")).hexdigest()
        self.path = os.path.join(self.directory, self.key + ".json")
        self.lock_path = os.path.join(self.directory, self.key + ".lock")
        self.lock_timeout = lock_timeout
        self.warnings = []
        self._prepared = None

    def _warn(self, text):
        if text not in self.warnings:
            self.warnings.append(text)

    def _secure_dir(self):
        try:
            info = os.lstat(self.directory)
        except OSError:
            return False
        if not stat.S_ISDIR(info.st_mode):
            self._warn("Token cache disabled: %s is not a directory." % self.directory)
            return False
        if info.st_uid != os.getuid():
            self._warn("Token cache disabled: %s is owned by another user." % self.directory)
            return False
        if info.st_mode & 0o077:
            self._warn("Token cache disabled: %s is accessible by other users (mode %s); run 'chmod 700 %s'."
                       % (self.directory, oct(info.st_mode & 0o777), self.directory))
            return False
        return True

    def prepare(self):
        """Create the directory (0700) if needed and check it is private; False (with a warning) if unusable."""
        if self._prepared is not None:
            return self._prepared
        if not os.path.lexists(self.directory):
            try:
                os.makedirs(self.directory, mode=0o700)
                os.chmod(self.directory, 0o700)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    self._warn("Token cache disabled: cannot create %s: %s." % (self.directory, exc.strerror))
                    self._prepared = False
                    return False
        self._prepared = self._secure_dir()
        return self._prepared

    def read(self):
        """The cache document (text) if the file exists, is ours and private; else None. Never raises."""
        if not self._secure_dir():
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
                return None
            with os.fdopen(fd, "r", encoding="utf-8") as handle:
                fd = None
                return handle.read()
        except (OSError, ValueError):
            return None
        finally:
            if fd is not None:
                os.close(fd)

    def state(self):
        """The parsed cache document (dict) or None: a file that is not JSON, or not msal's shape (each section a dict
        of dicts), counts as no cache (it is replaced at the next token request) rather than crashing every run."""
        text = self.read()
        if not text:
            return None
        try:
            document = json.loads(text)
        except ValueError:
            return None
        return document if well_formed_cache(document) else None

    def text(self):
        """The cache text for msal, or None when it is missing or not well formed (see ``state``)."""
        return self.read() if self.state() is not None else None

    def write(self, text):
        """Replace the cache file atomically with ``text`` (a 0600 file). Returns True on success."""
        if not self.prepare():
            return False
        tmp_path = None
        try:
            fd, tmp_path = tempfile.mkstemp(prefix=".%s." % self.key[:16], suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_path, self.path)
            tmp_path = None
            return True
        except OSError as exc:
            self._warn("Could not write the token cache %s: %s." % (self.path, exc.strerror or exc))
            return False
        finally:
            if tmp_path:
                try:
                    os.unlink(tmp_path)
                except OSError:
                    pass

    @contextlib.contextmanager
    def lock(self):
        """Hold an exclusive lock on this key's lock file (bounded wait; continues unlocked after it)."""
        handle = None
        if fcntl is not None and self.prepare():
            try:
                handle = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            except OSError as exc:
                self._warn("Could not open the token cache lock %s: %s." % (self.lock_path, exc.strerror))
        if handle is not None:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK) or time.monotonic() > deadline:
                        os.close(handle)
                        handle = None
                        break
                    time.sleep(0.05)
        try:
            yield
        finally:
            if handle is not None:
                os.close(handle)  # closing the descriptor releases the flock

    def find_token(self, client_id, targets, now=None, min_validity=MIN_VALIDITY):
        """Return ``(token, expires_on)`` of a cached access token still valid for ``min_validity`` s, else None.

        Reads msal's cache format: ``{"AccessToken": {key: {"credential_type": "AccessToken", "secret":
        <token>, "client_id", "target": "<space separated scopes>", "expires_on": "<epoch>",
        "refresh_on"?: "<epoch>", "token_type"?}}}``. A token past its ``refresh_on`` is left to msal.
        """
        document = self.state()
        if not document:
            return None
        now = time.time() if now is None else now
        wanted = set(t.lower() for t in targets)
        best = None
        for entry in (document.get("AccessToken") or {}).values():
            try:
                if not isinstance(entry, dict) or entry.get("credential_type") != "AccessToken":
                    continue
                if client_id and entry.get("client_id") != client_id:
                    continue
                if (entry.get("token_type") or "Bearer").lower() != "bearer":
                    continue
                if not wanted & set(str(entry.get("target") or "").lower().split()):
                    continue
                expires_on = int(entry["expires_on"])
                if expires_on - now < min_validity:
                    continue
                if entry.get("refresh_on") and int(entry["refresh_on"]) < now:
                    continue
                if entry.get("secret") and (best is None or expires_on > best[1]):
                    best = (entry["secret"], expires_on)
            except (KeyError, TypeError, ValueError):
                continue
        return best

    def remove_token(self, token):
        """Drop every cached access token equal to ``token`` (after Graph rejected it)."""
        with self.lock():
            document = self.state()
            if not document:
                return
            tokens = document.get("AccessToken") or {}
            kept = dict((k, v) for k, v in tokens.items() if not (isinstance(v, dict) and v.get("secret") == token))
            if len(kept) != len(tokens):
                document["AccessToken"] = kept
                self.write(json.dumps(document))

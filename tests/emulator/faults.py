"""Fault injection: latency, throttling, outages, replication lag and the lying ``instantiate``.

Every random decision comes from one seeded ``random.Random`` so a run with the same config and the same
request sequence injects the same faults. Sources of the behaviours:

* 429 with ``Retry-After`` and the throttling body: microsoftgraph/microsoft-graph-docs-contrib concepts/throttling.md
  ("Sample response") and concepts/throttling-limits.md.
* 503 (may carry ``Retry-After``): concepts/errors.md (HTTP status codes) and concepts/throttling.md.
* replication lag (new app/SP/job answers 404; sync calls on a new SP answer 403/409/400 ``UnknownError``): the
  Microsoft Identity blog post "Designing for Eventual Consistency for Microsoft Entra" (devblogs.microsoft.com/identity),
  the readiness note of concepts/application-saml-sso-configure-api.md (poll every 5-10 seconds), and the 403/409 retries of
  hashicorp/terraform-provider-azuread internal/services/synchronization/synchronization.go (the 400 is observed).
* ``instantiate`` answering 404 although it created the objects: hashicorp/terraform-provider-azuread PR #1406
  ("work around very buggy API when instantiating from template") and manicminer/hamilton PR #283.
* ``instantiate`` answering 503 although it created the objects (``instantiate_503_after_create``): a 503 says the
  service is "temporarily unavailable [...] You may repeat the request after a delay" and a 504 from a proxy that got
  no timely answer from upstream "May occur together with 503" (microsoft-graph-docs-contrib concepts/errors.md, HTTP
  status codes table); concepts/best-practices-concept.md ("Handling expected errors") only says a 503 "is likely
  because the services is busy". Neither page promises that the request was *not* processed: the answer can come from
  the gateway in front of a backend that did create the app (or went on creating it after the gateway gave up). And
  clients retry a POST answered 503 (our transport; the Graph SDKs' retry handler, microsoftgraph/msgraph-sdk-design
  middleware/RetryHandler.md), so a retried ``instantiate`` can create a second app. A count, not a rate, so that a
  test knows which call acts and then fails: a rate of 1 would make every retry act and fail too, and any other rate
  would depend on the seeded sequence of all the other rolls.
"""

import copy
import json
import random
import threading

PROFILES = {
    # No faults and no lag: deterministic tests of the happy path.
    "none": {
        "latency_ms": {"default": 0},
        "rate_429": 0.0,
        "retry_after": 1,
        "rate_503": 0.0,
        "replication_lag_s": 0.0,
        "instantiate_404_rate": 0.0,
        "instantiate_503_after_create": 0,
        "instantiate_503_retry_after": None,
        "time_scale": 1.0,
    },
    # What a real tenant feels like, compressed so a test still finishes in seconds.
    "realistic": {
        "latency_ms": {"default": 15, "instantiate": 200, "token": 30, "sync.jobs.validateCredentials": 100},
        "rate_429": 0.03,
        "retry_after": 1,
        "rate_503": 0.015,
        "replication_lag_s": 2.0,
        "instantiate_404_rate": 0.2,
        "instantiate_503_after_create": 0,
        "instantiate_503_retry_after": None,
        "time_scale": 1.0,
    },
    # More of everything, still bounded so suites stay fast.
    "harsh": {
        "latency_ms": {"default": 40, "instantiate": 400, "token": 60, "sync.jobs.validateCredentials": 200},
        "rate_429": 0.12,
        "retry_after": 1,
        "rate_503": 0.06,
        "replication_lag_s": 4.0,
        "instantiate_404_rate": 0.5,
        "instantiate_503_after_create": 0,
        "instantiate_503_retry_after": None,
        "time_scale": 1.0,
    },
}

# Keys a fault config may carry (anything else is refused so typos do not silently disable a fault).
KNOWN_KEYS = frozenset(PROFILES["none"]) | {"profile", "seed", "reports_throttle"}
# Reports (/auditLogs/*) = 5 requests / 10 s per app per tenant: concepts/throttling-limits.md, "Identity and access reports".
DEFAULT_REPORTS_THROTTLE = {"limit": 5, "window_s": 10}
DEFAULT_SEED = 20240601


class FaultConfigError(ValueError):
    pass


def _check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise FaultConfigError("%s must be a number between 0 and 1" % name)


def _check_per_operation(name, value, check):
    if isinstance(value, dict):
        for key, item in value.items():
            check("%s.%s" % (name, key), item)
    else:
        check(name, value)


def _check_non_negative(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FaultConfigError("%s must be a non-negative number" % name)


def resolve(spec):
    """Turn a profile name, a JSON file path or a dict into a complete, validated fault config dict."""
    if spec is None:
        spec = "none"
    if isinstance(spec, str):
        if spec in PROFILES:
            spec = {"profile": spec}
        else:
            try:
                with open(spec, "r", encoding="utf-8") as handle:
                    spec = json.load(handle)
            except OSError as exc:
                raise FaultConfigError("unknown fault profile or unreadable file %r (%s); profiles: %s"
                                       % (spec, exc.strerror, ", ".join(sorted(PROFILES)))) from None
            except ValueError as exc:
                raise FaultConfigError("fault file %r is not JSON: %s" % (spec, exc)) from None
    if not isinstance(spec, dict):
        raise FaultConfigError("a fault config is a profile name or a JSON object")
    unknown = sorted(set(spec) - KNOWN_KEYS)
    if unknown:
        raise FaultConfigError("unknown fault config keys: %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(KNOWN_KEYS))))
    profile = spec.get("profile", "none")
    if profile not in PROFILES:
        raise FaultConfigError("unknown fault profile %r; profiles: %s" % (profile, ", ".join(sorted(PROFILES))))
    config = copy.deepcopy(PROFILES[profile])
    config["profile"] = profile
    config["seed"] = DEFAULT_SEED
    config["reports_throttle"] = dict(DEFAULT_REPORTS_THROTTLE)
    for key, value in spec.items():
        if key == "latency_ms" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = {"default": value}
        if key == "latency_ms":
            if not isinstance(value, dict):
                raise FaultConfigError("latency_ms is a number or an object {operation: milliseconds}")
            _check_per_operation(key, value, _check_non_negative)
            merged = dict(config["latency_ms"])
            merged.update(value)
            value = merged
        elif key in ("rate_429", "rate_503"):
            _check_per_operation(key, value, _check_rate)
        elif key == "instantiate_404_rate":
            _check_rate(key, value)
        elif key == "instantiate_503_after_create":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FaultConfigError("instantiate_503_after_create must be a non-negative integer (how many of the next "
                                       "instantiate calls create the objects and answer 503)")
        elif key == "instantiate_503_retry_after":
            if value is not None:
                _check_non_negative(key, value)
                value = int(round(value))
        elif key in ("retry_after", "replication_lag_s", "time_scale"):
            _check_non_negative(key, value)
        elif key == "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                raise FaultConfigError("seed must be an integer")
        elif key == "reports_throttle":
            if not isinstance(value, dict) or set(value) - {"limit", "window_s"}:
                raise FaultConfigError("reports_throttle is an object {limit, window_s}")
            for sub in value.values():
                _check_non_negative("reports_throttle", sub)
            merged = dict(config["reports_throttle"])
            merged.update(value)
            value = merged
        config[key] = value
    if isinstance(config["retry_after"], float):
        config["retry_after"] = int(round(config["retry_after"]))
    return config


def _per_operation(value, operation):
    """A per-operation setting: a number applies to all, a dict picks ``operation`` then its prefix then ``default``."""
    if not isinstance(value, dict):
        return value
    if operation in value:
        return value[operation]
    parts = operation.split(".")
    while len(parts) > 1:
        parts.pop()
        prefix = ".".join(parts)
        if prefix in value:
            return value[prefix]
    return value.get("default", 0)


class Faults:
    """Thread-safe holder of the active fault config and its seeded RNG."""

    def __init__(self, spec="none"):
        self._lock = threading.Lock()
        self.config = resolve(spec)
        self._rng = random.Random(self.config["seed"])

    def set(self, spec):
        config = resolve(spec)
        with self._lock:
            self.config = config
            self._rng = random.Random(config["seed"])
        return config

    def snapshot(self):
        with self._lock:
            return copy.deepcopy(self.config)

    def _roll(self, rate):
        if not rate:
            return False
        with self._lock:
            return self._rng.random() < rate

    def choice(self, options):
        with self._lock:
            return self._rng.choice(options)

    def latency_seconds(self, operation):
        config = self.config
        return float(_per_operation(config["latency_ms"], operation)) / 1000.0 * float(config["time_scale"])

    def replication_lag_seconds(self):
        config = self.config
        return float(config["replication_lag_s"]) * float(config["time_scale"])

    def throttle_or_outage(self, operation):
        """Return ``(status, retry_after or None)`` for an injected 429/503, or ``None``. Graph operations only."""
        config = self.config
        if self._roll(float(_per_operation(config["rate_429"], operation))):
            return 429, int(config["retry_after"])
        if self._roll(float(_per_operation(config["rate_503"], operation))):
            return 503, int(config["retry_after"]) if self._roll(0.5) else None
        return None

    def instantiate_lies(self):
        return self._roll(float(self.config["instantiate_404_rate"]))

    def instantiate_503_after_create(self):
        """Use up one of the next ``instantiate_503_after_create`` instantiate calls: ``(503, retry_after or None)`` when
        this call, which has created its objects, must answer 503; ``None`` otherwise. The count left shows in
        ``snapshot()`` (``GET /_admin/faults``); setting a fault config again starts it over."""
        with self._lock:
            left = self.config["instantiate_503_after_create"]
            if not left:
                return None
            self.config["instantiate_503_after_create"] = left - 1
            retry_after = self.config["instantiate_503_retry_after"]
            return 503, None if retry_after is None else int(retry_after)

    def reports_throttle(self):
        config = self.config["reports_throttle"]
        return int(config["limit"]), float(config["window_s"])

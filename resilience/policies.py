"""Policy validation, versioning, diffs, export and import, and live push.

Every write goes through this module, so each one runs in one database
transaction, gets a new version with its diff and an audit entry, and is
announced to the worker processes once it commits.
"""

import ipaddress
import json
import logging
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from resilience import core, services
from resilience.models import AuditEntry, Policy, PolicyVersion, Target

logger = logging.getLogger(__name__)

SECTIONS = ("circuit_breaker", "bulkhead", "rate_limiter", "retry", "timeout")

# Target names that would collide with the list routes of /api/policies/.
RESERVED_TARGET_NAMES = frozenset({"export", "import"})


# --- policy validation -------------------------------------------------------

# The core's ValueError messages read "<section>.<field> <rule>, got <value>"
# (or "<field> <rule>, got <value>" at the top level).
_CORE_ERROR = re.compile(
    r"^(?P<path>[a-z_]+(?:\.[a-z_]+)?) (?P<rule>.+?)(?:, got (?P<value>.*))?$",
    re.DOTALL,
)
_RULE_CODES = (
    ("must be status codes from", "out_of_range"),
    ("entries must be", "invalid"),
    ("must have at most", "max_length"),
    ("at most", "max_value"),
    ("must not", "invalid"),
    ("percentage", "out_of_range"),
    ("greater than 0", "not_positive"),
    ("or greater", "min_value"),
    ("at least", "min_value"),
    ("must be a", "invalid_type"),
    ("must be an", "invalid_type"),
    ("true or false", "invalid_type"),
    ("not a known field", "unknown_field"),
    ("must be one of", "invalid_choice"),
    (" or ", "invalid_choice"),
)


@dataclass(frozen=True)
class FieldError:
    """One broken rule: dotted field path, stable code and a sentence."""

    path: str
    code: str
    message: str


def core_error(exc: ValueError, default_path: str = "") -> FieldError:
    """Translate a ValueError of ``PolicyConfig.from_dict`` into a field error."""
    text = str(exc)
    match = _CORE_ERROR.match(text)
    if match is None:
        return FieldError(default_path, "invalid", text)
    rule = match.group("rule")
    code = next((code for key, code in _RULE_CODES if key in rule), "invalid")
    message = rule[0].upper() + rule[1:]
    if match.group("value") is not None:
        message += f", got {match.group('value')}"
    return FieldError(match.group("path"), code, message + ".")


def check_config(config: dict[str, Any]) -> list[FieldError]:
    """Run the core's checks on each section and return every broken rule.

    The core stops at the first error of a policy, so each section is
    checked on its own to report one error per section.
    """
    errors = []
    for name in SECTIONS:
        value = config.get(name)
        if value is None:
            continue
        try:
            core.PolicyConfig.from_dict({name: value})
        except ValueError as exc:
            errors.append(core_error(exc, name))
    try:
        core.PolicyConfig.from_dict(
            {"on_state_store_error": config.get("on_state_store_error", "allow")}
        )
    except ValueError as exc:
        errors.append(core_error(exc, "on_state_store_error"))
    return errors


def normalize(config: dict[str, Any]) -> dict[str, Any]:
    """Return the policy with every default filled in, as it is stored.

    Raises ValueError from the core when the policy is invalid. Sections
    that are off are None, except ``timeout``, which always applies.
    """
    document = core.PolicyConfig.from_dict(config).to_dict()
    document.pop("version", None)
    return document


def effective(config: dict[str, Any]) -> dict[str, Any]:
    """Return a stored policy with defaults filled in, or as stored if invalid.

    Rows written before a rule was added may no longer validate; they are
    shown and compared as stored rather than hidden.
    """
    try:
        return normalize(config)
    except ValueError:
        return dict(config)


def diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """List the differences of two JSON documents as ``{path, old, new}``.

    Objects are compared key by key; anything else, lists included, is
    compared as a whole value.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in sorted(set(old) | set(new)):
            child = f"{path}.{key}" if path else str(key)
            changes.extend(diff(old.get(key), new.get(key), child))
        return changes
    if old == new:
        return []
    return [{"path": path, "old": old, "new": new}]


# --- target URL checks ---------------------------------------------------------

# Cloud metadata services, rejected by name and by address.
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata"})
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
# Seconds to wait for a target's host name to resolve.
RESOLVE_TIMEOUT_SECONDS = 2.0

_resolver_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")


class UnsafeTarget(ValueError):
    """A base URL that protected calls must not reach."""


def resolve_host(host: str) -> list[str]:
    """Return the addresses of a host name; raises OSError if it has none."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def check_base_url(url: str) -> None:
    """Raise UnsafeTarget unless protected calls may be sent to the URL.

    1. The scheme must be http or https, with a host, a port from 1 to
       65535 if one is given, and no query or fragment.
    2. Every address of the host, resolved with a timeout, must be allowed.
       Loopback always is. Link-local, cloud metadata, private, unique
       local, multicast, reserved and unspecified addresses are allowed
       only when RESILIENCE_ALLOW_PRIVATE_TARGETS is true.

    NOTE: the check runs when a target is saved. A name whose DNS answer
    changes later is not checked again before each call.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget(f"Only http and https URLs are allowed, got {url!r}.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeTarget(f"The URL has no host, got {url!r}.")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise UnsafeTarget(f"The port must be a number from 1 to 65535, got {url!r}.")
    if parts.query or parts.fragment:
        # Call paths are appended to the base URL, after any query.
        raise UnsafeTarget(f"The URL must have no query or fragment, got {url!r}.")
    allow_private = bool(getattr(settings, "RESILIENCE_ALLOW_PRIVATE_TARGETS", False))
    if host in METADATA_HOSTS and not allow_private:
        raise UnsafeTarget(f"The host {host} is a cloud metadata service.")

    for address in _addresses(host):
        reason = _blocked_reason(address)
        if reason and not allow_private:
            raise UnsafeTarget(
                f"The host {host} resolves to {address}, {reason}; set "
                "RESILIENCE_ALLOW_PRIVATE_TARGETS to allow it."
            )


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    future = _resolver_pool.submit(resolve_host, host)
    try:
        names = future.result(timeout=RESOLVE_TIMEOUT_SECONDS)
    except FutureTimeout:
        raise UnsafeTarget(
            f"The host {host} did not resolve within "
            f"{RESOLVE_TIMEOUT_SECONDS:g} seconds."
        ) from None
    except (OSError, UnicodeError) as exc:
        raise UnsafeTarget(f"The host {host} does not resolve: {exc}.") from None
    if not names:
        raise UnsafeTarget(f"The host {host} does not resolve.")
    return [ipaddress.ip_address(name.split("%")[0]) for name in names]


def _blocked_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return ""
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    return ""


# --- saving -------------------------------------------------------------------


def _username(user: Any) -> str:
    return str(getattr(user, "username", "") or "")


def _actor(user: Any) -> Any:
    return user if user is not None and user.is_authenticated else None


def audit(user: Any, action: str, object_type: str, name: str, summary: str) -> None:
    """Store one audit entry for a write."""
    AuditEntry.objects.create(
        at=timezone.now(),
        user=_actor(user),
        username=_username(user),
        action=action,
        object_type=object_type,
        object_name=name,
        summary=summary[:500],
    )


def summarize(changes: list[dict[str, Any]]) -> str:
    """Return a one-line description of a diff for the audit log."""
    if not changes:
        return "no change"
    paths = ", ".join(change["path"] for change in changes[:8])
    more = f" and {len(changes) - 8} more" if len(changes) > 8 else ""
    return f"changed {paths}{more}"


def next_version(policy: Policy | None, target_name: str) -> int:
    """Return the next version number of a target's policy.

    Versions keep growing across a delete and a new create, so a worker's
    cached copy never matches a newer policy by chance.
    """
    latest = PolicyVersion.objects.filter(target_name=target_name).aggregate(
        latest=Max("version")
    )["latest"]
    current = policy.version if policy is not None else 0
    return max(latest or 0, current) + 1


def save_policy(
    target: Target, config: dict[str, Any], user: Any, action: str | None = None
) -> tuple[Policy, list[dict[str, Any]]]:
    """Create or replace a target's policy and record the new version.

    ``config`` must be normalized. A save that changes nothing keeps the
    version and records nothing. Returns the policy and the diff.
    """
    with transaction.atomic():
        policy = Policy.objects.select_for_update().filter(target=target).first()
        old = effective(policy.config) if policy is not None else None
        changes = diff(old, config)
        if policy is not None and not changes:
            return policy, []

        version = next_version(policy, target.name)
        if action is None:
            action = "create" if policy is None else "update"
        if policy is None:
            policy = Policy(target=target)
        policy.config = config
        policy.version = version
        policy.updated_by = _actor(user)
        policy.save()
        _record_version(target.name, version, action, config, changes, user)
        audit(user, action, "policy", target.name, f"v{version}: {summarize(changes)}")
    return policy, changes


def delete_policy(policy: Policy, user: Any) -> None:
    """Delete a policy; its target falls back to the default policy."""
    name = policy.target.name
    with transaction.atomic():
        version = next_version(policy, name)
        changes = diff(effective(policy.config), None)
        policy.delete()
        _record_version(name, version, "delete", None, changes, user)
        audit(user, "delete", "policy", name, f"v{version}: policy deleted")


def _record_version(
    name: str,
    version: int,
    action: str,
    config: dict[str, Any] | None,
    changes: list[dict[str, Any]],
    user: Any,
) -> None:
    PolicyVersion.objects.create(
        target_name=name,
        version=version,
        action=action,
        config=config,
        diff=changes,
        changed_by=_actor(user),
        changed_at=timezone.now(),
    )
    transaction.on_commit(lambda: publish_change(name, version))


def publish_change(target: str, version: int) -> None:
    """Tell every worker process that a target's policy changed.

    A lost message is not fatal: each process also compares its cached
    version with the database (see ``services.load_policy``).
    """
    services.invalidate_policy(target)
    message = json.dumps({"target": target, "version": version})
    try:
        services.redis_client().publish(services.POLICY_CHANNEL, message)
    except redis.RedisError as exc:
        logger.warning(
            "target=%s policy v%d change not published, workers apply it at "
            "their next version check: %s",
            target,
            version,
            exc,
        )
        return
    logger.info("target=%s policy v%d published", target, version)


def save_target(
    target: Target | None, fields: dict[str, Any], user: Any
) -> tuple[Target, list[dict[str, Any]]]:
    """Create or update a target and record an audit entry for a change."""
    with transaction.atomic():
        old = _target_fields(target) if target is not None else None
        if target is None:
            target = Target(**fields)
        else:
            for key, value in fields.items():
                setattr(target, key, value)
        changes = diff(old, _target_fields(target))
        if not changes:
            return target, []
        target.save()
        action = "create" if old is None else "update"
        audit(user, action, "target", target.name, summarize(changes))
    return target, changes


def delete_target(target: Target, user: Any) -> None:
    """Delete a target, recording the deletion of its policy first."""
    with transaction.atomic():
        policy = Policy.objects.filter(target=target).first()
        if policy is not None:
            delete_policy(policy, user)
        audit(user, "delete", "target", target.name, f"deleted {target.base_url}")
        target.delete()


def _target_fields(target: Target) -> dict[str, Any]:
    return {
        "name": target.name,
        "base_url": target.base_url,
        "description": target.description,
    }


# --- export and import ----------------------------------------------------------


def export_document() -> dict[str, Any]:
    """Return every target and policy as one document that import reads back."""
    targets = [_target_fields(t) for t in Target.objects.order_by("name")]
    policies = [
        {"target": p.target.name, **effective(p.config)}
        for p in Policy.objects.select_related("target").order_by("target__name")
    ]
    return {"targets": targets, "policies": policies}


def import_document(
    targets: list[dict[str, Any]],
    policies: list[dict[str, Any]],
    user: Any,
    dry_run: bool,
) -> dict[str, Any]:
    """Apply validated targets and policies in one transaction.

    Targets and policies that the document does not name are left as they
    are. With ``dry_run`` the changes are computed and rolled back, so the
    result is the same as a real import's but nothing is saved or published.
    """
    with transaction.atomic():
        result = _apply(targets, policies, user)
        if dry_run:
            transaction.set_rollback(True)
    return {"dry_run": dry_run, **result}


def _apply(
    targets: list[dict[str, Any]], policies: list[dict[str, Any]], user: Any
) -> dict[str, Any]:
    target_results = []
    for fields in targets:
        existing = Target.objects.filter(name=fields["name"]).first()
        row, changes = save_target(existing, fields, user)
        action = _change_action(existing is not None, changes)
        target_results.append({"name": row.name, "action": action, "diff": changes})

    policy_results = []
    for entry in policies:
        target = Target.objects.get(name=entry["target"])
        existed = Policy.objects.filter(target=target).exists()
        policy, changes = save_policy(target, entry["config"], user, action="import")
        action = _change_action(existed, changes)
        policy_results.append(
            {
                "target": target.name,
                "action": action,
                "version": policy.version,
                "diff": changes,
            }
        )
    return {"targets": target_results, "policies": policy_results}


def _change_action(existed: bool, changes: list[dict[str, Any]]) -> str:
    if not existed:
        return "create"
    return "update" if changes else "unchanged"

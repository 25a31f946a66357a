"""Checks of a saga definition before it is stored.

Each broken rule is a ``Problem``: the path of the field inside the checked
value (``0.retry.initial_interval`` for the first step's retry), a stable
code and a sentence that names the rule and the bad value. The API turns
them into its field errors, so a client sees ``steps.0.retry.initial_interval``
with the value it sent. Nothing is stored while any problem is left.
"""

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sagas.definitions import FIELD_TYPES, HTTP_METHODS, ON_FAILURE, STEP_KEYS

# Limits that keep one definition, and every run page of it, a sane size.
MAX_STEPS = 100
MAX_INPUT_FIELDS = 50
# A decimal input has 12 digits in all (see sagas.definitions).
MAX_DECIMAL_PLACES = 12

FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
STEP_NAME = re.compile(r"[a-z0-9_\-]{1,64}")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")

# The rules each input field type takes, besides name, type, required,
# example and help.
TYPE_RULES = {
    "string": {"min_length", "max_length"},
    "integer": {"min_value", "max_value"},
    "decimal": {"min_value", "max_value", "decimal_places"},
    "boolean": set(),
}
COMMON_FIELD_KEYS = {"name", "type", "required", "example", "help"}


@dataclass(frozen=True)
class Problem:
    path: str
    code: str
    message: str


# A name's pattern, and the rule that says it in an error message.
FIELD_NAME_RULE = (
    FIELD_NAME,
    "1 to 64 of a-z, 0-9 and _, not starting with a digit",
)
STEP_NAME_RULE = (STEP_NAME, "1 to 64 of a-z, 0-9, _ or -")


def name_problems(
    at: str,
    entry: dict[str, Any],
    rule: tuple[re.Pattern[str], str],
    earlier: set[str],
    noun: str,
) -> list[Problem]:
    """Check a list entry's name against its pattern and the earlier names."""
    name = entry.get("name")
    pattern, words = rule
    if not isinstance(name, str) or not pattern.fullmatch(name):
        return [
            Problem(f"{at}.name", "invalid", f"Must be {words}, got {name!r:.100}.")
        ]
    if name in earlier:
        return [Problem(f"{at}.name", "unique", f"'{name}' names an earlier {noun}.")]
    return []


def input_schema_problems(schema: Any) -> list[Problem]:
    """Check the input fields before a run's serializer is built from them."""
    if not isinstance(schema, list):
        return [Problem("", "invalid_type", f"Must be a list, got {schema!r:.200}.")]
    if len(schema) > MAX_INPUT_FIELDS:
        return [Problem("", "max_length", f"At most {MAX_INPUT_FIELDS} fields.")]
    problems: list[Problem] = []
    names: set[str] = set()
    for index, spec in enumerate(schema):
        at = str(index)
        if not isinstance(spec, dict):
            problems.append(
                Problem(at, "invalid_type", f"Must be an object, got {spec!r:.200}.")
            )
            continue
        named = name_problems(at, spec, FIELD_NAME_RULE, names, "field")
        if not named:
            names.add(spec["name"])
        problems.extend(named)
        problems.extend(_field_problems(at, spec))
    return problems


def _field_problems(at: str, spec: dict[str, Any]) -> list[Problem]:
    kind = spec.get("type")
    if kind not in FIELD_TYPES:
        return [
            Problem(
                f"{at}.type",
                "invalid_choice",
                f"Must be one of {', '.join(sorted(FIELD_TYPES))}, got {kind!r:.100}.",
            )
        ]
    allowed = COMMON_FIELD_KEYS | TYPE_RULES[kind]
    unknown = [
        Problem(
            f"{at}.{key}",
            "unknown_field",
            f"Is not a rule of a {kind} field; expected one of "
            f"{', '.join(sorted(allowed))}.",
        )
        for key in spec
        if key not in allowed
    ]
    return (
        unknown + _rule_value_problems(at, kind, spec) + _range_problems(at, kind, spec)
    )


def _rule_value_problems(at: str, kind: str, spec: dict[str, Any]) -> list[Problem]:
    problems = []
    if "required" in spec and not isinstance(spec["required"], bool):
        problems.append(_bad(at, "required", "true or false", spec["required"]))
    if "help" in spec and not isinstance(spec["help"], str):
        problems.append(_bad(at, "help", "a string", spec["help"]))
    for rule in ("min_length", "max_length", "decimal_places"):
        if rule in spec and not _count(spec[rule]):
            problems.append(_bad(at, rule, "a whole number from 0", spec[rule]))
    places = spec.get("decimal_places")
    if isinstance(places, int) and _count(places) and places > MAX_DECIMAL_PLACES:
        problems.append(
            Problem(
                f"{at}.decimal_places",
                "max_value",
                f"Must be at most {MAX_DECIMAL_PLACES}, got {places}.",
            )
        )
    for rule in ("min_value", "max_value"):
        if rule in spec and _number(kind, spec[rule]) is None:
            expected = "an integer" if kind == "integer" else "a decimal number"
            problems.append(_bad(at, rule, expected, spec[rule]))
    return problems


def _range_problems(at: str, kind: str, spec: dict[str, Any]) -> list[Problem]:
    pairs = [("min_length", "max_length"), ("min_value", "max_value")]
    for low, high in pairs:
        if low not in spec or high not in spec:
            continue
        low_value, high_value = _number(kind, spec[low]), _number(kind, spec[high])
        if low == "min_length":
            low_value = spec[low] if _count(spec[low]) else None
            high_value = spec[high] if _count(spec[high]) else None
        if low_value is None or high_value is None:
            continue
        if low_value > high_value:
            return [
                Problem(
                    f"{at}.{high}",
                    "min_value",
                    f"Must be at least {low} ({spec[low]}), got {spec[high]!r}.",
                )
            ]
    return []


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(kind: str, value: Any) -> int | Decimal | None:
    if isinstance(value, bool):
        return None
    if kind == "integer":
        return value if isinstance(value, int) else None
    if not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _bad(at: str, rule: str, expected: str, value: Any) -> Problem:
    return Problem(
        f"{at}.{rule}", "invalid_type", f"Must be {expected}, got {value!r:.100}."
    )


def step_problems(steps: Any, input_names: set[str]) -> list[Problem]:
    """Check the steps of an orchestrated saga against its input fields."""
    if not isinstance(steps, list) or not steps:
        return [Problem("", "invalid", "Must be a non-empty list of step objects.")]
    if len(steps) > MAX_STEPS:
        return [
            Problem("", "max_length", f"At most {MAX_STEPS} steps, got {len(steps)}.")
        ]
    problems: list[Problem] = []
    earlier: list[str] = []
    for index, step in enumerate(steps):
        at = str(index)
        if not isinstance(step, dict):
            problems.append(
                Problem(at, "invalid_type", f"Must be an object, got {step!r:.200}.")
            )
            continue
        name = step.get("name")
        problems.extend(name_problems(at, step, STEP_NAME_RULE, set(earlier), "step"))
        problems.extend(_step_problems(at, step))
        own = {name} if isinstance(name, str) else set()
        scope = {"action": set(earlier), "compensation": set(earlier) | own}
        for part, known_steps in scope.items():
            problems.extend(
                placeholder_problems(
                    f"{at}.{part}", step.get(part), input_names, known_steps
                )
            )
        if isinstance(name, str):
            earlier.append(name)
    return problems


def _step_problems(at: str, step: dict[str, Any]) -> list[Problem]:
    problems = [
        Problem(
            f"{at}.{key}",
            "unknown_field",
            f"Is not a step field; expected one of {', '.join(sorted(STEP_KEYS))}.",
        )
        for key in step
        if key not in STEP_KEYS
    ]
    problems.extend(_target_problems(at, step))
    for part in ("action", "compensation"):
        call = step.get(part)
        if call is None and part == "compensation":
            continue
        problems.extend(call_problems(f"{at}.{part}", call))
    problems.extend(policy_problems(at, step))
    if step.get("on_failure", "compensate") not in ON_FAILURE:
        problems.append(
            Problem(
                f"{at}.on_failure",
                "invalid_choice",
                f"Must be one of {', '.join(ON_FAILURE)}, "
                f"got {step.get('on_failure')!r:.100}.",
            )
        )
    return problems


def _target_problems(at: str, step: dict[str, Any]) -> list[Problem]:
    """An HTTP call needs a registered target; a function names a policy."""
    calls = [step.get("action"), step.get("compensation")]
    http = any(isinstance(c, dict) and "function" not in c for c in calls)
    return target_problems(at, step.get("target"), http)


def target_problems(at: str, target: Any, http: bool) -> list[Problem]:
    """Check a target name; one that HTTP calls go to must be registered."""
    from resilience.models import Target

    if not isinstance(target, str) or not STEP_NAME.fullmatch(target):
        return [
            Problem(
                f"{at}.target",
                "invalid",
                f"Must name a registered target, got {target!r:.100}.",
            )
        ]
    if http and not Target.objects.filter(name=target).exists():
        return [
            Problem(
                f"{at}.target",
                "does_not_exist",
                f"Must name a registered target (see /api/targets/), got {target!r}.",
            )
        ]
    return []


def policy_problems(at: str, step: dict[str, Any]) -> list[Problem]:
    """Check a step's retry and timeout as the resilience core reads them."""
    from resilience.core.config import RetryConfig, TimeoutConfig
    from resilience.policies import core_error

    sections: dict[str, type[RetryConfig] | type[TimeoutConfig]] = {
        "retry": RetryConfig,
        "compensation_retry": RetryConfig,
        "timeout": TimeoutConfig,
    }
    problems = []
    for key, config in sections.items():
        if step.get(key) is None:
            continue
        try:
            config.from_dict(step[key])
        except (TypeError, ValueError) as exc:
            error = core_error(ValueError(str(exc)), config.section)
            # The core names the section "retry" for a compensation_retry too.
            field = error.path.split(".", 1)[1] if "." in error.path else ""
            path = f"{at}.{key}" + (f".{field}" if field else "")
            problems.append(Problem(path, error.code, error.message))
    return problems


def call_problems(at: str, call: Any) -> list[Problem]:
    if isinstance(call, dict) and "function" in call:
        return _function_problems(at, call)
    if not isinstance(call, dict):
        return [
            Problem(
                at,
                "invalid_type",
                "Must be an object with method and path, or with function, "
                f"got {call!r:.200}.",
            )
        ]
    problems = [
        Problem(
            f"{at}.{key}",
            "unknown_field",
            "Is not a field of an HTTP call; expected body, method, path.",
        )
        for key in call
        if key not in {"method", "path", "body"}
    ]
    if call.get("method") not in HTTP_METHODS:
        problems.append(
            Problem(
                f"{at}.method",
                "invalid_choice",
                f"Must be one of {', '.join(sorted(HTTP_METHODS))}, "
                f"got {call.get('method')!r:.100}.",
            )
        )
    path = call.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        problems.append(
            Problem(
                f"{at}.path",
                "invalid",
                f"Must be a string starting with '/', got {path!r:.200}.",
            )
        )
    return problems


def _function_problems(at: str, call: dict[str, Any]) -> list[Problem]:
    from sagas.registry import lookup, registered

    problems = [
        Problem(
            f"{at}.{key}",
            "unknown_field",
            "Is not a field of a function call; expected function, payload.",
        )
        for key in call
        if key not in {"function", "payload"}
    ]
    function = call["function"]
    if not isinstance(function, str) or lookup(function) is None:
        problems.append(
            Problem(
                f"{at}.function",
                "does_not_exist",
                "Must name a registered saga step (one of "
                f"{', '.join(registered()) or 'none'}), got {function!r:.200}.",
            )
        )
    return problems


def placeholder_problems(
    at: str, call: Any, input_names: set[str], step_names: set[str]
) -> list[Problem]:
    """Check that each {{...}} names a value the run will have."""
    problems = []
    for found in sorted(set(PLACEHOLDER.findall(_text(call)))):
        head, _, rest = found.partition(".")
        if head == "run" and rest == "id":
            continue
        if head == "input" and rest in input_names:
            continue
        step_name, _, field = rest.partition(".")
        if head == "steps" and step_name in step_names and field.startswith("output"):
            continue
        problems.append(
            Problem(
                at,
                "unknown_placeholder",
                f"{{{{{found}}}}} names no value of the run; use run.id, "
                "input.<field>, or steps.<earlier step>.output[.<key>].",
            )
        )
    return problems


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(_text(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return value if isinstance(value, str) else ""


def choreography_problems(schema: Any) -> list[Problem]:
    """Check that a choreography definition takes the input its flow needs.

    A choreographed run has no steps of its own: the control plane places
    an order with the demo order service and the demo services' event
    consumers do the rest (``sagas.choreography``). That order flow is the
    only one the engine can run, so a choreography definition must take
    exactly its input fields, each with the same type and required.
    """
    from sagas.definitions import ORDER_CHOREOGRAPHY_SAGA

    flow = ORDER_CHOREOGRAPHY_SAGA["input_schema"]
    expected = {spec["name"]: spec["type"] for spec in flow}
    fields = schema if isinstance(schema, list) else []
    given = {
        spec.get("name"): (spec.get("type"), spec.get("required", True))
        for spec in fields
        if isinstance(spec, dict)
    }
    matches = given == {name: (kind, True) for name, kind in expected.items()}
    if matches:
        return []
    wanted = ", ".join(f"{name} ({kind})" for name, kind in expected.items())
    names = ", ".join(str(name) for name in given) or "none"
    return [
        Problem(
            "",
            "unsupported_flow",
            "A choreography saga runs the demo order flow, the only flow whose "
            "services react to each other's events, so its input fields must be "
            f"exactly {wanted}, all required; got {names}. Define other flows "
            "as orchestrated or tcc sagas.",
        )
    ]

"""A small IAM policy evaluator for tests: does a policy allow an action on a resource in a context?

Enough of IAM's rules for this project's documents: Allow/Deny statements, Action and Resource
lists with `*`/`?` wildcards (actions case-insensitive), and the condition operators below. A
document using anything else (NotAction, NotResource, another operator) is refused rather than
evaluated wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_OPERATORS = ("StringEquals", "StringLike", "StringNotEquals", "ArnLike", "ArnEquals", "Bool", "Null")


class UnsupportedPolicy(ValueError):
    """The document uses an IAM feature this evaluator does not implement."""


@dataclass(frozen=True)
class Request:
    """One authorization question: `action` on `resource` with condition keys `context`."""

    action: str
    resource: str
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    """IAM wildcards: `*` any run of characters, `?` one character; everything else literal."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, Any]) -> bool:
    for operator, tests in condition.items():
        if operator not in _OPERATORS:
            raise UnsupportedPolicy(f"condition operator {operator!r}")
        for key, wanted in tests.items():
            if operator == "Null":  # "true": the key is absent; "false": it is present
                if (key not in context) != (str(wanted).lower() == "true"):
                    return False
                continue
            if key not in context:
                if operator == "StringNotEquals":
                    continue
                return False
            actual = [str(v) for v in _as_list(context[key])]
            wanted_values = [str(w).lower() if operator == "Bool" else str(w) for w in _as_list(wanted)]
            if operator in ("StringEquals", "ArnEquals"):
                ok = any(a in wanted_values for a in actual)
            elif operator == "Bool":
                ok = any(a.lower() in wanted_values for a in actual)
            elif operator == "StringNotEquals":
                ok = all(a not in wanted_values for a in actual)
            else:  # StringLike, ArnLike
                ok = any(_glob(w, a, case=True) for w in wanted_values for a in actual)
            if not ok:
                return False
    return True


def statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = _as_list(policy["Statement"])
    for st in found:
        unsupported = {"NotAction", "NotResource", "NotPrincipal"} & set(st)
        if unsupported:
            raise UnsupportedPolicy(f"statement {st.get('Sid')!r} uses {sorted(unsupported)}")
        if st.get("Effect") not in ("Allow", "Deny"):
            raise UnsupportedPolicy(f"statement {st.get('Sid')!r}: Effect must be Allow or Deny")
    return found


def _matches(st: Mapping[str, Any], req: Request) -> bool:
    return (
        any(_glob(a, req.action, case=False) for a in _as_list(st["Action"]))
        and any(_glob(r, req.resource, case=True) for r in _as_list(st["Resource"]))
        and _condition_holds(st.get("Condition", {}), req.context)
    )


def is_allowed(policies: Iterable[Mapping[str, Any]], req: Request) -> bool:
    """IAM's decision for one identity: an explicit Deny wins, then any Allow, else denied."""
    matching = [st for policy in policies for st in statements(policy) if _matches(st, req)]
    return any(st["Effect"] == "Allow" for st in matching) and not any(
        st["Effect"] == "Deny" for st in matching
    )


def granted_actions(policy: Mapping[str, Any]) -> set[str]:
    return {a for st in statements(policy) if st["Effect"] == "Allow" for a in _as_list(st["Action"])}


def too_broad(policy: Mapping[str, Any], resource_star_actions: set[str]) -> list[str]:
    """Why the policy grants more than named actions on named resources ([] when it does not)."""
    problems = []
    for st in statements(policy):
        if st["Effect"] != "Allow":
            continue
        sid = st.get("Sid", "?")
        for action in _as_list(st["Action"]):
            if "*" in action or "?" in action:
                problems.append(f"{sid}: wildcard action {action!r}")
        if "*" in _as_list(st["Resource"]):
            extra = sorted(set(_as_list(st["Action"])) - resource_star_actions)
            if extra:
                problems.append(f"{sid}: {extra} on Resource '*'")
        for resource in _as_list(st["Resource"]):
            if resource != "*" and re.search(r":(\*|[a-z0-9-]*:\*)$|:::\*", resource):
                problems.append(f"{sid}: resource {resource!r} is a whole service")
    return problems

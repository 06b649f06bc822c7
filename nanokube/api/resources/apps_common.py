"""What the workload kinds (apps and batch) share: their pod templates, selectors,
table cells, and the Go spelling of values in upstream's error messages.

Upstream's `field.Error` prints a bad value with Go's `%#v` when it is neither a
string nor a number, so a template's labels read `map[string]string{"app":"x"}`
and a selector `v1.LabelSelector{MatchLabels:...}`. `validators.format_value`
prints JSON, which is right for strings and numbers; the `go_*` functions here
spell the composite values the way users see them from a real cluster, so that
messages such as the selector/template mismatch match upstream to the letter.
"""

from __future__ import annotations

import json
from typing import Any

from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column
from nanokube.api.meta import age, get_path
from nanokube.api.resources.pod import default_pod_spec, validate_pod_template

Obj = dict[str, Any]

SELECTOR_MISMATCH = "`selector` does not match template `labels`"
PERCENT_FMT = "[0-9]+%"
PERCENT_MSG = "a valid percent string must be a numeric string followed by an ending '%'"

AGE = Column(
    "Age",
    description="CreationTimestamp is a timestamp representing the server time when this object was created.",
)
CONTAINERS = Column(
    "Containers", priority=1, description="Names of each container in the template."
)
IMAGES = Column(
    "Images", priority=1, description="Images referenced by each container in the template."
)


# --- the spec and its pod template ---------------------------------------------------


def ensure_spec(obj: Obj) -> Obj:
    """The object's spec, created empty if absent (defaulting needs somewhere to write)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    return spec


def default_template(spec: Obj) -> None:
    """Pod defaults for `spec.template.spec`, as upstream's generated defaulters apply them."""
    pod_spec = get_path(spec, ("template", "spec"))
    if isinstance(pod_spec, dict):
        default_pod_spec(pod_spec)


def template_causes(spec: Obj, path: str = "spec") -> list[Cause]:
    return validate_pod_template(spec.get("template") or {}, f"{path}.template")


def meta_update(new: Obj, old: Obj) -> list[Cause]:
    return v.validate_object_meta_update(new, old)


# --- Go spellings of values --------------------------------------------------------


def _q(s: Any) -> str:
    return json.dumps(str(s), ensure_ascii=False)


def go_string_map(m: Any) -> str:
    """`%#v` of a `map[string]string`: keys sorted, `(nil)` for an absent map."""
    if m is None:
        return "map[string]string(nil)"
    inner = ", ".join(f"{_q(k)}:{_q(m[k])}" for k in sorted(m))
    return "map[string]string{" + inner + "}"


def go_label_selector(sel: Any) -> str:
    """`%#v` of a `metav1.LabelSelector`."""
    sel = sel or {}
    exprs = sel.get("matchExpressions")
    if exprs is None:
        rendered = "[]v1.LabelSelectorRequirement(nil)"
    else:
        items = []
        for e in exprs:
            values = e.get("values")
            vals = (
                "[]string(nil)"
                if values is None
                else "[]string{" + ", ".join(_q(x) for x in values) + "}"
            )
            items.append(
                f"v1.LabelSelectorRequirement{{Key:{_q(e.get('key', ''))}, "
                f"Operator:{_q(e.get('operator', ''))}, Values:{vals}}}"
            )
        rendered = "[]v1.LabelSelectorRequirement{" + ", ".join(items) + "}"
    return f"v1.LabelSelector{{MatchLabels:{go_string_map(sel.get('matchLabels'))}, MatchExpressions:{rendered}}}"


def go_int_or_string(value: Any) -> str:
    """`%#v` of an `intstr.IntOrString` (Type 0 is an int, 1 a string)."""
    if isinstance(value, str):
        return f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{_q(value)}}}"
    return f'intstr.IntOrString{{Type:0, IntVal:{int(value or 0)}, StrVal:""}}'


def invalid_go(path: str, go_value: str, detail: str) -> Cause:
    """An Invalid cause whose value is already spelled (see the `go_*` functions)."""
    return Cause(
        path, f"Invalid value: {go_value}: {detail}" if detail else f"Invalid value: {go_value}"
    )


# --- selectors -----------------------------------------------------------------------


def selector_matches(selector: Any, labels: Any) -> bool:
    """`LabelSelectorAsSelector(sel).Matches(labels)`: a nil selector matches nothing."""
    if selector is None:
        return False
    return v.selector_matches(selector, labels or {})


def selector_is_empty(selector: Any) -> bool:
    return (
        selector is not None
        and not selector.get("matchLabels")
        and not selector.get("matchExpressions")
    )


def selector_string(selector: Any) -> str:
    """`labels.Selector.String()` of a LabelSelector: requirements sorted by key."""
    if not selector:
        return ""
    reqs: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        reqs.append((key, f"{key}={value}"))
    for e in selector.get("matchExpressions") or []:
        key, op = e.get("key", ""), e.get("operator", "")
        values = ",".join(sorted(e.get("values") or []))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(op, key)
        reqs.append((key, text))
    return ",".join(text for _, text in sorted(reqs, key=lambda r: r[0]))


def label_set_string(labels: Any) -> str:
    """`labels.FormatLabels`: `k=v,k2=v2` sorted, or `<none>`."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def selector_causes(spec: Obj, path: str, kind_word: str) -> list[Cause]:
    """`spec.selector` present, well-formed and not empty (apps kinds)."""
    if "selector" not in spec:
        return []  # absent: the JSON schema reports `spec.selector: Required value`
    sel = spec.get("selector")
    if sel is None:
        return [v.required(f"{path}.selector")]
    causes = v.label_selector_causes(sel, f"{path}.selector")
    if selector_is_empty(sel):
        causes.append(
            invalid_go(
                f"{path}.selector",
                go_label_selector(sel),
                f"empty selector is invalid for {kind_word}",
            )
        )
    return causes


def template_labels_cause(spec: Obj, path: str) -> list[Cause]:
    """The selector must select the pods the template makes (an empty one selects all)."""
    sel = spec.get("selector")
    if selector_is_empty(sel):
        return []
    labels = get_path(spec, ("template", "metadata", "labels"))
    if selector_matches(sel, labels):
        return []
    return [
        invalid_go(f"{path}.template.metadata.labels", go_string_map(labels), SELECTOR_MISMATCH)
    ]


def restart_always_causes(spec: Obj, path: str) -> list[Cause]:
    """Controllers that keep pods running accept only `restartPolicy: Always`."""
    policy = get_path(spec, ("template", "spec", "restartPolicy"), "")
    if policy != "Always":
        return [v.not_supported(f"{path}.template.spec.restartPolicy", policy, ["Always"])]
    return []


def immutable_selector(new: Obj, old: Obj) -> list[Cause]:
    """apps/v1 and batch/v1 forbid changing `spec.selector` (`ValidateImmutableField`)."""
    ns, os_ = get_path(new, ("spec", "selector")), get_path(old, ("spec", "selector"))
    if _norm(ns) != _norm(os_):
        return [invalid_go("spec.selector", go_label_selector(ns), "field is immutable")]
    return []


def _norm(sel: Any) -> Any:
    """Semantic equality: an empty map or list equals an absent one."""
    if not sel:
        return None
    return {k: val for k, val in sel.items() if val}


# --- int-or-percent values -----------------------------------------------------------


def int_or_percent_value(value: Any) -> tuple[int, bool]:
    """`getIntOrPercentValue`: the number, and whether it was a percentage."""
    if isinstance(value, str):
        digits = value[:-1] if value.endswith("%") else value
        return (int(digits) if digits.isdigit() else 0), True
    return int(value or 0), False


def positive_int_or_percent(path: str, value: Any) -> list[Cause]:
    """`ValidatePositiveIntOrPercent` (which, despite its name, accepts zero)."""
    if isinstance(value, str):
        if not (value.endswith("%") and value[:-1].isdigit()):
            msg = v.regex_error(PERCENT_MSG, PERCENT_FMT, "1%", "93%")
            return [invalid_go(path, go_int_or_string(value), msg)]
        return []
    return v.non_negative(path, value)


def not_more_than_100_percent(path: str, value: Any) -> list[Cause]:
    number, is_percent = int_or_percent_value(value)
    if is_percent and number > 100:
        return [invalid_go(path, go_int_or_string(value), "must not be greater than 100%")]
    return []


def non_negative_fields(spec: Obj, path: str, *names: str) -> list[Cause]:
    causes: list[Cause] = []
    for name in names:
        causes += v.non_negative(f"{path}.{name}", spec.get(name))
    return causes


# --- table cells ---------------------------------------------------------------------


def containers_and_images(pod_spec: Any) -> tuple[str, str]:
    """`layoutContainerCells`: names and images of the template's containers, comma-joined."""
    containers = (pod_spec or {}).get("containers") or []
    return (
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
    )


def creation_age(obj: Obj, now: float | None = None) -> str:
    return age(get_path(obj, ("metadata", "creationTimestamp")), now)


def template_cells(obj: Obj, now: float | None = None) -> list[Any]:
    """What a pod-template workload prints last: AGE, CONTAINERS, IMAGES and SELECTOR."""
    spec = obj.get("spec") or {}
    names, images = containers_and_images(get_path(spec, ("template", "spec")))
    return [creation_age(obj, now), names, images, selector_string(spec.get("selector"))]


def controller_of(obj: Obj) -> Obj | None:
    for ref in get_path(obj, ("metadata", "ownerReferences"), []) or []:
        if ref.get("controller"):
            return dict(ref)
    return None

"""From the metrics' proposal to the count the HPA sets: stabilization and scaling rates.

Upstream's `normalizeDesiredReplicas[WithBehaviors]` (`horizontal.go`), as the
Kubernetes docs describe `spec.behavior`:

- **stabilization window**: the controller remembers its recent proposals
  (`Recommendation`s) and, when scaling down, uses the highest proposal of the
  scale-down window (5 minutes unless the behavior says otherwise), so a dip
  does not remove pods that a spike will need again; when scaling up it uses
  the lowest proposal of the scale-up window (0 by default).
- **policies** limit how fast: each `Pods` or `Percent` policy allows a change
  from the count at the start of its `periodSeconds` (the current count minus
  the changes this controller made within the period: `ScaleEvent`s);
  `selectPolicy` takes the policy allowing the most change (`Max`), the
  least (`Min`), or none (`Disabled`).
- **without a behavior** (the HPA has `spec.behavior` unset), only the
  scale-down window applies, and a scale-up is capped at max(2 × current, 4).
- the result is kept within `minReplicas`..`maxReplicas`.

Each step also names the condition it sets: `AbleToScale` (ScaleUpStabilized,
ScaleDownStabilized or ReadyForNewScale) and `ScalingLimited` (TooFewReplicas,
TooManyReplicas, ScaleUpLimit, ScaleDownLimit or DesiredWithinRange), with
upstream's messages.

`History` is the memory upstream keeps per HPA in the controller (it is not in
the API: a restarted controller forgets it, as upstream's does). Times are
seconds from the controller's clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

# Upstream's scale-up cap without a behavior: max(scaleUpLimitFactor × current, scaleUpLimitMinimum).
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0

_STABILIZED_DOWN = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, "
    "applying the highest recent recommendation",
)
_STABILIZED_UP = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
)
_READY = ("ReadyForNewScale", "recommended size matches current size")
_WITHIN = ("DesiredWithinRange", "the desired count is within the acceptable range")
_TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")
_TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
_UP_LIMIT = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
)
_DOWN_LIMIT = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
)


@dataclass
class Recommendation:
    replicas: int
    at: float


@dataclass
class ScaleEvent:
    change: int  # replicas added (scale-up events) or removed (scale-down events), > 0
    at: float


@dataclass
class History:
    """What one HPA's controller remembers between reconciles."""

    recommendations: list[Recommendation] = field(default_factory=list)
    scale_up: list[ScaleEvent] = field(default_factory=list)
    scale_down: list[ScaleEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    """The count to set and the two conditions that explain it."""

    replicas: int
    able: tuple[str, str]  # AbleToScale (True): reason, message
    limited: bool  # ScalingLimited status
    limit: tuple[str, str]  # ScalingLimited: reason, message


def _record(history: History, desired: int, now: float, keep: float) -> None:
    """Remember a proposal, forgetting those older than `keep` seconds (no longer used)."""
    history.recommendations = [r for r in history.recommendations if r.at >= now - keep]
    history.recommendations.append(Recommendation(desired, now))


def _change_in_period(events: list[ScaleEvent], period: float, now: float) -> int:
    return sum(e.change for e in events if e.at > now - period)


def scale_up_limit(current: int, history: History, rules: Obj, now: float) -> int:
    """The most replicas the scale-up policies allow now."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    proposals = []
    for policy in rules.get("policies") or []:
        period = float(policy.get("periodSeconds") or 0)
        start = (
            current
            - _change_in_period(history.scale_up, period, now)
            + _change_in_period(history.scale_down, period, now)
        )
        if policy.get("type") == "Pods":
            proposals.append(start + int(policy.get("value") or 0))
        elif policy.get("type") == "Percent":
            # Rounded up, or a small count could never grow.
            proposals.append(math.ceil(start * (1 + int(policy.get("value") or 0) / 100)))
    if not proposals:
        return current
    return min(proposals) if select == "Min" else max(proposals)


def scale_down_limit(current: int, history: History, rules: Obj, now: float) -> int:
    """The fewest replicas the scale-down policies allow now."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    proposals = []
    for policy in rules.get("policies") or []:
        period = float(policy.get("periodSeconds") or 0)
        start = (
            current
            - _change_in_period(history.scale_up, period, now)
            + _change_in_period(history.scale_down, period, now)
        )
        if policy.get("type") == "Pods":
            proposals.append(start - int(policy.get("value") or 0))
        elif policy.get("type") == "Percent":
            proposals.append(int(start * (1 - int(policy.get("value") or 0) / 100)))
    if not proposals:
        return current
    # "Min" is the least change: for a scale-down, the highest count.
    return max(proposals) if select == "Min" else min(proposals)


def normalize(
    history: History,
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    now: float,
    downscale_window: float,
) -> Decision:
    """Without a behavior: the scale-down window, then the fixed scale-up cap and min/max."""
    stabilized = desired
    for r in history.recommendations:
        if r.at >= now - downscale_window:
            stabilized = max(stabilized, r.replicas)
    _record(history, desired, now, downscale_window)
    able = _STABILIZED_DOWN if stabilized != desired else _READY
    up_cap = math.floor(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    maximum, over = (up_cap, _UP_LIMIT) if max_replicas > up_cap else (max_replicas, _TOO_MANY)
    if stabilized < min_replicas:
        return Decision(min_replicas, able, True, _TOO_FEW)
    if stabilized > maximum:
        return Decision(maximum, able, True, over)
    return Decision(stabilized, able, False, _WITHIN)


def scale_down_window(behavior: Obj, default: float) -> float:
    """The behavior's scale-down window, or the controller's when it sets none."""
    seconds = (behavior.get("scaleDown") or {}).get("stabilizationWindowSeconds")
    return default if seconds is None else float(seconds)


def normalize_with_behavior(
    history: History,
    behavior: Obj,
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    now: float,
    downscale_window: float,
) -> Decision:
    """With `spec.behavior`: both stabilization windows, then the policies and min/max."""
    up_rules = behavior.get("scaleUp") or {}
    down_rules = behavior.get("scaleDown") or {}
    up_window = float(up_rules.get("stabilizationWindowSeconds") or 0)
    down_window = scale_down_window(behavior, downscale_window)
    # The lowest proposal of the up window bounds a scale-up from below the current
    # count's side, the highest of the down window bounds a scale-down.
    up_floor = down_ceiling = desired
    for r in history.recommendations:
        if r.at > now - up_window:
            up_floor = min(up_floor, r.replicas)
        if r.at > now - down_window:
            down_ceiling = max(down_ceiling, r.replicas)
    stabilized = min(max(current, up_floor), down_ceiling)
    _record(history, desired, now, max(up_window, down_window))
    if stabilized == desired:
        able = _READY
    else:
        able = _STABILIZED_UP if desired >= current else _STABILIZED_DOWN
    replicas, limit = stabilized, _WITHIN
    if stabilized > current:
        up_to = max(scale_up_limit(current, history, up_rules, now), current)
        maximum, over = (up_to, _UP_LIMIT) if max_replicas > up_to else (max_replicas, _TOO_MANY)
        if stabilized > maximum:
            replicas, limit = maximum, over
    elif stabilized < current:
        down_to = min(scale_down_limit(current, history, down_rules, now), current)
        minimum, under = (
            (down_to, _DOWN_LIMIT) if min_replicas < down_to else (min_replicas, _TOO_FEW)
        )
        if stabilized < minimum:
            replicas, limit = minimum, under
    return Decision(replicas, able, replicas != stabilized, limit)


def longest_period(rules: Obj) -> float:
    return float(max((p.get("periodSeconds") or 0 for p in rules.get("policies") or []), default=0))


def record_scale(
    history: History, behavior: Obj | None, previous: int, new: int, now: float
) -> None:
    """Remember a change this controller made, for the policies' periods (with a behavior)."""
    if behavior is None or new == previous:
        return
    if new > previous:
        keep = longest_period(behavior.get("scaleUp") or {})
        history.scale_up = [e for e in history.scale_up if e.at > now - keep]
        history.scale_up.append(ScaleEvent(new - previous, now))
    else:
        keep = longest_period(behavior.get("scaleDown") or {})
        history.scale_down = [e for e in history.scale_down if e.at > now - keep]
        history.scale_down.append(ScaleEvent(previous - new, now))

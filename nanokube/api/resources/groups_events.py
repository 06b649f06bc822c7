"""events.k8s.io/v1 Event.

Upstream stores events.k8s.io/v1 Events and core/v1 Events as one resource, two
views of the same objects; nanokube stores them separately (a known
simplification), so an Event written through one API is not seen through the
other. Validation is upstream's for the new API (`ValidateEventCreate`: a
reporting controller and instance, an action, a reason, an event time, no
deprecated fields), and rows are the core event printer's, NAME last (a wide column) as upstream
prints it.
"""

from __future__ import annotations

from typing import Any

from nanokube.api import validators as v
from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.meta import age, get_path
from nanokube.api.resources import apps_common as c
from nanokube.api.resources import core_event as ce

Obj = dict[str, Any]


# --- events.k8s.io/v1 Event ----------------------------------------------------------

_EVENT_LIMITS = (("reportingInstance", 128), ("action", 128), ("reason", 128), ("note", 1024))


def validate_event(obj: Obj) -> list[Cause]:
    """`ValidateEventCreate` for events.k8s.io/v1 (field names as upstream reports them)."""
    causes = v.validate_object_meta(obj, True, v.name_is_dns_subdomain)
    ns = get_path(obj, ("metadata", "namespace"), "")
    if not get_path(obj, ("regarding", "namespace")) and ns not in ("default", "kube-system"):
        causes.append(v.invalid("involvedObject.namespace", "", "does not match event.namespace"))
    for key in ("reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(key):
            causes.append(v.required(key))
    controller = obj.get("reportingController") or ""
    causes += [
        v.invalid("reportingController", controller, m) for m in v.qualified_name(controller)
    ]
    for key, limit in _EVENT_LIMITS:
        if len(obj.get(key) or "") > limit:
            causes.append(v.invalid(key, "", f"can have at most {limit} characters"))
    series = obj.get("series")
    if isinstance(series, dict):
        if (series.get("count") or 0) < 2:
            causes.append(v.invalid("series.count", "", "should be at least 2"))
        if not series.get("lastObservedTime"):
            causes.append(v.required("series.lastObservedTime"))
    if "eventTime" in obj and not obj.get("eventTime"):
        causes.append(v.required("eventTime"))
    if obj.get("type") not in ("Normal", "Warning"):
        causes.append(v.invalid("type", "", f"has invalid value: {obj.get('type') or ''}"))
    for key, internal in (
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ):
        if obj.get(key):
            causes.append(v.invalid(internal, "", "needs to be unset"))
    source = obj.get("deprecatedSource") or {}
    if source.get("component") or source.get("host"):
        causes.append(v.invalid("source", "", "needs to be unset"))
    return causes


def validate_event_update(new: Obj, old: Obj) -> list[Cause]:
    causes = c.meta_update(new, old)
    for key, internal in (
        ("regarding", "involvedObject"),
        ("reason", "reason"),
        ("note", "message"),
        ("type", "type"),
        ("action", "action"),
        ("reportingController", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("related", "related"),
        ("eventTime", "eventTime"),
    ):
        if new.get(key) != old.get(key):
            causes.append(v.immutable(internal, new.get(key)))
    return causes


def event_row(obj: Obj, now: float | None = None) -> list[Any]:
    """The core event printer over the events.k8s.io fields (wide cells included)."""
    first = obj.get("deprecatedFirstTimestamp") or obj.get("eventTime")
    first_seen = age(first, now)
    last_seen = (
        age(obj["deprecatedLastTimestamp"], now)
        if obj.get("deprecatedLastTimestamp")
        else first_seen
    )
    count = obj.get("deprecatedCount") or 0
    series = obj.get("series")
    if isinstance(series, dict):
        last_seen, count = age(series.get("lastObservedTime"), now), series.get("count", 0)
    elif count == 0:
        count = 1
    regarding = obj.get("regarding") or {}
    kind = str(regarding.get("kind", "")).lower()
    target = f"{kind}/{regarding['name']}" if regarding.get("name") else kind
    source = obj.get("deprecatedSource") or {}
    component = source.get("component") or obj.get("reportingController") or ""
    instance = source.get("host") or obj.get("reportingInstance") or ""
    where = (
        "<unknown>" if not component else (f"{component}, {instance}" if instance else component)
    )
    return [
        last_seen,
        obj.get("type", ""),
        obj.get("reason", ""),
        target,
        regarding.get("fieldPath", ""),
        where,
        (obj.get("note") or "").strip(),
        first_seen,
        count,
        get_path(obj, ("metadata", "name"), ""),
    ]


def _field(*path: str) -> Any:
    return lambda o: str(get_path(o, path, "") or "")


EVENT = Kind(
    group="events.k8s.io",
    version="v1",
    kind="Event",
    plural="events",
    namespaced=True,
    short_names=("ev",),
    validate=validate_event,
    validate_update=validate_event_update,
    columns=(
        ce.LAST_SEEN,
        Column(
            "Type",
            description="Type of this event (Normal, Warning), new types could be added in the future.",
        ),
        ce.REASON,
        ce.OBJECT,
        ce.SUBOBJECT,
        ce.SOURCE,
        ce.MESSAGE,
        ce.FIRST_SEEN,
        ce.COUNT,
        Column(
            "Name", priority=1, format="name", description="Name must be unique within a namespace."
        ),
    ),
    row=event_row,
    field_selectors={
        "regarding.kind": _field("regarding", "kind"),
        "regarding.namespace": _field("regarding", "namespace"),
        "regarding.name": _field("regarding", "name"),
        "regarding.uid": _field("regarding", "uid"),
        "regarding.apiVersion": _field("regarding", "apiVersion"),
        "regarding.resourceVersion": _field("regarding", "resourceVersion"),
        "regarding.fieldPath": _field("regarding", "fieldPath"),
        "reason": _field("reason"),
        "reportingController": _field("reportingController"),
        "type": _field("type"),
    },
    schema_name="io.k8s.api.events.v1.Event",
)

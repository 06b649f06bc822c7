"""core/v1 Event: what `kubectl get events` and `kubectl describe` read.

Validation is upstream's legacy event validation (`legacyValidateEvent`): an
event's namespace must match its involved object's, and an event that carries
`eventTime` (the newer style) must name its reporting controller, instance,
action and reason. The table is upstream's: LAST SEEN, TYPE, REASON, OBJECT
(`kind/name`), MESSAGE, and in wide form SUBOBJECT, SOURCE, FIRST SEEN, COUNT
(upstream also prints NAME last in the wide form; here the server prints NAME
first, as for every kind).
"""

from __future__ import annotations

from typing import Any

from nanokube.api.errors import Cause
from nanokube.api.kinds import Column, Kind
from nanokube.api.meta import age
from nanokube.api.validators import (
    dns1123_subdomain,
    invalid,
    name_is_path_segment,
    qualified_name,
    required,
    validate_object_meta,
    validate_object_meta_update,
)

Obj = dict[str, Any]

REPORTING_INSTANCE_LIMIT = 128
ACTION_LIMIT = 128
REASON_LIMIT = 128
NOTE_LIMIT = 1024

# The columns both Event APIs print alike (events.k8s.io/v1's `groups_events` too).
LAST_SEEN = Column(
    "Last Seen",
    description="The time at which the most recent occurrence of this event was recorded.",
)
REASON = Column(
    "Reason",
    description="This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
)
OBJECT = Column("Object", description="The object that this event is about.")
SUBOBJECT = Column(
    "Subobject",
    priority=1,
    description="If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
)
SOURCE = Column("Source", priority=1, description="The component reporting this event.")
MESSAGE = Column(
    "Message", description="A human-readable description of the status of this operation."
)
FIRST_SEEN = Column(
    "First Seen", priority=1, description="The time at which the event was first recorded."
)
COUNT = Column("Count", priority=1, description="The number of times this event has occurred.")


def validate_event(event: Obj) -> list[Cause]:
    causes = validate_object_meta(event, True, name_is_path_segment)
    namespace = (event.get("metadata") or {}).get("namespace") or ""
    involved = event.get("involvedObject") or {}
    involved_ns = involved.get("namespace") or ""
    mismatch = invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")
    if not event.get("eventTime"):
        if not involved_ns:
            if namespace not in ("", "default"):
                causes.append(mismatch)
        elif namespace != involved_ns:
            causes.append(mismatch)
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            causes.append(mismatch)
        controller = event.get("reportingComponent") or ""
        if not controller:
            causes.append(required("reportingComponent"))
        causes += [invalid("reportingComponent", controller, m) for m in qualified_name(controller)]
        for key, limit in (
            ("reportingInstance", REPORTING_INSTANCE_LIMIT),
            ("action", ACTION_LIMIT),
            ("reason", REASON_LIMIT),
        ):
            value = event.get(key) or ""
            if not value:
                causes.append(required(key))
            if len(value) > limit:
                causes.append(invalid(key, "", f"can have at most {limit} characters"))
        if len(event.get("message") or "") > NOTE_LIMIT:
            causes.append(invalid("message", "", f"can have at most {NOTE_LIMIT} characters"))
    causes += [invalid("namespace", namespace, m) for m in dns1123_subdomain(namespace)]
    return causes


def _source(event: Obj) -> str:
    """`formatEventSource`: component (or reporting controller), then the host."""
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    host = source.get("host") or event.get("reportingInstance") or ""
    return f"{component}, {host}" if host else component


def event_row(event: Obj) -> list[Any]:
    first = (
        age(event.get("firstTimestamp"))
        if event.get("firstTimestamp")
        else age(event.get("eventTime"))
    )
    last = age(event.get("lastTimestamp")) if event.get("lastTimestamp") else first
    count = event.get("count") or 0
    series = event.get("series")
    if series:
        last = age(series.get("lastObservedTime"))
        count = series.get("count") or 0
    elif not count:
        count = 1
    involved = event.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [
        last,
        event.get("type", ""),
        event.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        _source(event),
        (event.get("message") or "").strip(),
        first,
        count,
        event.get("metadata", {}).get("name", ""),
    ]


def _involved(key: str) -> Any:
    return lambda e: str((e.get("involvedObject") or {}).get(key) or "")


EVENT = Kind(
    group="",
    version="v1",
    kind="Event",
    plural="events",
    namespaced=True,
    short_names=("ev",),
    validate=validate_event,
    validate_update=lambda new, old: validate_object_meta_update(new, old) + validate_event(new),
    columns=(
        LAST_SEEN,
        Column(
            "Type",
            description="Type of this event (Normal, Warning), new types could be added in the future",
        ),
        REASON,
        OBJECT,
        SUBOBJECT,
        SOURCE,
        MESSAGE,
        FIRST_SEEN,
        COUNT,
        Column("Name", format="name", priority=1, description="The name of the event."),
    ),
    row=event_row,
    field_selectors={
        "involvedObject.kind": _involved("kind"),
        "involvedObject.namespace": _involved("namespace"),
        "involvedObject.name": _involved("name"),
        "involvedObject.uid": _involved("uid"),
        "involvedObject.apiVersion": _involved("apiVersion"),
        "involvedObject.resourceVersion": _involved("resourceVersion"),
        "involvedObject.fieldPath": _involved("fieldPath"),
        "reason": lambda e: e.get("reason") or "",
        "reportingComponent": lambda e: e.get("reportingComponent") or "",
        "source": lambda e: (
            (e.get("source") or {}).get("component") or e.get("reportingComponent") or ""
        ),
        "type": lambda e: e.get("type") or "",
    },
    schema_name="io.k8s.api.core.v1.Event",
)

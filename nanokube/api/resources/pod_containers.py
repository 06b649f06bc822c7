"""Container-level validation: what `validateContainers` and its helpers check upstream.

Split from `pod_validation` to keep modules small: names, images, ports (and
host-port conflicts), env, volume mounts, resources (requests ≤ limits), probes
and lifecycle handlers, and tolerations, each with upstream's field paths and
messages.
"""

from __future__ import annotations

from typing import Any

from nanokube.api.errors import Cause
from nanokube.api.validators import (
    canonical_quantity,
    dns1123_label,
    duplicate,
    env_var_name,
    forbidden,
    invalid,
    label_value,
    non_negative,
    not_found,
    not_supported,
    parse_quantity,
    port_name,
    port_num,
    qualified_name,
    quantity_causes,
    required,
)

Obj = dict[str, Any]

PROTOCOLS = ("SCTP", "TCP", "UDP")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


def enum_causes(path: str, value: str, valid: tuple[str, ...]) -> list[Cause]:
    if not value:
        return [required(path)]
    if value not in valid:
        return [not_supported(path, value, valid)]
    return []


def _volume_mounts(mounts: list[Obj], volumes: set[str], path: str) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, m in enumerate(mounts):
        mpath = f"{path}[{i}]"
        name = m.get("name", "")
        if not name:
            causes.append(required(f"{mpath}.name"))
        if name not in volumes:
            causes.append(not_found(f"{mpath}.name", name))
        mount_path = m.get("mountPath", "")
        if not mount_path:
            causes.append(required(f"{mpath}.mountPath"))
        if mount_path in seen:
            causes.append(invalid(f"{mpath}.mountPath", mount_path, "must be unique"))
        seen.add(mount_path)
        sub = m.get("subPath", "")
        if sub.startswith("/"):
            causes.append(invalid(f"{path}.subPath", sub, "must be a relative path"))
        elif ".." in sub.split("/"):
            causes.append(invalid(f"{path}.subPath", sub, "must not contain '..'"))
    return causes


# --- containers ---------------------------------------------------------------------


def validate_containers(
    containers: list[Obj], volumes: set[str], names: set[str], path: str
) -> list[Cause]:
    if not containers:
        return [required(path)]
    causes: list[Cause] = []
    for i, c in enumerate(containers):
        cpath = f"{path}[{i}]"
        causes += container_common_causes(c, volumes, cpath)
        if c.get("name") in names:
            causes.append(duplicate(f"{cpath}.name", c.get("name")))
        names.add(c.get("name", ""))
        causes += _probe_causes(c, cpath)
        if c.get("restartPolicy") is not None:
            causes.append(
                forbidden(f"{cpath}.restartPolicy", "may not be set for non-init containers")
            )
    return causes + _host_port_conflicts(containers, path)


def validate_init_containers(
    containers: list[Obj], volumes: set[str], names: set[str], path: str
) -> list[Cause]:
    causes: list[Cause] = []
    for i, c in enumerate(containers):
        cpath = f"{path}[{i}]"
        causes += container_common_causes(c, volumes, cpath)
        if c.get("name") in names:
            causes.append(duplicate(f"{cpath}.name", c.get("name")))
        names.add(c.get("name", ""))
        policy = c.get("restartPolicy")
        if policy is not None and policy != "Always":
            causes.append(not_supported(f"{cpath}.restartPolicy", policy, ("Always",)))
        if policy == "Always":
            causes += _probe_causes(c, cpath)
        else:
            for key in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(key) is not None:
                    causes.append(
                        forbidden(
                            f"{cpath}.{key}",
                            "may not be set for init containers without restartPolicy=Always",
                        )
                    )
    return causes + _host_port_conflicts(containers, path)


def container_common_causes(c: Obj, volumes: set[str], path: str) -> list[Cause]:
    causes: list[Cause] = []
    name = c.get("name", "")
    if not name:
        causes.append(required(f"{path}.name"))
    else:
        causes += [invalid(f"{path}.name", name, m) for m in dns1123_label(name)]
    if not c.get("image"):
        causes.append(required(f"{path}.image"))
    policy = c.get("terminationMessagePolicy", "")
    if not policy:
        causes.append(
            required(
                f"{path}.terminationMessagePolicy", "must be 'File' or 'FallbackToLogsOnError'"
            )
        )
    elif policy not in ("File", "FallbackToLogsOnError"):
        causes.append(
            not_supported(
                f"{path}.terminationMessagePolicy", policy, ("File", "FallbackToLogsOnError")
            )
        )
    causes += _container_ports(c.get("ports") or [], f"{path}.ports")
    causes += _env(c.get("env") or [], f"{path}.env")
    causes += _volume_mounts(c.get("volumeMounts") or [], volumes, f"{path}.volumeMounts")
    causes += enum_causes(f"{path}.imagePullPolicy", c.get("imagePullPolicy", ""), PULL_POLICIES)
    causes += resource_requirements_causes(c.get("resources") or {}, f"{path}.resources")
    return causes


def _container_ports(ports: list[Obj], path: str) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for i, p in enumerate(ports):
        ppath = f"{path}[{i}]"
        name = p.get("name", "")
        if name:
            msgs = port_name(name)
            if msgs:
                causes += [invalid(f"{ppath}.name", name, m) for m in msgs]
            elif name in names:
                causes.append(duplicate(f"{ppath}.name", name))
            names.add(name)
        container_port = p.get("containerPort", 0)
        if not container_port:
            causes.append(required(f"{ppath}.containerPort"))
        else:
            causes += [
                invalid(f"{ppath}.containerPort", container_port, m)
                for m in port_num(container_port)
            ]
        if p.get("hostPort"):
            causes += [
                invalid(f"{ppath}.hostPort", p["hostPort"], m) for m in port_num(p["hostPort"])
            ]
        causes += enum_causes(f"{ppath}.protocol", p.get("protocol", ""), PROTOCOLS)
    return causes


def _host_port_conflicts(containers: list[Obj], path: str) -> list[Cause]:
    seen: set[str] = set()
    causes: list[Cause] = []
    for i, c in enumerate(containers):
        for p in c.get("ports") or []:
            if not p.get("hostPort"):
                continue
            key = f"{p.get('protocol', 'TCP')}/{p.get('hostIP', '')}/{p['hostPort']}"
            if key in seen:
                causes.append(duplicate(f"{path}[{i}].ports.hostPort", key))
            seen.add(key)
    return causes


def _env(env: list[Obj], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, e in enumerate(env):
        epath = f"{path}[{i}]"
        name = e.get("name", "")
        if not name:
            causes.append(required(f"{epath}.name"))
        else:
            causes += [invalid(f"{epath}.name", name, m) for m in env_var_name(name)]
        source = e.get("valueFrom")
        if source is None:
            continue
        kinds = [
            k
            for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
            if source.get(k)
        ]
        if not kinds:
            causes.append(
                invalid(
                    f"{epath}.valueFrom",
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                )
            )
        elif len(kinds) > 1:
            causes.append(
                invalid(
                    f"{epath}.valueFrom", "", "may not have more than one field specified at a time"
                )
            )
        if e.get("value") and kinds:
            causes.append(
                invalid(f"{epath}.valueFrom", "", "may not be specified when `value` is not empty")
            )
    return causes


def resource_requirements_causes(resources: Obj, path: str) -> list[Cause]:
    """`ValidateResourceRequirements`: valid names and quantities; requests ≤ limits."""
    causes: list[Cause] = []
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    for kind, values in (("limits", limits), ("requests", requests)):
        for name, value in values.items():
            rpath = f"{path}.{kind}[{name}]"
            if (
                "/" not in name
                and name not in STANDARD_CONTAINER_RESOURCES
                and not name.startswith("hugepages-")
            ):
                causes.append(invalid(rpath, name, "must be a standard resource for containers"))
            causes += quantity_causes(rpath, value)
    for name, value in requests.items():
        if name not in limits:
            continue
        try:
            req, lim = parse_quantity(value), parse_quantity(limits[name])
        except ValueError:
            continue
        overcommit = "/" not in name or name.startswith("kubernetes.io/")
        overcommit = overcommit and not name.startswith("hugepages-")
        if req != lim and not overcommit:
            msg = f"must be equal to {name} limit of {canonical_quantity(limits[name])}"
            causes.append(invalid(f"{path}.requests", canonical_quantity(value), msg))
        elif req > lim:
            msg = (
                f"must be less than or equal to {name} limit of {canonical_quantity(limits[name])}"
            )
            causes.append(invalid(f"{path}.requests", canonical_quantity(value), msg))
    return causes


# --- probes -------------------------------------------------------------------------


def _probe_causes(c: Obj, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(key)
        if probe is None:
            continue
        ppath = f"{path}.{key}"
        causes += _handler(probe, ppath)
        for field in (
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ):
            causes += non_negative(f"{ppath}.{field}", probe.get(field))
        if key != "readinessProbe" and probe.get("successThreshold", 1) != 1:
            causes.append(
                invalid(f"{ppath}.successThreshold", probe["successThreshold"], "must be 1")
            )
    for hook in ("postStart", "preStop"):
        handler = (c.get("lifecycle") or {}).get(hook)
        if handler is not None:
            causes += _handler(
                handler, f"{path}.lifecycle.{hook}", allow=("exec", "httpGet", "tcpSocket", "sleep")
            )
    return causes


def _handler(handler: Obj, path: str, allow: tuple[str, ...] = _HANDLERS) -> list[Cause]:
    present = [k for k in allow if handler.get(k) is not None]
    if not present:
        return [required(path, "must specify a handler type")]
    if len(present) > 1:
        return [forbidden(f"{path}.{present[1]}", "may not specify more than 1 handler type")]
    kind, action = present[0], handler[present[0]]
    if kind == "exec" and not action.get("command"):
        return [required(f"{path}.exec.command")]
    if kind in ("httpGet", "tcpSocket"):
        causes = port_or_name_causes(action.get("port"), f"{path}.{kind}.port")
        if kind == "httpGet" and action.get("scheme", "HTTP") not in ("HTTP", "HTTPS"):
            causes.append(
                not_supported(f"{path}.httpGet.scheme", action["scheme"], ("HTTP", "HTTPS"))
            )
        return causes
    if kind == "grpc":
        return [
            invalid(f"{path}.grpc.port", action.get("port"), m)
            for m in port_num(action.get("port") or 0)
        ]
    return []


def port_or_name_causes(port: Any, path: str) -> list[Cause]:
    """`ValidatePortNumOrName`: an IntOrString naming a port number or a port name."""
    if isinstance(port, int):
        return [invalid(path, port, m) for m in port_num(port)]
    if isinstance(port, str) and port:
        return [invalid(path, port, m) for m in port_name(port)]
    return [required(path)]


# --- tolerations --------------------------------------------------------------------


def validate_tolerations(tolerations: list[Obj], path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, t in enumerate(tolerations):
        tpath = f"{path}[{i}]"
        key, op = t.get("key", ""), t.get("operator", "")
        if key:
            causes += [invalid(f"{tpath}.key", key, m) for m in qualified_name(key)]
        if not key and op != "Exists":
            causes.append(
                invalid(
                    f"{tpath}.operator",
                    op,
                    'operator must be Exists when `key` is empty, which means "match all values and all keys"',
                )
            )
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            causes.append(
                invalid(
                    f"{tpath}.effect",
                    t.get("effect", ""),
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
        if op in ("Equal", ""):
            msgs = label_value(t.get("value", ""))
            if msgs:
                causes.append(invalid(f"{tpath}.operator", t.get("value", ""), ";".join(msgs)))
        elif op == "Exists":
            if t.get("value"):
                causes.append(
                    invalid(
                        f"{tpath}.operator", t, "value must be empty when `operator` is 'Exists'"
                    )
                )
        else:
            causes.append(not_supported(f"{tpath}.operator", op, ("Equal", "Exists")))
        if t.get("effect") and t["effect"] not in TAINT_EFFECTS:
            causes.append(not_supported(f"{tpath}.effect", t["effect"], TAINT_EFFECTS))
    return causes

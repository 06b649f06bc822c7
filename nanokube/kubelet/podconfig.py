"""Pod spec → runtime configs: what the kubelet tells the runtime to run.

Pure functions over plain dicts, except `resolve_env`, which reads ConfigMaps and
Secrets through the client. The rules are upstream's (``kubelet_pods.go``
``makeEnvironmentVariables``, ``kuberuntime_container.go``
``generateContainerConfig``, ``network/dns/dns.go``):

- env: ``envFrom`` sources first (ConfigMap/Secret keys, with ``prefix``; keys that are
  not valid variable names are skipped), then ``env`` in order, later entries winning;
  ``$(VAR)`` in values refers to variables defined before it (``$$`` escapes), and in
  ``command``/``args`` to the whole environment; ``valueFrom`` covers
  ``configMapKeyRef``/``secretKeyRef`` (``optional`` honoured), ``fieldRef`` and
  ``resourceFieldRef`` (an unset limit reads as the node's allocatable).
  A missing object or key raises `ContainerConfigError`, which the worker reports as
  ``CreateContainerConfigError``.
- resources: cpu requests → shares, cpu limits → CFS quota, memory limit → bytes.
- DNS by ``dnsPolicy``: ``ClusterFirst`` (the default; ``Default`` for hostNetwork
  pods) uses the cluster DNS and the search path ``NS.svc.DOMAIN svc.DOMAIN DOMAIN``
  with ``ndots:5``; ``ClusterFirstWithHostNet`` does so for hostNetwork pods too;
  ``Default`` copies the node's ``resolv.conf``; ``None`` uses ``dnsConfig`` alone.
  ``dnsConfig`` entries are appended (options by name override).
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field
from typing import Any

from nanokube.api import errors
from nanokube.api.resources.core import CONFIG_MAP, SECRET
from nanokube.api.validators import parse_quantity
from nanokube.client.interface import Client
from nanokube.runtime import contract as rt

Obj = dict[str, Any]


# Container labels, as upstream's kuberuntime labels (``labels.go``).
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
ANNOTATION_RESTART_COUNT = "io.kubernetes.container.restartCount"
ANNOTATION_TERMINATION_GRACE = "io.kubernetes.pod.terminationGracePeriod"

HOST_RESOLV_CONF = "/etc/resolv.conf"
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_VAR_REF = re.compile(r"\$\$|\$\(([^)]*)\)")
_FIELD_INDEX = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ContainerConfigError(Exception):
    """The container cannot be configured (a missing ConfigMap key, ...): the message is
    what ``state.waiting.message`` of ``CreateContainerConfigError`` shows."""


@dataclass
class PodContext:
    """What env and resource references need beyond the pod itself."""

    pod_ip: str = ""
    pod_ips: list[str] = field(default_factory=list)
    host_ip: str = ""
    node_allocatable: dict[str, str] = field(default_factory=dict)


# --- sandbox ---------------------------------------------------------------------------


def sandbox_config(
    pod: Obj, cluster_dns: list[str], cluster_domain: str, attempt: int = 0
) -> rt.SandboxConfig:
    md, spec = pod["metadata"], pod.get("spec") or {}
    aliases: dict[str, list[str]] = {}
    for alias in spec.get("hostAliases") or []:
        aliases.setdefault(alias.get("ip", ""), []).extend(alias.get("hostnames") or [])
    return rt.SandboxConfig(
        uid=md["uid"],
        name=md["name"],
        namespace=md.get("namespace", "default"),
        hostname=spec.get("hostname") or "",
        host_network=bool(spec.get("hostNetwork")),
        port_mappings=port_mappings(pod),
        dns=dns_config(pod, cluster_dns, cluster_domain),
        host_aliases=aliases,
        labels={
            LABEL_POD_NAME: md["name"],
            LABEL_POD_NAMESPACE: md.get("namespace", "default"),
            LABEL_POD_UID: md["uid"],
        },
        attempt=attempt,
    )


def port_mappings(pod: Obj) -> list[rt.PortMapping]:
    spec = pod.get("spec") or {}
    out = []
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append(
                    rt.PortMapping(
                        container_port=int(p["containerPort"]),
                        host_port=int(p["hostPort"]),
                        protocol=p.get("protocol") or "TCP",
                        host_ip=p.get("hostIP") or "",
                    )
                )
    return out


def _host_resolv_conf(path: str = HOST_RESOLV_CONF) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _host_searches() -> list[str]:
    for line in _host_resolv_conf().splitlines():
        words = line.split()
        if words and words[0] in ("search", "domain"):
            return words[1:]
    return []


def dns_config(pod: Obj, cluster_dns: list[str], cluster_domain: str) -> rt.DNSConfig | None:
    """The pod's resolv.conf as upstream's ``GetPodDNS``; None = the node's own file."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    extra = spec.get("dnsConfig") or {}
    if policy == "ClusterFirst" and host_network:
        policy = "Default"
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    if policy == "ClusterFirst" and not cluster_dns:
        policy = "Default"  # no cluster DNS configured: upstream falls back likewise
    if policy == "Default" and not extra:
        return None
    dns = rt.DNSConfig()
    if policy == "ClusterFirst":
        ns = pod["metadata"].get("namespace", "default")
        dns.nameservers = list(cluster_dns)
        dns.searches = [
            f"{ns}.svc.{cluster_domain}",
            f"svc.{cluster_domain}",
            cluster_domain,
            *_host_searches(),
        ]
        dns.options = ["ndots:5"]
    elif policy == "Default":
        for line in _host_resolv_conf().splitlines():
            words = line.split()
            if words and words[0] == "nameserver":
                dns.nameservers += words[1:2]
            elif words and words[0] in ("search", "domain"):
                dns.searches = words[1:]
            elif words and words[0] == "options":
                dns.options += words[1:]
    dns.nameservers = _dedup(dns.nameservers + list(extra.get("nameservers") or []))[:3]
    dns.searches = _dedup(dns.searches + list(extra.get("searches") or []))[:32]
    options: dict[str, str] = {}
    for opt in dns.options:
        name, _, value = opt.partition(":")
        options[name] = opt
    for opt in extra.get("options") or []:
        name = opt.get("name", "")
        options[name] = f"{name}:{opt['value']}" if opt.get("value") is not None else name
    dns.options = list(options.values())
    return dns


def _dedup(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --- environment -----------------------------------------------------------------------


def expand(text: str, env: dict[str, str]) -> str:
    """``$(VAR)`` → its value when defined (left as is otherwise), ``$$`` → ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, text)


async def _source(client: Client, kind: Any, name: str, namespace: str) -> Obj | None:
    try:
        obj: Obj = await client.get(kind, name, namespace)
    except errors.NotFound:
        return None
    return obj


def _data(obj: Obj) -> dict[str, str]:
    if obj.get("kind") == "Secret":
        return {
            k: base64.b64decode(v).decode("utf-8", "replace")
            for k, v in (obj.get("data") or {}).items()
        } | dict(obj.get("stringData") or {})
    return dict(obj.get("data") or {})


async def resolve_env(client: Client, pod: Obj, container: Obj, ctx: PodContext) -> dict[str, str]:
    """The container's environment (without the image's), in definition order."""
    ns = pod["metadata"].get("namespace", "default")
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        ref, kind, label = source.get("configMapRef"), CONFIG_MAP, "configmap"
        if ref is None:
            ref, kind, label = source.get("secretRef"), SECRET, "secret"
        if ref is None:
            continue
        obj = await _source(client, kind, ref.get("name", ""), ns)
        if obj is None:
            if ref.get("optional"):
                continue
            raise ContainerConfigError(f'{label} "{ref.get("name", "")}" not found')
        for key, value in _data(obj).items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = value
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value") or "", env)
            continue
        resolved = await _value_from(client, pod, container, var["valueFrom"], ctx)
        if resolved is not None:
            env[name] = resolved
    return env


async def _value_from(
    client: Client, pod: Obj, container: Obj, source: Obj, ctx: PodContext
) -> str | None:
    ns = pod["metadata"].get("namespace", "default")
    for key, kind, label in (
        ("configMapKeyRef", CONFIG_MAP, "ConfigMap"),
        ("secretKeyRef", SECRET, "Secret"),
    ):
        ref = source.get(key)
        if ref is None:
            continue
        name = ref.get("name", "")
        obj = await _source(client, kind, name, ns)
        if obj is None:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f'{label.lower()} "{name}" not found')
        data = _data(obj)
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f"couldn't find key {ref['key']} in {label} {ns}/{name}")
        return data[ref["key"]]
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"], ctx)
    if "resourceFieldRef" in source:
        return resource_value(pod, container, source["resourceFieldRef"], ctx)
    return None


def field_value(pod: Obj, path: str, ctx: PodContext) -> str:
    """A ``fieldRef`` (downward API) value."""
    md, spec = pod["metadata"], pod.get("spec") or {}
    simple = {
        "metadata.name": md.get("name", ""),
        "metadata.namespace": md.get("namespace", ""),
        "metadata.uid": md.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": ctx.host_ip,
        "status.hostIPs": ctx.host_ip,
        "status.podIP": ctx.pod_ip,
        "status.podIPs": ",".join(ctx.pod_ips or ([ctx.pod_ip] if ctx.pod_ip else [])),
    }
    if path in simple:
        return simple[path]
    m = _FIELD_INDEX.match(path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ContainerConfigError(f"unsupported fieldPath: {path}")


def resource_value(pod: Obj, container: Obj, ref: Obj, ctx: PodContext) -> str:
    """A ``resourceFieldRef`` value: ceil(quantity / divisor), limits default to the
    node's allocatable."""
    name = ref.get("containerName")
    if name:
        spec = pod.get("spec") or {}
        found = [
            c
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
            if c.get("name") == name
        ]
        if not found:
            raise ContainerConfigError(f"container {name} not found for resourceFieldRef")
        container = found[0]
    section, _, resource = ref["resource"].partition(".")
    values = (container.get("resources") or {}).get(section) or {}
    raw = values.get(resource)
    if raw is None and section == "requests":
        raw = ((container.get("resources") or {}).get("limits") or {}).get(resource)
    if raw is None:
        raw = ctx.node_allocatable.get(resource, "0")
    quantity = parse_quantity(str(raw))
    divisor = parse_quantity(str(ref.get("divisor") or "1")) or 1
    return str(math.ceil(quantity / divisor))


# --- containers ------------------------------------------------------------------------


def resources(container: Obj) -> rt.Resources:
    res = container.get("resources") or {}
    requests, limits = res.get("requests") or {}, res.get("limits") or {}

    def milli(value: Any) -> int | None:
        return None if value is None else math.ceil(parse_quantity(str(value)) * 1000)

    memory = limits.get("memory")
    return rt.resources_from_k8s(
        milli(requests.get("cpu")),
        milli(limits.get("cpu")),
        None if memory is None else int(parse_quantity(str(memory))),
    )


def security(pod: Obj, container: Obj) -> rt.SecurityContext:
    """The container's securityContext over the pod's (the fields both carry)."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return sc.get(key, pod_sc.get(key))

    caps = sc.get("capabilities") or {}
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    groups = list(pod_sc.get("supplementalGroups") or [])
    if pod_sc.get("fsGroup") is not None:
        groups.append(int(pod_sc["fsGroup"]))
    return rt.SecurityContext(
        run_as_user=pick("runAsUser"),
        run_as_group=pick("runAsGroup"),
        supplemental_groups=groups,
        read_only_root_filesystem=bool(sc.get("readOnlyRootFilesystem")),
        privileged=bool(sc.get("privileged")),
        capabilities_add=list(caps.get("add") or []),
        capabilities_drop=list(caps.get("drop") or []),
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
        seccomp="RuntimeDefault" if seccomp in ("RuntimeDefault", "Localhost") else "Unconfined",
    )


def mounts(
    container: Obj, volume_paths: dict[str, str], env: dict[str, str] | None = None
) -> list[rt.Mount]:
    """``volumeMounts`` over the host paths the volume manager prepared (``subPath``, or
    ``subPathExpr`` expanded with the container's env, joins below the volume, as
    upstream; missing volumes are a config error)."""
    out = []
    for vm in container.get("volumeMounts") or []:
        name = vm["name"]
        if name not in volume_paths:
            raise ContainerConfigError(f'volume "{name}" is not prepared on this node')
        host = volume_paths[name]
        sub = vm.get("subPath") or expand(vm.get("subPathExpr") or "", env or {})
        if sub:
            if sub.startswith("/") or ".." in sub.split("/"):
                raise ContainerConfigError(f"invalid subPath {sub!r}")
            host = f"{host.rstrip('/')}/{sub}"
        propagation = {"HostToContainer": "rslave", "Bidirectional": "rshared"}.get(
            vm.get("mountPropagation") or "", "private"
        )
        out.append(
            rt.Mount(
                host_path=host,
                container_path=vm["mountPath"],
                readonly=bool(vm.get("readOnly")),
                propagation=propagation,  # type: ignore[arg-type]
            )
        )
    return out


def container_config(
    pod: Obj,
    container: Obj,
    layers: list[str],
    image: rt.ImageConfig,
    env: dict[str, str],
    volume_paths: dict[str, str],
    attempt: int,
) -> rt.ContainerConfig:
    md = pod["metadata"]
    full_env = rt.merge_env(image, env)
    command = [expand(a, full_env) for a in container.get("command") or []]
    args = [expand(a, full_env) for a in container.get("args") or []]
    argv = rt.resolve_command(image, command, args)
    if not argv:
        raise ContainerConfigError("no command specified")
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
    return rt.ContainerConfig(
        name=container["name"],
        layers=layers,
        command=argv,
        image=container.get("image", ""),
        env=full_env,
        working_dir=container.get("workingDir") or image.working_dir,
        user=image.user,
        mounts=mounts(container, volume_paths, env),
        resources=resources(container),
        security=security(pod, container),
        tty=bool(container.get("tty")),
        stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")),
        attempt=attempt,
        labels={
            LABEL_POD_NAME: md["name"],
            LABEL_POD_NAMESPACE: md.get("namespace", "default"),
            LABEL_POD_UID: md["uid"],
            LABEL_CONTAINER_NAME: container["name"],
        },
        annotations={
            ANNOTATION_RESTART_COUNT: str(attempt),
            ANNOTATION_TERMINATION_GRACE: str(grace),
        },
    )

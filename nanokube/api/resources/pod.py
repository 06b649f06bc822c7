"""Pod defaulting and QoS, shared with every kind that carries a pod template.

Upstream splits defaulting in two (`pkg/apis/core/v1/defaults.go`): the PodSpec
defaults (`SetDefaults_PodSpec`, containers, probes, volumes) run on every pod
spec, templates included, while a few (`SetDefaults_Pod`: requests copied from
limits, `enableServiceLinks`, host-network ports) run on Pods only. Hence
`default_pod_spec` for templates and `default_pod` for the Pod kind.

Validation lives in `pod_validation` and tables in `pod_printing`; the public
entry points of all three are re-exported here, since apps and batch kinds use
them for their templates.
"""

from __future__ import annotations

from typing import Any

from nanokube.api.resources.pod_validation import (
    validate_pod,
    validate_pod_spec,
    validate_pod_template,
    validate_pod_update,
)
from nanokube.api.validators import parse_quantity

Obj = dict[str, Any]

__all__ = [
    "default_pod",
    "default_pod_spec",
    "pod_qos_class",
    "prepare_pod_create",
    "validate_pod",
    "validate_pod_spec",
    "validate_pod_template",
    "validate_pod_update",
]

DEFAULT_MODE = 0o644  # 420: secret, configMap, downwardAPI and projected volumes
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def default_pod_spec(spec: Obj) -> None:
    """`SetDefaults_PodSpec` and what it reaches (containers, probes, volumes), in place."""
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    spec.setdefault("schedulerName", "default-scheduler")
    for key in CONTAINER_LISTS:
        for container in spec.get(key) or []:
            _default_container(container)
    for volume in spec.get("volumes") or []:
        _default_volume(volume)


def default_pod(pod: Obj) -> None:
    """The Pod kind's defaults: the spec's, then `SetDefaults_Pod`'s pod-only ones."""
    spec = pod.setdefault("spec", {})
    default_pod_spec(spec)
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            _requests_from_limits(container)
            if spec.get("hostNetwork"):
                for port in container.get("ports") or []:
                    if not port.get("hostPort"):
                        port["hostPort"] = port.get("containerPort")
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True


def _default_container(c: Obj) -> None:
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = (
            "Always" if _image_tag(c.get("image") or "") == "latest" else "IfNotPresent"
        )
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if c.get(probe):
            _default_probe(c[probe])
    for hook in ("postStart", "preStop"):
        handler = (c.get("lifecycle") or {}).get(hook)
        if handler and handler.get("httpGet"):
            _default_http_get(handler["httpGet"])
    for env in c.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")


def _image_tag(image: str) -> str:
    """The tag `ParseImageName` finds: "latest" when there is neither tag nor digest."""
    if "@" in image:
        return ""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def _default_probe(probe: Obj) -> None:
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if probe.get("httpGet"):
        _default_http_get(probe["httpGet"])


def _default_http_get(action: Obj) -> None:
    action.setdefault("path", "/")
    action.setdefault("scheme", "HTTP")


_VOLUME_SOURCES = (
    "hostPath emptyDir gcePersistentDisk awsElasticBlockStore gitRepo secret nfs iscsi "
    "glusterfs persistentVolumeClaim rbd flexVolume cinder cephfs flocker downwardAPI fc "
    "azureFile configMap vsphereVolume quobyte azureDisk photonPersistentDisk projected "
    "portworxVolume scaleIO storageos csi ephemeral image"
).split()


def _default_volume(volume: Obj) -> None:
    """`SetDefaults_Volume`: a volume with no source is an emptyDir; modes default to 0644."""
    if not any(volume.get(src) is not None for src in _VOLUME_SOURCES):
        volume["emptyDir"] = {}
    for src in ("secret", "configMap", "downwardAPI", "projected"):
        if volume.get(src) is not None and volume[src].get("defaultMode") is None:
            volume[src]["defaultMode"] = DEFAULT_MODE
    if volume.get("hostPath") is not None:
        volume["hostPath"].setdefault("type", "")
    for item in (volume.get("downwardAPI") or {}).get("items") or []:
        if item.get("fieldRef") is not None:
            item["fieldRef"].setdefault("apiVersion", "v1")
    for source in (volume.get("projected") or {}).get("sources") or []:
        token = source.get("serviceAccountToken")
        if token is not None:
            token.setdefault("expirationSeconds", 3600)
        for item in (source.get("downwardAPI") or {}).get("items") or []:
            if item.get("fieldRef") is not None:
                item["fieldRef"].setdefault("apiVersion", "v1")


def _requests_from_limits(c: Obj) -> None:
    resources = c.get("resources") or {}
    limits = resources.get("limits") or {}
    if not limits:
        return
    requests = resources.setdefault("requests", {})
    for name, value in limits.items():
        requests.setdefault(name, value)
    c["resources"] = resources


# --- QoS (pkg/apis/core/helper/qos) --------------------------------------------------

_QOS_RESOURCES = ("cpu", "memory")


def pod_qos_class(spec: Obj) -> str:
    """Guaranteed when every container limits cpu and memory at its requests; BestEffort
    when nothing is requested or limited; Burstable otherwise."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    guaranteed = True
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        resources = c.get("resources") or {}
        for name, value in (resources.get("requests") or {}).items():
            if name in _QOS_RESOURCES and _quantity(value) != 0:
                requests[name] = requests.get(name, 0) + _quantity(value)
        found = set()
        for name, value in (resources.get("limits") or {}).items():
            if name in _QOS_RESOURCES and _quantity(value) != 0:
                found.add(name)
                limits[name] = limits.get(name, 0) + _quantity(value)
        if not found.issuperset(_QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(limits.get(n) == q for n, q in requests.items()):
        if len(requests) == len(limits):
            return "Guaranteed"
    return "Burstable"


def _quantity(value: Any) -> Any:
    try:
        return parse_quantity(value)
    except ValueError:
        return 0


def prepare_pod_create(pod: Obj) -> None:
    """The pod strategy's `PrepareForCreate`: a new pod is Pending, with its QoS class."""
    pod["status"] = {"phase": "Pending", "qosClass": pod_qos_class(pod.get("spec") or {})}

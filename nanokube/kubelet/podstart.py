"""Starting one container of a pod: back-off, image, config, create, start, postStart.

The steps and their failure reports are upstream's ``startContainer`` and
``doBackOff`` (``kuberuntime_container.go``, ``kuberuntime_manager.go``) and its image
manager (``images/image_manager.go``). Each failure leaves a waiting reason for the
status and an event, and returns False; the pod worker retries on its next sync (a
timer when a back-off is running):

- CrashLoopBackOff: the previous instance exited and its back-off has not expired
  (event ``BackOff`` "Back-off restarting failed container x in pod y_ns(uid)");
- image: ``imagePullPolicy`` Never/IfNotPresent/Always; events Pulling, Pulled
  ("already present on machine" or "Successfully pulled ..."), Failed; waiting
  ErrImagePull, then ImagePullBackOff while the pull back-off runs;
- CreateContainerConfigError: env references a missing ConfigMap/Secret/key;
- CreateContainerError / RunContainerError: the runtime refused;
- postStart failure: the new instance is killed (``FailedPostStartHook``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nanokube.kubelet import lifecycle, podconfig, termination
from nanokube.kubelet.probes import ProbeTarget
from nanokube.kubelet.services import ImagePullError, ResolvedImage
from nanokube.runtime.contract import ContainerStatus, RuntimeFailure

if TYPE_CHECKING:
    from nanokube.kubelet.podworker import PodWorker

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass
class StartResult:
    started: bool
    container_id: str = ""
    retry_at: float | None = None
    """When a back-off ends: the worker syncs again then."""
    extra: dict[str, Any] = field(default_factory=dict)


def pod_ref(pod: Obj) -> str:
    md = pod["metadata"]
    return f"{md['name']}_{md.get('namespace', '')}({md['uid']})"


async def ensure_image(w: PodWorker, container: Obj) -> tuple[ResolvedImage | None, float | None]:
    """Apply the pull policy; (image, None) or (None, when to retry)."""
    ref = container.get("image", "")
    name = container["name"]
    policy = container.get("imagePullPolicy") or "IfNotPresent"
    present = await w.deps.images.present(ref)
    if policy == "Never" and not present:
        msg = f'Container image "{ref}" is not present with pull policy of Never'
        w.waiting[name] = ("ErrImageNeverPull", msg)
        w.event("Warning", "ErrImageNeverPull", msg)
        return None, None
    if present and policy != "Always":
        w.event("Normal", "Pulled", f'Container image "{ref}" already present on machine')
    else:
        key = f"{w.uid}/image/{ref}"
        backoff = w.deps.image_backoff
        last_failure = w.pull_failures.get(ref)
        if last_failure is not None:
            remaining = backoff.remaining(key, last_failure)
            if remaining > 0:
                w.waiting[name] = ("ImagePullBackOff", f'Back-off pulling image "{ref}"')
                w.event("Normal", "BackOff", f'Back-off pulling image "{ref}"')
                return None, time.time() + remaining
        w.event("Normal", "Pulling", f'Pulling image "{ref}"')
        began = time.monotonic()
        try:
            await w.deps.images.pull(ref, await w.pull_secrets())
        except ImagePullError as e:
            now = time.time()
            w.pull_failures[ref] = now
            delay = backoff.next(key, now)
            w.waiting[name] = (e.reason, str(e))
            w.event("Warning", "Failed", f'Failed to pull image "{ref}": {e}')
            w.event("Warning", "Failed", f"Error: {e.reason}")
            # ErrImagePull stays for the first half of the back-off; the sync at its
            # middle shows ImagePullBackOff until the next pull (upstream's pod worker
            # also re-syncs a failed pod within the image back-off).
            return None, now + delay / 2
        w.pull_failures.pop(ref, None)
        took = time.monotonic() - began
        w.event(
            "Normal",
            "Pulled",
            f'Successfully pulled image "{ref}" in {took:.3f}s ({took:.3f}s including waiting)',
        )
    try:
        image = await w.deps.images.resolve(ref)
    except ImagePullError as e:
        w.waiting[name] = (e.reason, str(e))
        return None, time.time() + w.deps.image_backoff.base
    w.image_ids[name] = image.image_id
    return image, None


def crash_backoff(w: PodWorker, container: Obj, previous: ContainerStatus | None) -> float | None:
    """When the restart may happen, if the previous instance's back-off still runs."""
    if previous is None or previous.state not in ("exited", "unknown"):
        return None
    name = container["name"]
    key = f"{w.uid}/{name}"
    finished = previous.finished_at or time.time()
    backoff = w.deps.backoff
    remaining = backoff.remaining(key, finished)
    if remaining > 0:
        delay = int(backoff.delay(key))
        w.waiting[name] = (
            "CrashLoopBackOff",
            f"back-off {delay}s restarting failed container={name} pod={pod_ref(w.pod)}",
        )
        w.event(
            "Warning",
            "BackOff",
            f"Back-off restarting failed container {name} in pod {pod_ref(w.pod)}",
        )
        return time.time() + remaining
    backoff.next(key, finished)
    return None


async def start(w: PodWorker, container: Obj, previous: ContainerStatus | None) -> StartResult:
    """Start a new instance of `container` (replacing `previous`, if any)."""
    name = container["name"]
    retry = crash_backoff(w, container, previous)
    if retry is not None:
        return StartResult(False, retry_at=retry)
    image, retry = await ensure_image(w, container)
    if image is None:
        return StartResult(False, retry_at=retry)
    assert w.sandbox is not None
    attempt = previous.attempt + 1 if previous is not None else 0
    ctx = podconfig.PodContext(
        pod_ip=w.pod_ip,
        pod_ips=[w.pod_ip] if w.pod_ip else [],
        host_ip=w.deps.host_ip,
        node_allocatable=w.deps.node_allocatable,
    )
    try:
        env = await podconfig.resolve_env(w.deps.client, w.pod, container, ctx)
        config = podconfig.container_config(
            w.pod, container, image.layers, image.config, env, w.volume_paths or {}, attempt
        )
        message_file = termination.prepare(w.deps.root_dir, w.uid, container, attempt)
        if message_file is not None:
            config.mounts.append(message_file)
    except podconfig.ContainerConfigError as e:
        w.waiting[name] = ("CreateContainerConfigError", str(e))
        w.event("Warning", "Failed", f"Error: {e}")
        return StartResult(False, retry_at=time.time() + w.deps.config_retry)
    try:
        cid = await w.deps.runtime.create_container(w.sandbox.id, config)
    except RuntimeFailure as e:
        w.waiting[name] = ("CreateContainerError", str(e))
        w.event("Warning", "Failed", f"Error: {e}")
        return StartResult(False, retry_at=time.time() + w.deps.config_retry)
    w.event("Normal", "Created", f"Created container {name}")
    try:
        await w.deps.runtime.start_container(cid)
    except RuntimeFailure as e:
        w.waiting[name] = ("RunContainerError", str(e))
        w.event("Warning", "Failed", f"Error: {e}")
        return StartResult(False, container_id=cid)
    w.waiting.pop(name, None)
    w.event("Normal", "Started", f"Started container {name}")
    status = await w.deps.runtime.container_status(cid)
    grace = float((w.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
    if not await lifecycle.post_start(w.deps.runtime, cid, container, w.pod_ip, grace, w.event):
        await lifecycle.stop_container(
            w.deps.runtime,
            lifecycle.Running(cid, container),
            w.pod_ip,
            grace,
            w.event,
            f"FailedPostStartHook: stopping container {name}",
        )
        return StartResult(False, container_id=cid)
    w.probes.add(ProbeTarget(cid, container, status.started_at or time.time(), w.pod_ip))
    log.info("container started pod=%s container=%s id=%s", pod_ref(w.pod), name, cid)
    return StartResult(True, container_id=cid)

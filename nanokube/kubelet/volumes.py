"""The kubelet's volume manager: a pod's volumes as host paths its containers bind-mount.

Upstream's `pkg/volume` plugins, cut down to the sources a single-host or
small cluster uses. Each pod's volumes live under

    DATA_DIR/agent/pods/<uid>/volumes/<plugin>/<name>

with upstream's plugin directory names (`kubernetes.io~empty-dir`,
`kubernetes.io~configmap`, `kubernetes.io~secret`, `kubernetes.io~downward-api`,
`kubernetes.io~projected`). hostPath and persistentVolumeClaim volumes are
not copied there: their host path is used directly.

- emptyDir: a directory (0777); `medium: Memory` mounts a tmpfs whose size is
  `sizeLimit` (else the pod's memory limit when every container has one).
- hostPath: the path, after the `type` check upstream makes (DirectoryOrCreate,
  Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice).
- configMap (on disk), secret, downwardAPI and projected (each on its own
  tmpfs, as upstream, so secrets never reach a disk): files written by
  `volumes_atomic` (the `..data` symlink swap), so `refresh` can update them
  under running containers atomically.
- persistentVolumeClaim: the bound PV's `hostPath.path` or `local.path`,
  created (0777) if missing, as the local-path provisioner expects.

Setup is idempotent (the pod worker calls it on every sync); `mounts` turns a
container's `volumeMounts` into runtime `Mount`s (read-only rules, `subPath`
and `subPathExpr` resolved and kept inside the volume); `teardown` unmounts
and deletes a pod's directory, and `cleanup_orphans` does it at start for
pods a crashed agent left behind. configMap/secret/downwardAPI/projected
volumes are refreshed by `run_refresh` every `refresh_seconds` (upstream
resyncs about once a minute; objects referenced by several pods are fetched
once per round).

Projected `serviceAccountToken` sources ask the API for a bound token
(`serviceaccounts/NAME/token`); while the server does not serve that
subresource, the file holds an unsigned placeholder JWT (see
`volumes_sources.placeholder_token`) so pods still start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanokube.api import errors
from nanokube.api.resources.core import CONFIG_MAP, SECRET, SERVICE_ACCOUNT
from nanokube.api.resources.core_storage import PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM
from nanokube.api.validators import QuantityError, parse_quantity
from nanokube.client.interface import Client
from nanokube.kubelet import volumes_atomic, volumes_sources
from nanokube.kubelet.volumes_atomic import FileProjection, Payload
from nanokube.runtime.contract import Mount
from nanokube.runtime.oci import linux

log = logging.getLogger(__name__)

Obj = dict[str, Any]

EMPTY_DIR = "kubernetes.io~empty-dir"
CONFIG_MAP_PLUGIN = "kubernetes.io~configmap"
SECRET_PLUGIN = "kubernetes.io~secret"
DOWNWARD_API = "kubernetes.io~downward-api"
PROJECTED = "kubernetes.io~projected"
HOST_PATH = "kubernetes.io~host-path"
PVC = "kubernetes.io~pvc"
# Sources whose files the API holds: written atomically, refreshed, mounted read-only.
PROJECTED_KINDS = ("configMap", "secret", "downwardAPI", "projected")
_PLUGIN_OF = {
    "emptyDir": EMPTY_DIR,
    "configMap": CONFIG_MAP_PLUGIN,
    "secret": SECRET_PLUGIN,
    "downwardAPI": DOWNWARD_API,
    "projected": PROJECTED,
    "hostPath": HOST_PATH,
    "persistentVolumeClaim": PVC,
}
_PROPAGATION = {"HostToContainer": "rslave", "Bidirectional": "rshared"}
TOKEN_EXPIRATION = 3607  # upstream's default for the kube-api-access token
_ENV_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class VolumeError(Exception):
    """A volume cannot be set up; the message is meant for a FailedMount event."""


@dataclass
class VolumePath:
    """A prepared volume: where it is on the host, and whether it is read-only by nature."""

    name: str
    plugin: str
    host_path: str
    readonly: bool = False


@dataclass
class _Token:
    token: str
    issued: float
    expires: float


@dataclass
class _Round:
    """Objects fetched during one setup or refresh, so each is read once."""

    objects: dict[tuple[str, str, str], Obj | None] = field(default_factory=dict)


class VolumeManager:
    """Prepares, refreshes and removes the volumes of the pods of one node."""

    def __init__(
        self,
        client: Client,
        pods_dir: str | Path,
        *,
        allocatable: Callable[[], dict[str, str]] | None = None,
        refresh_seconds: float = 60.0,
        use_tmpfs: bool | None = None,
    ) -> None:
        self.client = client
        # DATA_DIR/agent/pods: one directory per pod UID.
        self.pods_dir = Path(pods_dir)
        # The node's allocatable, for resourceFieldRef limits a container does not set.
        self.allocatable = allocatable or (lambda: {})
        self.refresh_seconds = refresh_seconds
        # tmpfs needs root; without it (tests, development) the files stay on disk.
        self.use_tmpfs = os.geteuid() == 0 if use_tmpfs is None else use_tmpfs
        # Issued ServiceAccount tokens by (pod uid, volume, path): renewed at 80% of life.
        self._tokens: dict[tuple[str, str, str], _Token] = {}

    # -- paths ---------------------------------------------------------------------

    def pod_dir(self, uid: str) -> Path:
        return self.pods_dir / uid

    def volume_dir(self, uid: str, plugin: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / plugin / name

    # -- setup ---------------------------------------------------------------------

    async def setup(self, pod: Obj) -> dict[str, VolumePath]:
        """Prepare every volume of `pod`; idempotent. Raises `VolumeError`."""
        uid = _uid(pod)
        rnd = _Round()
        out: dict[str, VolumePath] = {}
        for volume in (pod.get("spec") or {}).get("volumes") or ():
            name = volume.get("name", "")
            try:
                out[name] = await self._setup_one(pod, uid, volume, rnd)
            except (OSError, volumes_sources.SourceError, volumes_atomic.PayloadError) as e:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}": {e}') from e
        return out

    async def _setup_one(self, pod: Obj, uid: str, volume: Obj, rnd: _Round) -> VolumePath:
        name = volume.get("name", "")
        kind = next((k for k in _PLUGIN_OF if volume.get(k) is not None), None)
        if kind is None:
            other = next((k for k in volume if k != "name"), "none")
            raise VolumeError(f'volume "{name}": source {other} is not supported by nanokube')
        plugin = _PLUGIN_OF[kind]
        source = volume[kind]
        if kind == "hostPath":
            return VolumePath(name, plugin, check_host_path(source))
        if kind == "persistentVolumeClaim":
            path = await self._claim_path(pod, source, rnd)
            return VolumePath(name, plugin, path, bool(source.get("readOnly")))
        target = self.volume_dir(uid, plugin, name)
        if kind == "emptyDir":
            self._empty_dir(pod, target, source)
            return VolumePath(name, plugin, str(target))
        if kind != "configMap":
            self._tmpfs(target, None)
        await self._project(pod, uid, kind, volume, target, rnd)
        return VolumePath(name, plugin, str(target), readonly=True)

    def _empty_dir(self, pod: Obj, target: Path, source: Obj) -> None:
        if source.get("medium") == "Memory":
            self._tmpfs(target, memory_size(pod, source))
        else:
            target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, 0o777)
        gid = _fs_group(pod)
        if gid is not None:
            os.chown(target, -1, gid)
            os.chmod(target, 0o2777)

    def _tmpfs(self, target: Path, size: int | None) -> None:
        target.mkdir(parents=True, exist_ok=True)
        if not self.use_tmpfs or linux.is_mountpoint(str(target)):
            return
        data = "mode=0755" + (f",size={size}" if size else "")
        linux.mount("tmpfs", str(target), "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, data)

    async def _project(
        self, pod: Obj, uid: str, kind: str, volume: Obj, target: Path, rnd: _Round
    ) -> bool:
        payload = await self._payload(pod, uid, kind, volume, rnd)
        return volumes_atomic.write(str(target), payload, _fs_group(pod))

    async def _payload(self, pod: Obj, uid: str, kind: str, volume: Obj, rnd: _Round) -> Payload:
        source = volume[kind]
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        if kind == "configMap":
            cm = await self._object(CONFIG_MAP, namespace, source.get("name", ""), rnd)
            return volumes_sources.config_map_payload(source, cm)
        if kind == "secret":
            secret = await self._object(SECRET, namespace, source.get("secretName", ""), rnd)
            return volumes_sources.secret_payload(source, secret)
        if kind == "downwardAPI":
            return volumes_sources.downward_api_payload(source, pod, self.allocatable())
        return await self._projected(pod, uid, volume.get("name", ""), source, rnd)

    async def _projected(
        self, pod: Obj, uid: str, volume_name: str, source: Obj, rnd: _Round
    ) -> Payload:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        mode = source.get("defaultMode")
        out: Payload = {}
        for item in source.get("sources") or ():
            part: Payload
            if item.get("configMap") is not None:
                src = item["configMap"]
                cm = await self._object(CONFIG_MAP, namespace, src.get("name", ""), rnd)
                part = volumes_sources.config_map_payload(src, cm, mode)
            elif item.get("secret") is not None:
                src = item["secret"]
                secret = await self._object(SECRET, namespace, src.get("name", ""), rnd)
                part = volumes_sources.secret_payload(src, secret, mode)
            elif item.get("downwardAPI") is not None:
                part = volumes_sources.downward_api_payload(
                    item["downwardAPI"], pod, self.allocatable(), mode
                )
            elif item.get("serviceAccountToken") is not None:
                src = item["serviceAccountToken"]
                token = await self._token(pod, uid, volume_name, src)
                file_mode = int(mode if mode is not None else volumes_sources.DEFAULT_MODE)
                part = {src.get("path", "token"): FileProjection(token.encode(), file_mode)}
            else:
                raise VolumeError(f"projected source {sorted(item)} is not supported")
            out.update(part)
        return out

    async def _object(self, kind: Any, namespace: str, name: str, rnd: _Round) -> Obj | None:
        key = (kind.plural, namespace, name)
        if key not in rnd.objects:
            try:
                rnd.objects[key] = await self.client.get(kind, name, namespace)
            except errors.NotFound:
                rnd.objects[key] = None
        return rnd.objects[key]

    async def _token(self, pod: Obj, uid: str, volume: str, source: Obj) -> str:
        """A bound ServiceAccount token, reused until 80% of its life (upstream's rule)."""
        key = (uid, volume, source.get("path", "token"))
        now = time.time()
        cached = self._tokens.get(key)
        if cached is not None and now < cached.issued + 0.8 * (cached.expires - cached.issued):
            return cached.token
        expiration = int(source.get("expirationSeconds") or TOKEN_EXPIRATION)
        audience = source.get("audience", "")
        md = pod.get("metadata") or {}
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": expiration,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": md.get("name", ""),
                    "uid": uid,
                },
            },
        }
        try:
            issued = await self.client.create_subresource(
                SERVICE_ACCOUNT, sa, md.get("namespace", ""), "token", request
            )
            token = str((issued.get("status") or {}).get("token") or "")
        except (errors.NotFound, errors.MethodNotAllowed, errors.BadRequest) as e:
            log.debug("no ServiceAccount token from the server, using a placeholder error=%s", e)
            token = ""
        if not token:
            token = volumes_sources.placeholder_token(pod, audience, expiration, now)
        self._tokens[key] = _Token(token, now, now + expiration)
        return token

    async def _claim_path(self, pod: Obj, source: Obj, rnd: _Round) -> str:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        claim_name = source.get("claimName", "")
        claim = await self._object(PERSISTENT_VOLUME_CLAIM, namespace, claim_name, rnd)
        if claim is None:
            raise VolumeError(f'persistentvolumeclaim "{claim_name}" not found')
        if (claim.get("metadata") or {}).get("deletionTimestamp"):
            raise VolumeError(f'persistentvolumeclaim "{claim_name}" is being deleted')
        pv_name = (claim.get("spec") or {}).get("volumeName", "")
        if not pv_name:
            raise VolumeError(f'persistentvolumeclaim "{claim_name}" is not bound')
        pv = await self._object(PERSISTENT_VOLUME, "", pv_name, rnd)
        if pv is None:
            raise VolumeError(f'persistentvolume "{pv_name}" not found')
        spec = pv.get("spec") or {}
        path = (spec.get("hostPath") or {}).get("path") or (spec.get("local") or {}).get("path")
        if not path:
            raise VolumeError(
                f'persistentvolume "{pv_name}" has no hostPath or local path on this node'
            )
        if not os.path.exists(path):
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o777)  # as the local-path provisioner's directories
        return str(path)

    # -- container mounts -------------------------------------------------------------

    def mounts(self, pod: Obj, container: Obj, volumes: dict[str, VolumePath]) -> list[Mount]:
        """The runtime mounts of `container`'s `volumeMounts`; raises `VolumeError`."""
        out: list[Mount] = []
        env = {e["name"]: e.get("value", "") for e in container.get("env") or () if "name" in e}
        for vm in container.get("volumeMounts") or ():
            vol = volumes.get(vm.get("name", ""))
            if vol is None:
                raise VolumeError(f'volume "{vm.get("name")}" is not defined in the pod')
            host = vol.host_path
            sub = vm.get("subPath") or ""
            if vm.get("subPathExpr"):
                sub = _ENV_REF.sub(lambda m: env.get(m.group(1), ""), vm["subPathExpr"])
            if sub:
                host = resolve_sub_path(vol.host_path, sub)
            propagation = _PROPAGATION.get(vm.get("mountPropagation") or "", "private")
            out.append(
                Mount(
                    host_path=host,
                    container_path=vm.get("mountPath", ""),
                    readonly=bool(vm.get("readOnly")) or vol.readonly,
                    propagation=propagation,  # type: ignore[arg-type]
                )
            )
        return out

    # -- refresh -------------------------------------------------------------------

    async def refresh(self, pods: Iterable[Obj]) -> list[tuple[str, str]]:
        """Re-project the API-backed volumes of set-up pods; (pod uid, volume) of those changed."""
        rnd = _Round()
        changed = []
        for pod in pods:
            uid = _uid(pod)
            if not self.pod_dir(uid).is_dir():
                continue
            for volume in (pod.get("spec") or {}).get("volumes") or ():
                kind = next((k for k in PROJECTED_KINDS if volume.get(k) is not None), None)
                if kind is None:
                    continue
                target = self.volume_dir(uid, _PLUGIN_OF[kind], volume["name"])
                if not target.is_dir():
                    continue  # not set up yet: the pod worker's setup writes it
                try:
                    if await self._project(pod, uid, kind, volume, target, rnd):
                        changed.append((uid, volume["name"]))
                except (OSError, VolumeError, volumes_sources.SourceError) as e:
                    # Upstream keeps the last good files when an update cannot be built.
                    log.warning(
                        "volume refresh failed pod=%s volume=%s error=%s", uid, volume["name"], e
                    )
        return changed

    async def run_refresh(self, pods: Callable[[], Iterable[Obj]]) -> None:
        """Refresh the volumes of `pods()` every `refresh_seconds`, until cancelled."""
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                changed = await self.refresh(list(pods()))
            except errors.StatusError as e:
                log.warning("volume refresh round failed error=%s", e)
                continue
            for uid, name in changed:
                log.info("volume updated pod=%s volume=%s", uid, name)

    # -- teardown ------------------------------------------------------------------

    def teardown(self, uid: str) -> None:
        """Unmount and delete everything of pod `uid` under the pods directory; idempotent."""
        pod_dir = self.pod_dir(uid)
        self._tokens = {k: v for k, v in self._tokens.items() if k[0] != uid}
        if not pod_dir.exists():
            return
        unmount_below(str(pod_dir))
        left = mounts_below(str(pod_dir))
        if left:
            raise VolumeError(f"pod {uid}: still mounted after unmount: {', '.join(left)}")
        shutil.rmtree(pod_dir)
        log.info("pod volumes removed pod=%s", uid)

    def cleanup_orphans(self, keep: Iterable[str]) -> list[str]:
        """Tear down pod directories whose UID is not in `keep` (after an agent crash)."""
        if not self.pods_dir.is_dir():
            return []
        wanted = set(keep)
        removed = []
        for entry in sorted(os.listdir(self.pods_dir)):
            if entry in wanted or not (self.pods_dir / entry).is_dir():
                continue
            try:
                self.teardown(entry)
                removed.append(entry)
            except (OSError, VolumeError) as e:
                log.warning("orphaned pod directory not removed pod=%s error=%s", entry, e)
        return removed


# --- helpers ------------------------------------------------------------------------


def _uid(pod: Obj) -> str:
    uid = (pod.get("metadata") or {}).get("uid", "")
    if not uid or "/" in uid or uid in (".", ".."):
        raise VolumeError(f"pod has no usable uid: {uid!r}")
    return str(uid)


def _fs_group(pod: Obj) -> int | None:
    gid = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
    return int(gid) if gid is not None else None


def memory_size(pod: Obj, source: Obj) -> int | None:
    """A memory emptyDir's tmpfs size: `sizeLimit`, else the pod's summed memory limits."""
    try:
        if source.get("sizeLimit"):
            return int(parse_quantity(source["sizeLimit"]))
        total = 0
        for c in (pod.get("spec") or {}).get("containers") or ():
            limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
            if limit is None:
                return None
            total += int(parse_quantity(limit))
        return total or None
    except QuantityError as e:
        raise VolumeError(f"bad sizeLimit: {e}") from None


_TYPE_CHECKS: dict[str, tuple[Callable[[int], bool], str]] = {
    "Directory": (stat.S_ISDIR, "directory"),
    "File": (stat.S_ISREG, "file"),
    "Socket": (stat.S_ISSOCK, "socket"),
    "CharDevice": (stat.S_ISCHR, "character device"),
    "BlockDevice": (stat.S_ISBLK, "block device"),
}


def check_host_path(source: Obj) -> str:
    """The hostPath's path after upstream's `type` checks (creating for *OrCreate)."""
    path = source.get("path", "")
    type_ = source.get("type") or ""
    if not path.startswith("/"):
        raise VolumeError(f"hostPath {path!r} must be absolute")
    if type_ == "DirectoryOrCreate" and not os.path.exists(path):
        os.makedirs(path, 0o755, exist_ok=True)
        type_ = "Directory"
    elif type_ == "FileOrCreate" and not os.path.exists(path):
        if not os.path.isdir(os.path.dirname(path)):
            raise VolumeError(f"hostPath type check failed: parent of {path} does not exist")
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
        type_ = "File"
    elif type_ in ("DirectoryOrCreate", "FileOrCreate"):
        type_ = type_.removesuffix("OrCreate")
    if not type_:
        return path
    check = _TYPE_CHECKS.get(type_)
    if check is None:
        raise VolumeError(f"hostPath type {type_!r} is not supported")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise VolumeError(f"hostPath type check failed: {path} does not exist") from None
    if not check[0](mode):
        raise VolumeError(f"hostPath type check failed: {path} is not a {check[1]}")
    return path


def resolve_sub_path(volume_path: str, sub_path: str) -> str:
    """`volume_path/sub_path`, created as a directory if missing, never outside the volume."""
    if sub_path.startswith("/") or ".." in sub_path.split("/"):
        raise VolumeError(f"subPath {sub_path!r} must be a relative path without '..'")
    joined = os.path.join(volume_path, sub_path)
    if not os.path.lexists(joined):
        os.makedirs(joined, 0o755, exist_ok=True)
    base = os.path.realpath(volume_path)
    real = os.path.realpath(joined)
    if real != base and not real.startswith(base + os.sep):
        raise VolumeError(f"subPath {sub_path!r} resolves outside the volume")
    return real


def mounts_below(path: str) -> list[str]:
    """Mount points at or below `path` (from this process's mount table)."""
    base = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            target = line.split(b" ", 5)[4].decode("unicode_escape")
            if target == base or target.startswith(base + "/"):
                found.append(target)
    return found


def unmount_below(path: str) -> None:
    """Unmount every mount at or below `path`, deepest first."""
    for target in sorted(set(mounts_below(path)), key=len, reverse=True):
        linux.umount(target)

"""`podman kube play` of bench_node's pod, for a side-by-side figure.

Made to run here as MACHINE-NOTES says: `podman --runtime runc` (crun refuses the
hybrid cgroups) and ulimits at or below the hard limits. `kube play` has no
`--ulimit` flag, so both go in a private containers.conf (`CONTAINERS_CONF`), which
leaves the machine's own configuration alone. The image is `podman import` of the
very layer nanokube's busybox image has; an imported image has no PATH, so the
command is absolute. A podman pod also runs an infra (pause) container, which
nanokube's pinned namespaces do without.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from nanokube.runtime.images import busybox

PODMAN_POD = "nanokube-bench"
PODMAN_IMAGE = "localhost/nanokube-bench-busybox:latest"
COMMAND = ["/bin/sleep", "3600"]


POD_YAML = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {PODMAN_POD}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: {PODMAN_IMAGE}
    command: [{", ".join(f'"{w}"' for w in COMMAND)}]
"""
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=10000:10000", "nproc=1000:1000"]
[engine]
runtime = "runc"
"""


class Podman:
    """`podman --runtime runc` with a private containers.conf (the ulimits `kube play` lacks)."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        conf = workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.yaml = workdir / "pod.yaml"
        self.yaml.write_text(POD_YAML)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", "--runtime", "runc", *args], capture_output=True, text=True, env=self.env
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {done.returncode}\n{done.stderr[-800:]}")
        return done

    def import_image(self) -> None:
        """The same busybox layer nanokube's image has, as a `podman import`ed image."""
        layer = self.workdir / "rootfs.tar"
        layer.write_bytes(busybox.busybox_layer())
        self.run("import", str(layer), PODMAN_IMAGE)

    def play(self) -> float:
        """Seconds `podman kube play` takes to return with the pod running; then remove it."""
        t0 = time.perf_counter()
        self.run("kube", "play", str(self.yaml))
        elapsed = time.perf_counter() - t0
        state = self.run("pod", "inspect", PODMAN_POD, "--format", "{{.State}}").stdout.strip()
        if state != "Running":
            raise RuntimeError(f"podman pod {state!r} after kube play, not Running")
        self.remove_pod()
        return elapsed

    def remove_pod(self) -> None:
        self.run("pod", "rm", "--force", "--time", "0", PODMAN_POD, check=False)

    def cleanup(self) -> None:
        self.remove_pod()
        self.run("rmi", "--force", PODMAN_IMAGE, check=False)

"""An image from the store runs as a real runc container: `layers_for` and
`config_for` are exactly what the OCI runtime takes (`ContainerConfig.layers`, bottom
first; the image's cmd and env), and the container sees the final view of the layers
(whiteouts and opaque directories honoured, owners kept). Needs what the runtime
tests need (root, runc, CNI plugins, busybox-static)."""

from __future__ import annotations

from pathlib import Path

import imagebuild

from nanokube.runtime import contract as c
from nanokube.runtime.images import ImageStore
from nanokube.runtime.oci.runtime import OCIRuntime


async def test_a_stored_image_runs_in_runc(runtime: OCIRuntime, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    archive = imagebuild.write_docker_archive(
        tmp_path / "bb.tar", [(imagebuild.busybox_image(), ["busybox:latest"])]
    )
    await store.import_archive(archive)
    image = store.get("busybox")
    config = store.config_for(image)
    sb = await runtime.create_sandbox(
        c.SandboxConfig(uid="uid-img", name="img", namespace="default")
    )
    cid = await runtime.create_container(
        sb.id,
        c.ContainerConfig(
            name="app",
            image=image.ref,
            layers=store.layers_for(image),
            command=c.resolve_command(config, ["sh", "-c", "sleep 1000"], []),
            env=c.merge_env(config, {}),
            working_dir=config.working_dir,
            user=config.user,
        ),
    )
    await runtime.start_container(cid)
    script = (
        "ls /etc; ls /opaque; cat /etc/layer2; echo $PATH; "
        "stat -c '%u:%g %a' /home/user/secret; test -e /etc/remove-me || echo whiteout-honoured"
    )
    result = await runtime.exec_sync(cid, ["sh", "-c", script], 10)
    out = result.stdout.decode()
    assert result.exit_code == 0, result.stderr
    assert "remove-me" not in out and "whiteout-honoured" in out
    assert "keep-not" not in out and "old" not in out.split() and "new" in out.split()
    assert "layer 2" in out and imagebuild.PATH_ENV.partition("=")[2] in out
    assert "1000:1000 640" in out

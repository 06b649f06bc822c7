"""``nanokube images``: import prints what it imported, ls prints crictl's columns,
rm untags or deletes and refuses unknown names with exit code 1. (Lives next to the
other image tests; `nanokube/cli/images.py` is only the command-line face of the store.)"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import imagebuild
import pytest

from nanokube.cli import images as cli

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="image import needs root (mknod, chown, trusted.* xattrs)"
)


def nanokube_images(data_dir: Path, *args: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="nanokube")
    cli.add_parser(parser.add_subparsers(dest="command"), [])
    opts = parser.parse_args(["images", "--data-dir", str(data_dir), *args])
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(opts, out, err)
    return code, out.getvalue(), err.getvalue()


def small_image() -> imagebuild.Image:
    t = imagebuild.TarBuilder()
    t.file("hello", b"hello\n" * 100)
    return imagebuild.build_image([t.done()])


def test_import_ls_rm(tmp_path: Path) -> None:
    image = small_image()
    archive = imagebuild.write_docker_archive(
        tmp_path / "hello.tar", [(image, ["hello:1", "hello:2"])]
    )
    code, out, _ = nanokube_images(tmp_path, "import", str(archive))
    assert code == 0
    assert (
        out
        == f"imported docker.io/library/hello:1, docker.io/library/hello:2 ({image.config_digest[7:19]}) from {archive}\n"
    )
    assert (tmp_path / "agent/images/images.json").exists()

    code, out, _ = nanokube_images(tmp_path, "ls")
    lines = out.splitlines()
    assert lines[0].split() == ["IMAGE", "TAG", "DIGEST", "IMAGE", "ID", "SIZE"]
    assert lines[1].split() == [
        "docker.io/library/hello",
        "1",
        "<none>",
        image.config_digest[7:20],
        cli.human_size(10240),  # docker save stores the layer uncompressed
    ]
    assert len(lines) == 3
    assert nanokube_images(tmp_path, "ls", "-q")[1] == image.config_digest + "\n"

    assert nanokube_images(tmp_path, "rm", "hello:1") == (
        0,
        "Untagged: docker.io/library/hello:1\n",
        "",
    )
    assert nanokube_images(tmp_path, "rm", "hello:2") == (
        0,
        f"Deleted: {image.config_digest}\n",
        "",
    )
    code, _, err = nanokube_images(tmp_path, "rm", "hello:2")
    assert code == 1 and err == 'error: image "hello:2" not found\n'
    assert nanokube_images(tmp_path, "ls")[1].splitlines()[1:] == []


def test_import_of_a_bad_file_fails(tmp_path: Path) -> None:
    (tmp_path / "bad.tar").write_text("nope")
    code, out, err = nanokube_images(tmp_path, "import", str(tmp_path / "bad.tar"))
    assert code == 1 and out == ""
    assert err.startswith(f'error: failed to import image archive "{tmp_path / "bad.tar"}"')


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0B"), (999, "999B"), (1000, "1kB"), (4_270_000, "4.27MB"), (1_234_567_890, "1.23GB")],
)
def test_sizes_print_like_crictl(size: int, shown: str) -> None:
    assert cli.human_size(size) == shown

"""`nanokube images import FILE... | ls | rm REF...`: the node's image store by hand.

The store is the agent's own (``DATA_DIR/agent/images``), so this works whether or
not the agent runs: changes go through the store's locked record, and ``rm`` refuses
an image whose layers a container's overlay mount uses. Output follows ``crictl
images``: one row per tag, sizes in decimal units with three significant digits.

Only the standard library is imported at module level, so `main.py` can register the
subcommand without slowing down other commands.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from nanokube.runtime.images import Image, ImageStore

log = logging.getLogger(__name__)


def images_dir(data_dir: Path) -> Path:
    """Where the agent keeps its image store and looks for archives to import."""
    return data_dir / "agent" / "images"


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``nanokube images`` on `sub` (the ``COMMAND`` subparsers of main.py)."""
    from nanokube.cli.server import DEFAULT_DATA_DIR

    images = sub.add_parser(
        "images",
        parents=parents,
        help="manage the node's image store (import, ls, rm)",
        description="Manage the node agent's image store (DATA_DIR/agent/images).",
    )
    images.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help="the agent's data directory (default %(default)s)",
    )
    actions = images.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import", help="import docker save or OCI layout archives (.tar, .tar.gz, .tar.zst)"
    )
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    ls = actions.add_parser("ls", help="list images (like crictl images)")
    ls.add_argument("-q", "--quiet", action="store_true", help="print image ids only")
    rm = actions.add_parser("rm", help="remove images (a tag of an image with others: untag)")
    rm.add_argument("refs", nargs="+", metavar="REF", help="name, name@digest, id or id prefix")
    return images


def run(opts: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the parsed ``nanokube images`` command; returns the exit code."""
    import asyncio

    from nanokube.runtime.images import ImageStore

    store = ImageStore(images_dir(opts.data_dir))
    if opts.images_command == "ls":
        print_images(store.list_images(), out, quiet=opts.quiet)
        return 0
    if opts.images_command == "import":
        return asyncio.run(_import(store, opts.files, out, err))
    return asyncio.run(_remove(store, opts.refs, out, err))


async def _import(store: ImageStore, files: list[Path], out: TextIO, err: TextIO) -> int:
    from nanokube.runtime.images import ImageError

    status = 0
    for file in files:
        try:
            images = await store.import_archive(file)
        except (ImageError, OSError) as e:
            print(f"error: {e}", file=err)
            status = 1
            continue
        for image in images:
            names = ", ".join(image.repo_tags) or "<untagged>"
            print(f"imported {names} ({image.id[7:19]}) from {file}", file=out)
    return status


async def _remove(store: ImageStore, refs: list[str], out: TextIO, err: TextIO) -> int:
    from nanokube.runtime.images import ImageError, normalize

    status = 0
    for ref in refs:
        try:
            deleted = await store.remove(ref)
        except ImageError as e:
            print(f"error: {e}", file=err)
            status = 1
            continue
        if deleted:
            print(f"Deleted: {deleted[0]}", file=out)
        else:
            print(f"Untagged: {normalize(ref)}", file=out)
    return status


def print_images(images: list[Image], out: TextIO, quiet: bool = False) -> None:
    if quiet:
        for image in images:
            print(image.id, file=out)
        return
    rows = [("IMAGE", "TAG", "DIGEST", "IMAGE ID", "SIZE")]
    for image in images:
        digests = {d.partition("@")[0]: d.partition("@")[2] for d in image.repo_digests}
        names = image.repo_tags or tuple(
            d.partition("@")[0] + ":<none>" for d in image.repo_digests
        )
        for name in names or ("<none>:<none>",):
            repo, _, tag = name.rpartition(":")
            digest = digests.get(repo, "")
            rows.append(
                (repo, tag, digest[7:20] or "<none>", image.id[7:20], human_size(image.size))
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def human_size(size: float) -> str:
    """Decimal units with three significant digits, as docker and crictl print sizes."""
    units = ("B", "kB", "MB", "GB", "TB")
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{units[i]}"

"""A CPU profile of a running process with py-spy, summarised as the top functions.

`py-spy record --format raw` samples the process's stacks from outside (no
change to the server, no cProfile overhead inside it) and writes collapsed
stacks: one line per distinct stack, `frame;frame;...;frame COUNT`. The
summary ranks functions by self samples (the innermost frame: where CPU is
spent) and by inclusive samples (the function is anywhere on the stack: what
it costs with all it calls). Percentages are of busy samples: stacks that end
in the event loop's wait (epoll) are left out.

Sampling is `--native`: py-spy pauses the process briefly per sample and
unwinds C frames too. Without it, time in C (TLS, socket writes, sqlite) is
charged to the nearest Python frame, and `--nonblocking` sampling was seen to
charge socket writes several times their real share.

py-spy is not a dependency of nanokube: `pip install py-spy` into .venv to
use `--profile`.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"\s*\(([^)]*?)(?::\d+)?\)$")
_IDLE = ("epoll_wait", "epoll_pwait", "poll (", "select (")


def available() -> str | None:
    """The py-spy executable next to this interpreter or on PATH, or None."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


class Recording:
    """`py-spy record` of `pid` from now until `stop()`."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        exe = available()
        if exe is None:
            raise RuntimeError("py-spy not found: pip install py-spy into .venv")
        self.output = output
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                str(rate),
                "--native",
                "--output",
                str(output),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        """End sampling; py-spy writes its file on SIGINT."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return
        if not self.output.exists():
            print(f"    py-spy wrote nothing: {err.decode(errors='replace')[-300:]}")


def _function(frame: str) -> str:
    """`handle (nanokube/apiserver/handlers.py:97)` -> `handle (nanokube/apiserver/handlers.py)`."""
    return _LINE.sub(lambda m: f" ({m.group(1)})", frame.strip())


def summarize(path: Path, top: int = 15) -> str:
    """The top functions by self and by inclusive samples, as printable lines."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_function(f) for f in stack.split(";") if f.strip()]
        if not frames or frames[-1].startswith(_IDLE):
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    if not total:
        return "    (no samples)"
    out = [f"    {total} busy samples; self time:"]
    out += [f"      {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    out.append("    inclusive (nanokube/aiohttp frames):")
    wanted = [
        (f, n)
        for f, n in inclusive.most_common()
        if ("nanokube/" in f or "aiohttp/" in f) and n < total
    ]
    out += [f"      {n / total:6.1%}  {f}" for f, n in wanted[:top]]
    return "\n".join(out)

"""Run the benchmarks: every `bench/bench_*.py` module's `main()` in turn, or the ones named.

Usage: python -m bench [NAME ...] [-- MODULE ARGS]

NAME is a module's name with or without its `bench_` prefix (`apiserver`,
`bench_storage`); without names, every `bench_*.py` here runs, in name order,
so a new benchmark joins `make bench` by existing. Arguments after `--` are
handed to the module(s) as their command line (`sys.argv[1:]`), which is
where each module's argparse looks.

A module's `main()` may be plain or `async` (run under uvloop when it is
installed). A `main` that needs arguments is not called; the module is run as
a script instead (`if __name__ == "__main__":`), as its author runs it. A
benchmark that fails prints its traceback and the others still run; the exit
code is 1 if any failed.
"""

from __future__ import annotations

import importlib
import inspect
import runpy
import sys
import time
import traceback
from pathlib import Path

from bench import common

HERE = Path(__file__).parent


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def run_one(name: str, extra: list[str]) -> bool:
    """Run one benchmark module; False if it failed."""
    module_name = f"bench.{name}"
    sys.argv = [str(HERE / f"{name}.py"), *extra]
    t0 = time.perf_counter()
    print(f"##### {name}", flush=True)
    try:
        module = importlib.import_module(module_name)
        main = getattr(module, "main", None)
        if main is None or _needs_arguments(main):
            runpy.run_module(module_name, run_name="__main__", alter_sys=True)
        elif inspect.iscoroutinefunction(main):
            common.run(main())
        else:
            main()
    except SystemExit as e:
        if e.code not in (0, None):
            print(f"##### {name} exited {e.code}", flush=True)
            return False
    except BaseException as e:  # noqa: BLE001 - one broken benchmark must not stop the rest
        traceback.print_exc()
        if isinstance(e, KeyboardInterrupt):
            raise
        print(f"##### {name} FAILED after {time.perf_counter() - t0:.0f} s", flush=True)
        return False
    print(f"##### {name} done in {time.perf_counter() - t0:.0f} s\n", flush=True)
    return True


def _needs_arguments(main: object) -> bool:
    try:
        params = inspect.signature(main).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return any(
        p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in params
    )


def cli(argv: list[str]) -> int:
    names, extra = argv, []
    if "--" in argv:
        cut = argv.index("--")
        names, extra = argv[:cut], argv[cut + 1 :]
    available = discover()
    chosen = []
    for n in names or available:
        full = n if n.startswith("bench_") else f"bench_{n}"
        if full not in available:
            print(f"no benchmark {n!r}; there are: {', '.join(available)}", file=sys.stderr)
            return 2
        chosen.append(full)
    failed = [n for n in chosen if not run_one(n, extra)]
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))

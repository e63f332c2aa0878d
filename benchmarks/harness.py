"""Helpers the benchmark scripts share: where the models and the ground-truth
folder are (the places every tinytwin command finds them), the machine's
description, a forked pty server and a bytecode counter."""
from __future__ import annotations

import os
import platform
import sys
import tty
from collections import Counter
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emulator.models import store  # noqa: E402
from emulator.models.profiles import PROFILES  # noqa: E402

#: what a script's ``--models-dir`` and ``--shared`` say
MODELS_DIR_HELP = store.MODELS_DIR_HELP
SHARED_HELP = f"the ground-truth folder (default: ${store.ENV_SHARED}, else ../shared beside the checkout)"

#: the four models of the EEMBC firmware's I/O profiles (sww01 runs on a firmware of its own)
FOUR = tuple(PROFILES)


def shared_folder(explicit: Path | None = None) -> Path:
    """The project's ground-truth folder: ``explicit`` (a script's
    ``--shared``), else the one every tinytwin command finds
    (:func:`emulator.models.store.shared_dir`: ``$TINYTWIN_SHARED``, or
    ``../shared`` beside the checkout). Exits naming the fix when it is not
    there."""
    p = Path(explicit).expanduser() if explicit is not None else store.shared_dir()
    if p is None or not p.is_dir():
        env = os.environ.get(store.ENV_SHARED)
        where = f" ({p})" if p is not None else f" ({store.ENV_SHARED}={env})" if env else ""
        sys.exit(f"this benchmark needs the project's ground-truth folder{where}, which is not there: put it at "
                 f"../shared beside the checkout, set {store.ENV_SHARED}, or pass --shared DIR")
    return p


def golden_folder(shared: Path | None = None) -> Path:
    """The reference board's results in the ground-truth folder (``shared``,
    else :func:`shared_folder`'s): what the calibration reads
    (:func:`emulator.cpu.calibrate.default_golden_dir`). Exits naming the fix
    when they are not there."""
    from emulator.cpu.calibrate import default_golden_dir

    shared = shared_folder(shared)
    g = default_golden_dir(shared)
    if g is None:
        sys.exit(f"{shared} does not hold the reference board's results (golden/l4r5zi-tflm-v0.5): "
                 "use the project's ground-truth folder")
    return g


def models_folder(explicit: Path | None = None, names=FOUR) -> Path:
    """The directory holding the official models ``names``: ``explicit`` (a
    script's ``--models-dir``), else the one model resolver's choice
    (:func:`emulator.models.store.resolve_models_dir`). Exits naming the fix
    when they are not there."""
    d = store.resolve_models_dir(explicit, names=names)
    missing = [n for n in names if not (d / f"{n}.tflite").is_file()]
    if missing:
        looked = ", ".join(str(p) for p in store.search_dirs(explicit))
        sys.exit(f"this benchmark needs {', '.join(missing)}.tflite, not found in {looked}: {store.FIX_HINT}")
    return d


def machine() -> str:
    """The machine a figure was measured on, as the scripts print it and keep
    it in their JSON (this shared VM's kernel build changes between days)."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def fork_pty_server(answer: Callable[[bytes], bytes]) -> tuple[int, str]:
    """Fork a process that serves a new pty: each ``read()`` of its master
    end (asleep in it between commands) is handed to ``answer``, whose bytes
    are written back. Returns the server's pid and the path of the pty's
    slave end (raw mode)."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    name = os.ttyname(slave)
    pid = os.fork()
    if pid == 0:
        try:
            while True:
                out = answer(os.read(master, 4096))
                if out:
                    os.write(master, out)
        finally:
            os._exit(0)
    os.close(master)
    return pid, name


def count_bytecodes(fn: Callable[[], object], times: int) -> tuple[float, float, Counter, Counter]:
    """Call ``fn`` ``times`` times under sys.settrace: Python bytecodes and
    calls per call, and both by function (qualified name), totals."""
    ops, calls, by_fn = 0, Counter(), Counter()

    def tracer(frame, event, arg):
        nonlocal ops
        if event == "call":
            frame.f_trace_opcodes = True
            calls[frame.f_code.co_qualname] += 1
        elif event == "opcode":
            ops += 1
            by_fn[frame.f_code.co_qualname] += 1
        return tracer

    for _ in range(times):
        sys.settrace(tracer)
        try:
            fn()
        finally:
            sys.settrace(None)
    return ops / times, sum(calls.values()) / times, by_fn, calls


def print_profile(by_fn: Counter, calls: Counter, times: int, top: int = 25) -> None:
    """The table ``--profile`` prints: where the bytecodes of one call go."""
    print("| function | bytecodes / command | calls / command |")
    print("|---|---:|---:|")
    for name, k in by_fn.most_common(top):
        print(f"| {name} | {k / times:.0f} | {calls[name] / times:.0f} |")

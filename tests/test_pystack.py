"""Room on CPython's frame stack for the hot loops (emulator/pystack.py).

A loop whose calls cross the end of one of CPython's 16 KiB frame-stack chunks
maps and unmaps a chunk on every crossing; the first touch of the fresh chunk
is a page fault, which is what these tests count (``ru_minflt``).
"""
from __future__ import annotations

import os
import resource
import signal
import sys
import threading

import pytest

from emulator import pystack

ITERS = 2000
DEPTHS = range(0, 400)  # 400 small frames: more than one 16 KiB chunk's worth


def _leaf(n):
    return n + 1


def _mid(n):
    return _leaf(n)


def _loop(iters: int) -> int:
    """Page faults during ``iters`` calls two frames deep."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = 0
    for _ in range(iters):
        t = _mid(t)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _at_depth(k: int, run):
    if k:
        return _at_depth(k - 1, run)
    return run()


def _faults_by_depth(headroom: bool) -> list[int]:
    run = (lambda: pystack.with_headroom(_loop, ITERS)) if headroom else (lambda: _loop(ITERS))
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 2000))
    try:
        return [_at_depth(k, run) for k in DEPTHS]
    finally:
        sys.setrecursionlimit(old)


def test_a_loop_runs_inside_one_chunk_from_any_caller_depth():
    """Without the helper some caller depth puts the loop on a chunk's edge
    (a fault on nearly every call); through it, no depth does."""
    plain = _faults_by_depth(headroom=False)
    if max(plain) < ITERS // 2:
        pytest.skip(f"this CPython ({sys.version.split()[0]}) does not unmap a frame-stack chunk on every crossing "
                    "(it keeps a spare chunk: python/cpython gh-142183): nothing to avoid")
    roomy = _faults_by_depth(headroom=True)
    worst = max(range(len(roomy)), key=roomy.__getitem__)
    assert roomy[worst] < ITERS // 10, f"caller depth {worst}: {roomy[worst]} page faults in {ITERS} calls"


def test_with_headroom_passes_arguments_results_and_exceptions():
    assert pystack.with_headroom(divmod, 17, 5) == (3, 2)
    assert pystack.with_headroom(lambda *a, **k: (a, k), 1, fn=2) == ((1,), {"fn": 2})
    with pytest.raises(ZeroDivisionError):
        pystack.with_headroom(divmod, 1, 0)


def _under_headroom() -> bool:
    f = sys._getframe(1)
    while f is not None:
        if f.f_code is pystack._call.__code__:
            return True
        f = f.f_back
    return False


def test_the_runners_inference_loop_runs_in_headroom(models_dir, shared, tmp_path):
    """The runner's per-input loop (and the in-process twin under it) is
    entered through :func:`pystack.with_headroom`."""
    import uuid

    import emulator.urlhandler  # noqa: F401
    from emulator.urlhandler.protocol_tinytwin import shutdown_all
    from runner.session import RunOptions, run

    seen: list[bool] = []
    url = f"tinytwin://kws01?models_dir={models_dir}&speed=fast&instance={uuid.uuid4().hex}"
    try:
        run(RunOptions(port=url, mode="accuracy", dataset=shared / "datasets" / "kws01", out=tmp_path / "out",
                       progress=False, timeout=5.0, files=(0, 2), on_inference=lambda: seen.append(_under_headroom())))
    finally:
        shutdown_all()
    assert seen == [True, True]


def test_a_served_twins_run_loop_runs_in_headroom():
    """``tinytwin dut``/``rig`` serve their twin through
    :func:`pystack.with_headroom` (checked from inside the run loop)."""
    from emulator.cli import serve_until_signal
    from emulator.sim import Twin

    twin = Twin(speed="fast")
    seen: list[bool] = []

    def look() -> None:
        seen.append(_under_headroom())
        os.kill(os.getpid(), signal.SIGINT)  # serve_until_signal's own way out

    timer = threading.Timer(0.2, lambda: twin.call_soon(look))
    timer.start()
    try:
        serve_until_signal(twin, [])
    finally:
        timer.cancel()
    assert seen == [True]

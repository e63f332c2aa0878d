"""Room on CPython's frame stack for a hot loop.

Since 3.11, CPython keeps the locals of running Python functions on a stack of
its own per thread, made of 16 KiB chunks. A call that does not fit in the
current chunk maps a new one (``mmap``); its return, if it was the first frame
of that chunk, unmaps it again (``munmap``). A loop whose calls cross the end
of a chunk therefore maps, touches and unmaps 16 KiB on every turn: on the
2-core VM of our benchmarks that is 6.5-8 µs a crossing, against under 0.1 µs for
the same call inside a chunk (``benchmarks/stack_chunks.py``). Whether a loop
crosses depends only on how deep its caller happens to be, so one more frame
in a command-line path can turn it on or off. The runner's ``db`` loop was
crossing on about half of its round trips when started as ``python -m
emulator.cli run`` (strace: 15,074 mmaps for 32,928 commands).

CPython fixed this in 3.13 and 3.14 by keeping one spare chunk
(python/cpython gh-142183); 3.11 and 3.12 keep the behaviour.

:func:`with_headroom` calls a function from a frame that is larger than a
16 or 32 KiB chunk can hold (the sizes CPython makes for ordinary frames), so
that frame always begins a new chunk, of 64 KiB, and the function, with
everything it calls, runs in the remaining ~32 KiB: over a hundred ordinary
frames, more than a session of the runner or a twin's run loop goes down
(imports included). Where the loop sits no longer depends on its caller, and
the chunk is unmapped once, when the function returns. On a CPython with the
fix it costs one 64 KiB chunk and changes nothing else.

Pure: no clock, no I/O (layer 1), so both the runner and the twin's front
ends use it.
"""
from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")

#: pointer-sized slots reserved by the calling frame: more than a 32 KiB chunk
#: (4,096 slots, less its header) can hold, so the frame never shares one;
#: CPython then makes a 64 KiB chunk (the frame plus 1,000 spare slots)
FRAME_SLOTS = 4100

#: off: call directly (``benchmarks/stack_chunks.py`` compares the two)
ENABLED = True


def _call(fn, args, kwargs):
    return fn(*args, **kwargs)


# The frame's size is its code's locals plus its evaluation stack; a deeper
# declared stack is only reserved, never read.
_call.__code__ = _call.__code__.replace(co_stacksize=_call.__code__.co_stacksize + FRAME_SLOTS)


def with_headroom(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """``fn(*args, **kwargs)``, run at the start of a fresh chunk of CPython's
    frame stack (see the module's note)."""
    if not ENABLED:
        return fn(*args, **kwargs)
    return _call(fn, args, kwargs)

"""The model engine: the four official MLPerf Tiny int8 models (or a user's own),
run for real, with the reference firmware's input conversion and result printing.

Public API::

    from emulator.models import open_engine, ModelError, PROFILES
    eng = open_engine("kws01")            # found by emulator.models.store.resolve_model
    eng.set_input(raw_db_bytes)           # th_load_tensor()
    eng.invoke(1)                         # th_infer() x count
    eng.results_text()                    # th_results(): 'm-results-[...]\\r\\n'
"""
from __future__ import annotations

from ..errors import TinytwinError


class ModelError(TinytwinError):
    """A user-facing problem with a model, its directory or its backend.

    The message is one sentence naming the thing and the fix; callers print it
    without a traceback.
    """


from .profiles import PROFILES, IOProfile, get_profile  # noqa: E402


def __getattr__(name):  # lazy: importing the package must not load numpy/TFLM
    if name in ("Engine", "open_engine"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)


__all__ = ["ModelError", "IOProfile", "PROFILES", "get_profile", "Engine", "open_engine"]

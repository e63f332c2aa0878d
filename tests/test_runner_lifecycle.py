"""The run lifecycle the modes share (runner.lifecycle): Ctrl-C and errors
leave a finished record, the closed ports and the partial results, in energy
mode as in performance/accuracy mode (in-process, the twin's rig in fast mode)."""
from __future__ import annotations

import io
import json

import pytest

from emulator.benches.rig import build_rig
from runner import energy
from runner.emon_lpm01a import Lpm01aClient
from runner.energy import EnergyOptions, run_energy
from runner.ioman_client import IoManagerClient
from runner.lifecycle import EXIT_INTERRUPTED


@pytest.fixture
def rig(models_dir, tmp_path):
    r = build_rig("kws01", models_dir=models_dir, interface="arduino", speed="fast", dir=tmp_path / "rig")
    r.start()
    yield r
    r.close()


def interrupt_at_window(monkeypatch, n: int) -> None:
    """Ctrl-C while the runner waits for window ``n`` (after the timing probe)."""
    orig = energy._EnergyRun.timed_infer
    calls = {"n": 0}

    def timed_infer(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == n + 1:
            raise KeyboardInterrupt
        return orig(self, *a, **kw)

    monkeypatch.setattr(energy._EnergyRun, "timed_infer", timed_infer)


def closed_ports(monkeypatch) -> list[str]:
    closed: list[str] = []
    for cls, name in ((IoManagerClient, "io"), (Lpm01aClient, "emon")):
        orig = cls.close

        def close(self, _orig=orig, _name=name):
            closed.append(_name)
            _orig(self)

        monkeypatch.setattr(cls, "close", close)
    return closed


def check_interrupted(out, windows: int) -> None:
    rec = json.loads((out / "results.json").read_text())
    assert rec["status"] == "interrupted" and rec["error"] == "interrupted by the user"
    assert rec["finished"] is not None
    assert len(rec["energy"]["windows"]) == windows
    assert rec["energy_trace"]["windows"] and (out / "trace1-energy.bin").exists()
    # the plot says the run is partial
    assert rec["energy_trace"]["plot"] == "trace1-energy.png" and (out / "trace1-energy.png").exists()
    assert rec["energy_trace"]["plot_note"] == f"partial run: it stopped after {windows} of 5 windows"
    assert "run stopped, results incomplete: interrupted by the user" in (out / "results.txt").read_text()
    assert "Median energy cost" not in (out / "results.txt").read_text()


def test_energy_ctrl_c_keeps_what_was_done(rig, shared, tmp_path, monkeypatch):
    interrupt_at_window(monkeypatch, 2)
    closed = closed_ports(monkeypatch)
    out = tmp_path / "out"
    outcome = run_energy(
        EnergyOptions(io_port=rig.io_path, emon_port=rig.emon_path, dataset=shared / "datasets", out=out,
                      iterations=20, progress=False)
    )
    assert (outcome.status, outcome.exit_code) == ("interrupted", EXIT_INTERRUPTED)
    check_interrupted(out, windows=1)
    assert sorted(closed) == ["emon", "io"]
    assert not rig.dut.powered  # the EMON was released: supply off


def test_second_ctrl_c_while_releasing_the_bench_still_finishes_the_record(rig, shared, tmp_path, monkeypatch):
    """A second Ctrl-C while the EMON is being stopped and powered off (up to
    several seconds): the ports are closed and results.json, the trace and
    results.txt still say what happened (before, results.json stayed at
    status 'running', with no trace and both ports left open)."""
    interrupt_at_window(monkeypatch, 2)
    closed = closed_ports(monkeypatch)

    def release(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Lpm01aClient, "release", release)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_energy(
            EnergyOptions(io_port=rig.io_path, emon_port=rig.emon_path, dataset=shared / "datasets", out=out,
                          iterations=20, progress=False)
        )
    check_interrupted(out, windows=1)
    assert sorted(closed) == ["emon", "io"]


def test_a_crash_is_not_recorded_as_complete(models_dir, shared, tmp_path, monkeypatch):
    """An unexpected exception (a runner bug, a full disk) propagates with its
    traceback, and the record says the run failed, not that it completed."""
    import uuid

    import emulator.urlhandler  # noqa: F401
    from emulator.urlhandler.protocol_tinytwin import shutdown_all
    from runner import session
    from runner.session import RunOptions, run

    def measure(self, ds):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(session._Run, "measure", measure)
    url = f"tinytwin://kws01?models_dir={models_dir}&speed=fast&instance={uuid.uuid4().hex}"
    out = tmp_path / "out"
    try:
        with pytest.raises(ZeroDivisionError):
            run(RunOptions(port=url, mode="performance", dataset=shared / "datasets" / "kws01", out=out,
                           progress=False, timeout=5.0))
    finally:
        shutdown_all()
    rec = json.loads((out / "results.json").read_text())
    assert rec["status"] == "failed" and "ZeroDivisionError" in rec["error"]
    assert rec["finished"] is not None
    assert "run stopped, results incomplete: internal error" in (out / "results.txt").read_text()
    assert "internal error" in (out / "log.txt").read_text()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _screen(text: str) -> list[str]:
    """The lines a terminal shows for ``text`` (a carriage return starts the line over)."""
    from rich.text import Text

    return [Text.from_ansi(chunk.rsplit("\r", 1)[-1].replace("\x1b[K", "")).plain for chunk in text.split("\n")]


def test_ctrl_c_on_a_terminal_leaves_no_bar_behind(models_dir, shared, tmp_path, monkeypatch):
    """With the progress bar and the verbose echo on a terminal, Ctrl-C in an
    accuracy run: the bar never shares a line with echoed text, is erased at
    the end, and the cursor was never hidden."""
    import uuid

    import emulator.urlhandler  # noqa: F401
    from emulator.urlhandler.protocol_tinytwin import shutdown_all
    from runner import session
    from runner.session import RunOptions, run

    orig, calls = session._Run.step, {"n": 0}

    def step(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return orig(self, *a, **kw)

    monkeypatch.setattr(session._Run, "step", step)
    term = _Terminal()
    url = f"tinytwin://kws01?models_dir={models_dir}&speed=fast&instance={uuid.uuid4().hex}"
    try:
        outcome = run(RunOptions(port=url, mode="accuracy", dataset=shared / "datasets", out=tmp_path / "out",
                                 progress=True, verbose=True, stream=term, timeout=5.0))
    finally:
        shutdown_all()
    assert (outcome.status, outcome.exit_code) == ("interrupted", EXIT_INTERRUPTED)
    text = term.getvalue()
    assert "\rkws01 accuracy " in text and "\x1b[?25l" not in text  # drawn; cursor never hidden
    lines = _screen(text)
    assert not any("kws01 accuracy " in ln and "/1000" in ln for ln in lines), lines  # nothing left of the bar
    assert any("dut: m-results-" in ln for ln in lines) and lines[-1] == ""

"""``tinytwin external``: the launcher's own mechanics.

These tests run child programs under :func:`emulator.benches.external.run_external`
and check what the child sees: the twin's ports in pyserial's ``comports()``
with the USB identities of the reference bench, a working DUT behind them,
the caller's working directory, stdin and exit status, and a clean teardown.

The DUT here runs a small test engine (:class:`EchoEngine`) instead of a
TFLite model, with the reference board's kws01 latency (:data:`ECHO_TIMING`)
instead of the cycle model's: what is tested is the plumbing, which must not
depend on the official models (those are exercised in
``test_external_mlcommons.py``).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from emulator.config import TwinConfig
from emulator.errors import ConfigError
from emulator.dut.timing import REFERENCE_INFERENCE_US, DutTiming
from emulator.benches.external import (
    ENERGY_SPEED,
    PERFORMANCE_SPEED,
    USB_IDENTITIES,
    ExternalError,
    LineDrop,
    open_bench,
    resolve_speed,
    run_external,
    runner_mode,
)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


class EchoEngine:
    """A test engine with kws01's I/O conventions: 490 int8 inputs, 12
    outputs; the result is one-hot at (sum of the input bytes) mod 12."""

    def __init__(self):
        self.profile = SimpleNamespace(
            name="kws01",
            model_version="kws01",
            max_db_input_size=490,
            input_count=490,
            input_elem_size=1,
            perf_baud=115200,
            energy_baud=9600,
        )
        self.raw = b""
        self.invocations = 0

    def set_input(self, raw: bytes) -> None:
        self.raw = bytes(raw)

    def invoke(self, count: int = 1) -> None:
        self.invocations += count

    def results_text(self) -> str:
        v = ["0.000"] * 12
        v[sum(self.raw) % 12] = "1.000"
        return "m-results-[" + ",".join(v) + "]\r\n"


#: the DUT's timing for EchoEngine: the reference board's kws01 inference
ECHO_TIMING = DutTiming(inference_us=REFERENCE_INFERENCE_US["kws01"])
KWS01 = TwinConfig("kws01")


def echo(**kw) -> dict:
    """The keywords that make run_external/open_bench use the test engine."""
    return dict(engine=EchoEngine(), timing=ECHO_TIMING, **kw)


def run_child(code: str, tmp_path: Path, **kwargs) -> tuple[int, dict]:
    """Run ``python -c code`` under the launcher; the child writes a JSON
    report to ``out.json``."""
    out = tmp_path / "out.json"
    env_before = dict(os.environ)
    rc = run_external(
        [sys.executable, "-c", textwrap.dedent(code), str(out)],
        KWS01,
        log=lambda msg: None,
        **echo(**kwargs),
    )
    assert dict(os.environ) == env_before, "the launcher must not change its own environment"
    report = json.loads(out.read_text()) if out.exists() else {}
    return rc, report


LIST_PORTS = """
import json, os, sys
from serial.tools import list_ports
ports = [dict(device=p.device, vid=p.vid, pid=p.pid, description=p.description, hwid=p.hwid,
              manufacturer=p.manufacturer, product=p.product, serial_number=p.serial_number)
         for p in list_ports.comports(True)]
json.dump(dict(ports=ports, pythonpath=os.environ.get("PYTHONPATH", "")), open(sys.argv[1], "w"))
"""


def test_runner_mode_and_auto_speed():
    assert runner_mode(["python", "main.py", "--mode", "p"]) == "p"
    assert runner_mode(["python", "main.py", "--mode=e"]) == "e"
    assert runner_mode(["python", "main.py", "-m", "a"]) == "a"
    assert runner_mode(["python", "main.py", "-mp"]) == "p"
    assert runner_mode(["python", "main.py", "-mp", "--mode", "a"]) == "a"  # argparse: the last wins
    assert runner_mode(["python", "-m", "serial.tools.list_ports"]) is None
    assert runner_mode(["python", "main.py"]) is None
    # through a shell or with argparse's -m=X
    assert runner_mode(["sh", "-c", "cd runner && python main.py --mode p --dataset_path d"]) == "p"
    assert runner_mode(["python", "main.py", "-m=e"]) == "e"
    assert runner_mode(["sh", "-c", "python main.py --mode 'p"]) is None  # an unbalanced quote: left as it is
    assert resolve_speed("auto", ["python", "main.py", "--mode=p"]) == f"{PERFORMANCE_SPEED:g}"
    assert resolve_speed("auto", ["python", "main.py", "--mode", "a"]) == "fast"
    assert resolve_speed("auto", ["python", "main.py", "--mode", "e"]) == f"{ENERGY_SPEED:g}"
    assert resolve_speed("auto", ["python", "main.py"]) == "fast"
    assert resolve_speed("realtime", ["python", "main.py", "--mode", "p"]) == "realtime"
    # the factor keeps the shortest official performance loop (kws01: 5 x
    # infer 70 10 = 5 x 80 x 181.9 ms on the board) above the runner's 10 s
    assert 5 * 80 * 0.1819 / PERFORMANCE_SPEED > 10.0 * 1.5


def test_comports_lists_the_twin_dut_first_with_its_usb_identity(tmp_path):
    rc, report = run_child(LIST_PORTS, tmp_path)
    assert rc == 0
    ports = report["ports"]
    first = ports[0]
    usb = USB_IDENTITIES["l4r5zi"]
    assert (first["vid"], first["pid"]) == (0x0483, 0x374B) == (usb.vid, usb.pid)
    assert first["device"].startswith("/dev/pts/")
    assert first["description"] == "STM32 STLink"
    assert first["hwid"].startswith("USB VID:PID=0483:374B")
    assert first["manufacturer"] == "STMicroelectronics"
    # exactly one twin port in performance mode; the real ports follow it
    assert sum(1 for p in ports if (p["vid"], p["pid"]) == (0x0483, 0x374B)) == 1
    assert Path(report["pythonpath"].split(os.pathsep)[0]).name.startswith("tinytwin-external-")


def test_hide_real_ports(tmp_path):
    rc, report = run_child(LIST_PORTS, tmp_path, hide_real_ports=True)
    assert rc == 0
    assert [(p["vid"], p["pid"]) for p in report["ports"]] == [(0x0483, 0x374B)]


def test_every_pyserial_listing_module_is_patched_once(tmp_path):
    code = """
    import json, sys
    from serial.tools import list_ports, list_ports_posix, list_ports_linux
    counts = [sum(1 for p in m.comports() if p.vid == 0x0483) for m in (list_ports, list_ports_posix, list_ports_linux)]
    grep = [p.device for p in list_ports.grep("374B")]
    json.dump(dict(counts=counts, grep=grep), open(sys.argv[1], "w"))
    """
    rc, report = run_child(code, tmp_path)
    assert rc == 0
    assert report["counts"] == [1, 1, 1]
    assert len(report["grep"]) == 1


def test_pyserial_is_not_imported_before_the_program_imports_it(tmp_path):
    code = """
    import json, sys
    before = any(m.startswith("serial") for m in sys.modules)
    json.dump(dict(before=before), open(sys.argv[1], "w"))
    """
    rc, report = run_child(code, tmp_path)
    assert rc == 0 and report == {"before": False}


def test_the_discovered_port_is_the_dut(tmp_path):
    code = """
    import json, sys, serial
    from serial.tools import list_ports
    dev = next(p.device for p in list_ports.comports(True) if (p.vid, p.pid) == (0x0483, 0x374B))
    lines = []
    with serial.Serial(dev, 115200, timeout=5) as s:
        for cmd in (b"name%", b"profile%", b"db load 2%", b"db 0b01%"):
            s.write(cmd)
            while True:
                line = s.readline().decode().strip()
                lines.append(line)
                if line == "m-ready" or not line:
                    break
    json.dump(dict(lines=lines), open(sys.argv[1], "w"))
    """
    rc, report = run_child(code, tmp_path)
    assert rc == 0
    assert report["lines"] == [
        "m-name-dut-[unspecified]", "m-ready",
        "m-profile-[ULPMark for tinyML Firmware V0.0.1]", "m-model-[kws01]", "m-ready",
        "m-[Expecting 2 bytes]", "m-ready",
        "m-load-done", "m-ready",
    ]


def test_drop_line_loses_the_nth_line_after_the_host_first_speaks(tmp_path):
    code = """
    import json, sys, serial
    from serial.tools import list_ports
    dev = next(p.device for p in list_ports.comports(True) if p.vid == 0x0483)
    with serial.Serial(dev, 115200, timeout=1.5) as s:
        s.write(b"name%")
        first = s.read(200).decode()
        s.write(b"name%")
        second = s.read(200).decode()
    json.dump(dict(first=first, second=second), open(sys.argv[1], "w"))
    """
    rc, report = run_child(code, tmp_path, drop_lines=["m-ready:1"])
    assert rc == 0
    # the boot banner's m-ready (before the host spoke) does not count
    assert report["first"] == "m-name-dut-[unspecified]\r\n"
    assert report["second"] == "m-name-dut-[unspecified]\r\nm-ready\r\n"


def test_line_drop_spec():
    d = LineDrop.parse("m-ready:5")
    assert (d.text, d.occurrence) == ("m-ready", 5)
    assert LineDrop.parse("a:b:2").text == "a:b"
    for bad in ("m-ready", "m-ready:0", ":3", "m-ready:x"):
        with pytest.raises(ConfigError, match="--drop-line expects TEXT:N"):
            LineDrop.parse(bad)


def test_another_sitecustomize_still_runs(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['OTHER_SITECUSTOMIZE'] = 'ran'\n")
    code = """
    import json, os, sys
    from serial.tools import list_ports
    vids = [p.vid for p in list_ports.comports()]
    json.dump(dict(other=os.environ.get("OTHER_SITECUSTOMIZE"), twin=0x0483 in vids,
                   path_kept=any(p.endswith("other") for p in sys.path)), open(sys.argv[1], "w"))
    """
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(other)
    try:
        rc, report = run_child(code, tmp_path)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    assert rc == 0
    assert report == {"other": "ran", "twin": True, "path_kept": True}


def test_exit_status_and_teardown(tmp_path):
    bench = open_bench(KWS01, **echo())
    device, inject = bench.sides[0].device, bench.inject_dir
    assert (inject / "sitecustomize.py").read_text() == (REPO / "emulator/benches/inject/sitecustomize.py").read_text()
    config = json.loads((inject / "ports.json").read_text())
    assert [p["device"] for p in config["ports"]] == [device]
    bench.close()
    assert not inject.exists()
    assert bench.sides[0].port.closed and bench.twin._thread is None

    rc, _ = run_child("import sys; sys.exit(7)", tmp_path)
    assert rc == 7
    rc, _ = run_child("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", tmp_path)
    assert rc == 128 + signal.SIGTERM


def _launcher_script() -> str:
    return textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from test_external import KWS01, echo
        from emulator.benches.external import run_external
        sys.exit(run_external(sys.argv[1:], KWS01, log=lambda m: None, **echo()))
        """
    )



def test_cli_passes_cwd_stdin_stdout_and_exit_code(tmp_path):
    """Through a separate launcher process, as a user runs it."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    launcher = _launcher_script()
    child = "import os, sys; print(os.getcwd()); print(sys.stdin.read().upper()); sys.exit(3)"
    proc = subprocess.run(
        [sys.executable, "-c", launcher, sys.executable, "-c", child],
        cwd=workdir, input="hello board", capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.splitlines() == [str(workdir), "HELLO BOARD"]



def _launch_and_wait(launcher: str, child: str, marker: Path, **popen) -> subprocess.Popen:
    """Start the launcher with ``child`` as its command; return once the child
    has written ``marker`` (it is running)."""
    proc = subprocess.Popen([sys.executable, "-c", launcher, sys.executable, "-c", child], **popen)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "child did not start"
        time.sleep(0.05)
    return proc

def test_sigterm_to_the_launcher_reaches_the_child(tmp_path):
    launcher = _launcher_script()
    marker = tmp_path / "started"
    child = (
        "import signal, sys, time, pathlib\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
        f"pathlib.Path({str(marker)!r}).write_text('x')\n"
        "time.sleep(30)\n"
    )
    proc = _launch_and_wait(launcher, child, marker)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 42


def test_sigint_to_a_launcher_without_a_terminal_reaches_the_child(tmp_path):
    """A CI supervisor sends SIGINT to the launcher's pid only (no terminal):
    the child must get it (the launcher used to ignore it and wait)."""
    launcher = _launcher_script()
    marker = tmp_path / "started"
    child = (
        "import sys, time, pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('x')\n"
        "try:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n    sys.exit(43)\n"
    )
    proc = _launch_and_wait(launcher, child, marker, stdin=subprocess.DEVNULL)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 43


def test_errors_are_reported_not_raised_from_deep_inside(tmp_path):
    with pytest.raises(ExternalError, match="no command"):
        run_external([], KWS01, log=lambda m: None, **echo())
    with pytest.raises(ExternalError, match="interface"):
        run_external(["true"], KWS01, interface="uno", log=lambda m: None, **echo())
    with pytest.raises(ExternalError, match="command not found"):
        run_external(["/nonexistent/prog"], KWS01, log=lambda m: None, **echo())
    script = tmp_path / "no-shebang"
    script.write_bytes(b"\x7fELF-not-really\n")
    script.chmod(0o755)
    with pytest.raises(ExternalError, match="cannot execute"):  # ENOEXEC: not a traceback
        run_external([str(script)], KWS01, log=lambda m: None, **echo())
    with pytest.raises(ExternalError, match="speed"):
        run_external(["true"], KWS01, speed="warp", log=lambda m: None, **echo())


def test_cli_is_mounted():
    proc = subprocess.run(
        [sys.executable, "-c", "from emulator.cli import main; main()", "external", "--help"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--energy" in proc.stdout and "--interface" in proc.stdout and "--timer-start-us" in proc.stdout


ENERGY_PORTS = r"""
import json, sys, serial, time
from serial.tools import list_ports
ports = {(p.vid, p.pid): p.device for p in list_ports.comports(True) if p.vid}
out = dict(ids=sorted(f"{v:04X}:{p:04X}" for v, p in ports))
io = ports.get((0x0483, 0x374E)) or ports.get((0x2341, 0x0043))
with serial.Serial(io, 115200, timeout=3) as s:
    s.write(b"name%")
    out["io"] = s.read_until(b"m-ready\r\n").decode(errors="replace")
with serial.Serial(ports[(0x0483, 0x5740)], 3686400, timeout=3) as s:
    s.write(b"htc\n")
    out["emon"] = s.read_until(b"ack htc\r\n").decode(errors="replace")
json.dump(out, open(sys.argv[1], "w"))
"""


@pytest.mark.parametrize("interface,io_id,io_name", [
    ("h573", "0483:374E", "tinyML Enhanced Interface Board"),
    ("arduino", "2341:0043", "m-ready"),
])
def test_energy_bench_ports(tmp_path, interface, io_id, io_name):
    rc, report = run_child(ENERGY_PORTS, tmp_path, energy=True, interface=interface, hide_real_ports=True)
    assert rc == 0
    # the interface board and the LPM01A; the DUT's own USB is not connected
    assert report["ids"] == sorted([io_id, "0483:5740"])
    assert io_name in report["io"]
    assert report["emon"].endswith("ack htc\r\n")


def test_trace_logs_both_directions(tmp_path):
    code = """
    import json, sys, serial
    from serial.tools import list_ports
    dev = next(p.device for p in list_ports.comports(True) if p.vid == 0x0483)
    with serial.Serial(dev, 115200, timeout=3) as s:
        s.write(b"name%")
        s.read_until(b"m-ready\\r\\n")
    """
    trace = tmp_path / "wire.log"
    rc, _ = run_child(code, tmp_path, trace=trace)
    assert rc == 0
    lines = trace.read_text().splitlines()
    assert lines[0].startswith("#")
    sent = [l for l in lines if " dut " in l and " > " in l]
    got = "".join(eval(l.split(" < ", 1)[1]).decode() for l in lines[1:] if " < " in l)
    assert sent and "b'name%'" in sent[0]
    assert "m-name-dut-[unspecified]\r\nm-ready\r\n" in got
    sim_times = [float(l.split()[0]) for l in lines[1:]]
    assert sim_times == sorted(sim_times)


def test_port_listing_works_with_pyserial_3_4(monkeypatch, tmp_path):
    """pyserial before 3.5 (Ubuntu 20.04's 3.4) has no skip_link_detection:
    the injected listing must not raise TypeError inside the runner."""
    import importlib.util

    from serial.tools import list_ports_common

    real = list_ports_common.ListPortInfo

    class ListPortInfo34(real):  # pyserial 3.4's signature
        def __init__(self, device):
            super().__init__(device)

    monkeypatch.setattr(list_ports_common, "ListPortInfo", ListPortInfo34)
    path = Path(__file__).resolve().parents[1] / "emulator" / "benches" / "inject" / "sitecustomize.py"
    spec = importlib.util.spec_from_file_location("tinytwin_inject_sitecustomize", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.delenv("TINYTWIN_EXTERNAL_PORTS", raising=False)
    spec.loader.exec_module(mod)
    info = mod._port_info({"device": "/dev/pts/99", "vid": 0x0483, "pid": 0x374B, "description": "STLink"})
    assert (info.device, info.vid, info.pid, info.description) == ("/dev/pts/99", 0x0483, 0x374B, "STLink")


def test_injection_folders_of_launchers_that_are_gone_are_swept(tmp_path, monkeypatch):
    """A launcher killed with SIGKILL leaves its folder (ports.json, the control
    socket, sitecustomize.py); the next launcher removes it, and only it: a
    running launcher holds a lock on its owner.pid (a pid alone would be
    reused, and differs between containers sharing /tmp)."""
    import fcntl
    import tempfile as _tempfile

    from emulator.benches.external import INJECT_PREFIX, OWNER_FILE

    short = Path(_tempfile.mkdtemp(prefix="tt-sweep-", dir="/tmp"))  # the control socket's path must stay short
    monkeypatch.setattr(_tempfile, "tempdir", str(short))
    stale, live, foreign = (short / (INJECT_PREFIX + n) for n in ("stale", "live", "older"))
    for d in (stale, live, foreign):
        d.mkdir()
        (d / "ports.json").write_text("{}")
    (stale / OWNER_FILE).write_text("1")  # nobody holds it (whatever pid it names)
    (live / OWNER_FILE).write_text("999999")
    held = os.open(live / OWNER_FILE, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)  # as a running launcher does
    try:
        assert run_external(["true"], KWS01, log=lambda m: None, **echo()) == 0
    finally:
        os.close(held)
    assert not stale.exists() and live.exists() and foreign.exists()
    assert not [p for p in short.glob(INJECT_PREFIX + "*") if p not in (live, foreign)]  # its own is gone too
    shutil.rmtree(short)

def test_a_command_that_never_reached_the_twin_gets_a_hint():
    """A child run with -I (or a Python without pyserial, a wrapper dropping
    PYTHONPATH) never sees the injected listing: when it fails, say why that
    may be; one that listed the ports and failed for its own reasons gets no such note."""
    said: list[str] = []
    rc = run_external([sys.executable, "-I", "-c", "import serial.tools.list_ports as l; l.comports(); raise SystemExit(3)"],
                      KWS01, log=said.append, **echo())
    assert rc == 3 and any("without ever listing the serial ports" in m and "-I, -E or -S" in m for m in said)
    said.clear()
    rc = run_external([sys.executable, "-c", "import serial.tools.list_ports as l; l.comports(); raise SystemExit(3)"],
                      KWS01, log=said.append, **echo())
    assert rc == 3 and not any("without ever listing" in m for m in said)


def test_hide_real_ports_hides_real_usb_instruments_too(monkeypatch, tmp_path):
    """With --hide-real-ports a real JS220 on the host must not be found by the
    runner's usb.core.find (devices_sww.yaml prefers a JS220 to the twin's LPM01A)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "emulator" / "benches" / "inject" / "sitecustomize.py"
    spec = importlib.util.spec_from_file_location("tinytwin_inject_sitecustomize2", path)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.delenv("TINYTWIN_EXTERNAL_PORTS", raising=False)
    spec.loader.exec_module(mod)

    class RealJs220:  # what pyusb returns for a JS220 plugged into the host
        idVendor, idProduct = 0x16D0, 0x10BA

    def real_find(find_all=False, backend=None, custom_match=None, **args):
        return iter([RealJs220()]) if find_all else RealJs220()

    class Usb:
        __name__ = "usb.core"
        find = staticmethod(real_find)

    for hide, expect in ((False, 1), (True, 0)):
        usb = Usb()
        mod._patch_module(usb, {"usb_devices": [], "hide_real_ports": hide, "ports": []})
        found = list(usb.find(find_all=True, idVendor=0x16D0, idProduct=0x10BA))
        assert len(found) == expect, hide
        assert (usb.find(idVendor=0x16D0, idProduct=0x10BA) is None) is hide


def test_under_nohup_the_command_keeps_ignoring_sighup(tmp_path):
    """nohup's ignored SIGHUP must reach the command as ignored (a caught
    signal is reset to its default by exec)."""
    out = tmp_path / "hup"
    child = f"import signal, pathlib; pathlib.Path({str(out)!r}).write_text(str(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN))"
    proc = subprocess.run([sys.executable, "-c", _launcher_script(), sys.executable, "-c", child],
                          preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN), timeout=60)
    assert proc.returncode == 0 and out.read_text() == "True"


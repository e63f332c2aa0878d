"""The twin's Joulescope JS220: its driver-link core, the stand-in driver's
arithmetic, and the instrument as the real ``joulescope`` package sees it
under ``tinytwin external`` (scan, ``open()`` returning None, 1 Msps
samples, GPI0 edges, NaN on lost frames, unplugging), fed from the same
power model and timestamp pin as the LPM01A.

The end-to-end tests need ``pip install joulescope pyusb`` (they skip
otherwise); mlcommons/tiny's runner on it is in ``test_external_mlcommons.py``.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import textwrap

import numpy as np
import pytest

from emulator.benches.external import run_external
from emulator.benches.inject import JOULESCOPE_DRIVER
from emulator.benches.setups import BenchSetup
from emulator.emon.js220.core import (RC_CLOSED, RC_IN_USE, RC_NOT_SUPPORTED, RC_SYNTAX_ERROR, VERSIONS, Closed,
                                      Js220Core, Opened, QueryGpi, Reply, SetStreaming)
from test_external import ECHO_TIMING, KWS01, EchoEngine


def replies(actions):
    return [json.loads(a.data) for a in actions if isinstance(a, Reply)]


def run_core(core, *lines):
    core.feed(b"".join(json.dumps(x).encode() + b"\n" if isinstance(x, dict) else x for x in lines))
    out = []
    while (acts := core.step()) is not None:
        out.extend(acts)
    return out


def test_core_open_stream_close():
    core = Js220Core("TWIN0001")
    acts = run_core(core, {"op": "publish", "topic": "s/i/ctrl", "value": 1, "id": 1})
    assert replies(acts)[0]["rc"] == RC_CLOSED  # not open yet
    acts = run_core(core, {"op": "open", "id": 2})
    assert isinstance(acts[0], Opened) and replies(acts)[0] == {"op": "rc", "topic": "@/!open", "rc": 0, "id": 2,
                                                               "retained": VERSIONS}
    assert replies(run_core(core, {"op": "open", "id": 3}))[0]["rc"] == RC_IN_USE
    acts = run_core(core, {"op": "publish", "topic": "s/i/ctrl", "value": 1, "id": 4},
                    {"op": "publish", "topic": "s/gpi/0/ctrl", "value": 1, "id": 5})
    streams = [a.topics for a in acts if isinstance(a, SetStreaming)]
    assert streams == [frozenset({"s/i/"}), frozenset({"s/i/", "s/gpi/0/"})]
    # the GPI query: its return code, then the instrument publishes the levels
    acts = run_core(core, {"op": "publish", "topic": "s/gpi/+/!req", "value": 0, "id": 7})
    assert replies(acts)[0]["rc"] == 0 and isinstance(acts[-1], QueryGpi)
    acts = run_core(core, {"op": "close", "id": 6})
    assert SetStreaming(frozenset()) in acts and any(isinstance(a, Closed) for a in acts)


def test_core_bad_input_is_answered_and_bounded():
    core = Js220Core()
    assert replies(run_core(core, b"not json\n"))[0]["rc"] == RC_SYNTAX_ERROR
    assert replies(run_core(core, {"op": "fly", "id": 1}))[0]["rc"] == RC_NOT_SUPPORTED
    core.feed(b"x" * 200_000)  # no line end: dropped, not kept
    assert core.step() is None and len(core._rx) == 0
    acts = run_core(core, b"yyy\n", {"op": "open", "id": 9})  # the tail of the dropped line is skipped
    assert [r["id"] for r in replies(acts)] == [9]


def stand_in():
    spec = importlib.util.spec_from_file_location("standin_pyjoulescope_driver", JOULESCOPE_DRIVER / "__init__.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stand_in_samples_are_exact_averages():
    m = stand_in()
    # 1 A from 0, 3 A from id 3.5: samples of 2 ids each
    avg = m.integrate([(0.0, 1.0), (3.5, 3.0)], 0, np.array([0.0, 2.0, 4.0, 6.0]))
    assert avg.tolist() == [1.0, 1.5, 3.0]  # [2, 4): 1.5 ids at 1 A, 0.5 at 3 A
    assert m.current_range(np.array([10e-6, 1e-3, 13e-3, 23e-3, 1.0])).tolist() == [6, 4, 3, 2, 1]


# -- under tinytwin external, with the real joulescope package -----------------------------------------


@pytest.fixture(scope="module")
def joulescope():
    for name in ("joulescope", "usb.core"):
        try:
            __import__(name)
        except ImportError:
            pytest.skip(f"needs {name.split('.')[0]} (pip install joulescope pyusb; pyusb needs libusb-1.0)")


CHILD = r'''
import json, os, sys, time
import numpy as np
from runner.emon_lpm01a import Lpm01aClient
from runner.ioman_client import IoManagerClient
from runner.protocol import db_commands
from emulator.control import ControlClient
import usb.core
from joulescope import scan, scan_require_one

out = {}
ports = json.load(open(os.environ["TINYTWIN_EXTERNAL_PORTS"]))
role = {p["role"]: p["device"] for p in ports["ports"]}
out["usb"] = sorted(f"{d.idVendor:04X}:{d.idProduct:04X}" for d in usb.core.find(find_all=True) if getattr(d, "tinytwin", False))
out["find_one"] = repr(usb.core.find(idVendor=0x16D0, idProduct=0x10BA))
ctl = ControlClient(os.environ["TINYTWIN_CONTROL"])

devices = scan()
out["scan"] = [str(d) for d in devices]
out["open"] = repr(devices[0].open())
d = scan_require_one(config="ignore")
out["same"] = d is devices[0]
out["path"] = d.device_path
out["fw"] = d.info()["ctl"]["fw"]["ver"]
for k, v in (("source", "raw"), ("sensor_power", "on"), ("sampling_frequency", 1000000), ("io_voltage", "3.3V"),
             ("trigger_source", "gpi0"), ("current_lsb", "gpi0")):
    d.parameter_set(k, v)
out["gpi_idle"] = d.extio_status()["gpi_value"]["value"]  # the timestamp pin idles high: GPI0 = 1
d.start()

emon = Lpm01aClient(role["power"], timeout=3)
emon.open(); emon.connect(); emon.configure(1.8); emon.power(True); emon.start()
io = IoManagerClient(role["interface"], timeout=5)
io.open(); time.sleep(0.5); io.sync(); io.identify(); io.reset_dut_side()
io.dut("db load 490")
for c in db_commands(bytes(490), 26):
    io.dut(c)
first = emon.event_count
io.dut("infer 5 0", timeout=10)
assert emon.wait_events(first + 2, wall_limit=5.0)
e1, e2 = emon.events(first)[:2]
out["lpm_uj"] = float(emon.samples(e1.sample, e2.sample).sum()) * 1e6
out["lpm_s"] = (e2.sample - e1.sample) / 1000
time.sleep(0.5)
sb = d.stream_buffer
s, e = sb.sample_id_range
data = sb.samples_get(s, e, fields=["current", "voltage", "current_lsb"])
i = data["signals"]["current"]["value"].astype(np.float64)
v = data["signals"]["voltage"]["value"].astype(np.float64)
g = data["signals"]["current_lsb"]["value"].astype(int)
rise = np.flatnonzero((g[1:] == 1) & (g[:-1] == 0)) + 1
fall = np.flatnonzero((g[1:] == 0) & (g[:-1] == 1)) + 1
out["rises"], out["falls"] = len(rise), len(fall)
r1, r2 = rise[-2], rise[-1]
out["js_uj"] = float((i[r1:r2] * v[r1:r2]).sum() / 1e6) * 1e6
out["js_s"] = (r2 - r1) / 1e6
out["hold_us"] = float(rise[-1] - fall[-1])
out["volts"] = float(v[r1:r2].mean())
out["nan_before"] = int(np.isnan(i).sum())

ctl.call("js220-loss", ms=5)
time.sleep(0.5)
s2, e2_ = sb.sample_id_range
data = sb.samples_get(e, e2_, fields=["current", "current_lsb"])
i2 = data["signals"]["current"]["value"]
g2 = data["signals"]["current_lsb"]["value"].astype(int)
out["nan_after"] = int(np.isnan(i2).sum())
gap = np.flatnonzero(np.isnan(i2))
out["gpi_in_gap"] = int(g2[gap].max()) if len(gap) else None
out["rise_after_gap"] = bool(len(gap) and g2[gap[-1] + 1] == 1)

ctl.call("unplug", port="js220")
time.sleep(0.5)
out["after_unplug"] = d.stream_buffer is None
out["scan_unplugged"] = [str(x) for x in scan()]
ctl.call("replug", port="js220")
time.sleep(1.0)  # the driver looks for hotplug every 0.2 s
out["scan_replugged"] = [str(x) for x in scan()]
emon.stop(); emon.release(); emon.close(); io.close()
json.dump(out, open(sys.argv[1], "w"))
'''


def test_the_real_joulescope_package_on_the_twins_js220(joulescope, tmp_path):
    out = tmp_path / "out.json"
    setup = BenchSetup(interface="h573", firmware="energy", emon="both")
    rc = run_external([sys.executable, "-c", textwrap.dedent(CHILD), str(out)], KWS01.replace(speed="realtime"),
                      setup=setup, engine=EchoEngine(), timing=ECHO_TIMING, log=lambda m: None)
    assert rc == 0
    r = json.loads(out.read_text())
    # found as the runner finds it: pyusb lists it; joulescope scans it; open() returns None
    assert r["usb"] == ["16D0:10BA"] and "16D0:10BA" in r["find_one"]
    assert r["scan"] == ["JS220-TWIN0001"] and r["open"] == "None" and r["same"]
    assert r["path"] == "u/js220/TWIN0001" and r["fw"] == "1.2.1"
    assert r["gpi_idle"] == 1  # extio_status() queries s/gpi/+/!req
    # the same window through both instruments: the LPM01A between falling
    # edges, the JS220 between rising ones (each shifted by the timestamp
    # pulse, ECHO_TIMING's hold): same length, same energy
    assert r["hold_us"] == pytest.approx(ECHO_TIMING.timestamp_hold_ns / 1000, abs=1)
    assert r["js_s"] == pytest.approx(r["lpm_s"], abs=0.002)
    assert r["js_uj"] == pytest.approx(r["lpm_uj"], rel=0.01)
    assert r["volts"] == pytest.approx(1.8, abs=1e-6) and r["nan_before"] == 0
    # 5 ms of lost frames: 5000 NaN samples, GPI read as 0 there (a rising
    # edge at the end of the gap that the DUT never made)
    assert r["nan_after"] == 5000 and r["gpi_in_gap"] == 0 and r["rise_after_gap"]
    # unplugged: the joulescope package closes the device and forgets it; plugged
    # in again, it is told (@/!add) and scans it again
    assert r["after_unplug"] and r["scan_unplugged"] == []
    assert r["scan_replugged"] == ["JS220-TWIN0001"]


def test_a_host_that_dies_with_the_device_open_does_not_lock_it():
    # a process that exits without close() (killed, os._exit): the OS frees the
    # USB interface, and the next process's open works
    import socket

    from emulator.emon.js220.device import Js220
    from emulator.sim import Twin
    from emulator.transport import SocketPort

    twin = Twin("fast")
    js = Js220(twin)

    def host():
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        return js.attach(SocketPort("js220#host", ours)), theirs

    def ask(port, sock, msg) -> dict:
        twin.inject_at(port, json.dumps(msg).encode() + b"\n", twin.now)
        twin.run_until_idle()
        return json.loads(sock.recv(65536).splitlines()[-1])

    first, first_sock = host()
    assert ask(first, first_sock, {"op": "open", "id": 1})["rc"] == 0
    second, second_sock = host()
    assert ask(second, second_sock, {"op": "open", "id": 2})["rc"] == RC_IN_USE  # while the first holds it
    twin.remove_port(first)  # the first host's process died: its link closed, as the twin's loop sees it
    first_sock.close()
    assert ask(second, second_sock, {"op": "open", "id": 3})["rc"] == 0
    twin.close()


def test_the_gpi_query_is_answered_after_its_return_code():
    # joulescope's extio_status(): publish s/gpi/+/!req, wait for s/gpi/+/!value
    import socket

    from emulator.emon.js220.device import Js220
    from emulator.sim import Twin
    from emulator.transport import SocketPort

    twin = Twin("fast")
    js = Js220(twin)  # nothing wired to its GPI: it reads 0
    ours, theirs = socket.socketpair()
    port = js.attach(SocketPort("js220#host", ours))
    for msg in ({"op": "open", "id": 1}, {"op": "publish", "topic": "s/gpi/+/!req", "value": 0, "id": 2}):
        twin.inject_at(port, json.dumps(msg).encode() + b"\n", twin.now)
        twin.run_until_idle()
    lines = [json.loads(x) for x in theirs.recv(65536).splitlines()]
    assert [(m["op"], m["topic"]) for m in lines] == [("rc", "@/!open"), ("rc", "s/gpi/+/!req"),
                                                      ("publish", "s/gpi/+/!value")]
    assert lines[-1]["value"] == 0
    twin.close()

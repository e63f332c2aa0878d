"""tinytwin's stand-in for Jetperch's ``pyjoulescope_driver``: the twin's
virtual Joulescope JS220, for the real ``joulescope`` package.

``tinytwin external --emon js220`` (or ``both``) copies this package into the
temporary directory it puts at the front of the launched program's
``PYTHONPATH``, so that in that program (and only there) ``import
pyjoulescope_driver`` finds this one instead of the installed driver. The
real ``joulescope`` package (``pip install joulescope``) runs unchanged on
top of it: ``joulescope.v1`` imports nothing from the driver but
:class:`Driver`, and everything it does with the instrument goes through
the driver's publish/subscribe API, which this module implements for one
kind of device, the twin's JS220. Nothing else of the program is touched.

What it does, as the real driver (``pyjoulescope_driver`` 2.x on
``joulescope_driver``'s ``js220_usb.c``) does it:

* ``device_paths()`` lists ``u/js220/<serial>`` for each JS220 of the twin
  (read from the ``ports.json`` named by ``$TINYTWIN_EXTERNAL_PORTS``) whose
  link exists; ``@/!remove`` is published when one goes away and ``@/!add``
  when one comes (``tinytwin ctl unplug/replug``: hotplug, looked for every
  ``HOTPLUG_S``);
* ``open()`` returns ``None`` (the real ``Driver.open`` returns nothing; the
  mlcommons runner's ``devices[0].open()`` is therefore always ``None``);
* ``h/fs`` (the output rate) is the driver's own, host-side topic; the
  device topics (``s/i/ctrl`` ...) go to the instrument;
* stream messages on ``{path}/s/i/!data``, ``s/v/``, ``s/p/``,
  ``s/i/range/``, ``s/gpi/0/``, ``s/gpi/1/``: dicts with ``sample_id``
  (2 Msps counts), ``field_id``, ``index``, ``sample_rate`` (2e6),
  ``decimate_factor``, ``data``, ``utc`` and ``time_map``; current, voltage
  and power as float32 at the output rate (power = current x voltage on the
  host, as the real driver computes it at 1 Msps), the current range as
  uint8 and the GPI inputs as packed bits (little bit order) at 2 Msps;
* a publish of ``s/gpi/+/!req`` is answered on ``{path}/s/gpi/+/!value``
  with the GPI levels (bit 0: GPI0), as ``extio_status()`` expects;
* a stretch of the stream the instrument did not deliver (lost USB frames)
  shows as a jump of ``sample_id``: ``joulescope``'s stream buffer fills it
  with NaN (and GPI with 0), as with the real driver.

The instrument sends its signals as piecewise-constant breakpoints (see
``emulator/emon/js220/core.py``); each output sample here is the exact
average of the current (and voltage) over its period.
"""
import json
import os
import socket
import threading
import time

import numpy as np

__version__ = "0.0.0+tinytwin"
__title__ = "pyjoulescope_driver (tinytwin stand-in)"

_PORTS_ENV = "TINYTWIN_EXTERNAL_PORTS"
SAMPLE_ID_RATE = 2_000_000
_TIME64_2018 = 1514764800  # 2018-01-01 UTC: time64's epoch
_DEFAULT_TIMEOUT = 1.0
#: how often the driver looks for JS220s plugged in or out (s)
HOTPLUG_S = 0.2
#: the real driver's stream fields: topic -> (field_id, index)
_FIELDS = {
    "s/i/": (1, 0),
    "s/v/": (2, 0),
    "s/p/": (3, 0),
    "s/i/range/": (4, 0),
    "s/gpi/0/": (5, 0),
    "s/gpi/1/": (5, 1),
}
#: current ranges (index in the range stream) and their full scale, A
_RANGES = ((6, 18e-6), (5, 180e-6), (4, 1.8e-3), (3, 18e-3), (2, 180e-3), (1, 2.0), (0, 10.0))


class ErrorCode:
    SUCCESS = 0
    NOT_SUPPORTED = 3
    PARAMETER_INVALID = 5
    TIMED_OUT = 11
    NOT_FOUND = 16
    IN_USE = 21
    CLOSED = 22


def _twin_devices():
    path = os.environ.get(_PORTS_ENV)
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError):
        return []
    return [d for d in config.get("usb_devices", []) if d.get("kind") == "js220"]


def _time64(seconds):
    return int((seconds - _TIME64_2018) * (1 << 30))


def integrate(breaks, k0, bounds):
    """Averages of a piecewise-constant signal over consecutive intervals.

    ``breaks``: ``[(s, value), ...]`` sorted by ``s`` (sample ids, floats),
    the first at or before ``bounds[0]``; ``bounds``: the interval edges.
    Returns ``len(bounds) - 1`` averages."""
    s = np.array([b[0] for b in breaks], dtype=np.float64)
    v = np.array([b[1] for b in breaks], dtype=np.float64)
    s[0] = min(s[0], bounds[0])
    cum = np.concatenate(([0.0], np.cumsum(v[:-1] * np.diff(s))))
    idx = np.clip(np.searchsorted(s, bounds, side="right") - 1, 0, None)
    area = cum[idx] + v[idx] * (bounds - s[idx])
    return np.diff(area) / np.diff(bounds)


def current_range(amps):
    """The JS220's autoranged current range index for each current."""
    out = np.zeros(len(amps), dtype=np.uint8)
    a = np.abs(amps)
    for index, full in reversed(_RANGES):
        out[a <= full] = index
    return out


class _Session:
    """One open JS220: its socket, its reader thread, its stream state."""

    def __init__(self, driver, path, sock_path, timeout):
        self.driver = driver
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(sock_path)
        self.sock.settimeout(None)
        self.lock = threading.Lock()
        self.replies = {}
        self.cond = threading.Condition()
        self.next_id = 0
        self.retained = {}
        self.fs = SAMPLE_ID_RATE
        self.enabled = set()
        self.closed = False
        self.reader = None
        self._reset_stream()

    def _reset_stream(self):
        self.out_next = None  # next output sample id (multiple of the decimation)
        self.avail = None  # end of what the instrument sent
        self.i_breaks = []
        self.v_breaks = []
        self.gpi_carry = np.zeros(0, dtype=np.uint8)
        self.gpi_next = None
        self.time_map = {"offset_time": _time64(time.time()), "offset_counter": 0, "counter_rate": float(SAMPLE_ID_RATE)}

    def start(self):
        self.reader = threading.Thread(target=self._read, name="tinytwin-js220", daemon=True)
        self.reader.start()

    # -- requests -----------------------------------------------------------------
    def request(self, msg, timeout):
        with self.cond:
            self.next_id += 1
            rid = self.next_id
        msg["id"] = rid
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        try:
            with self.lock:
                self.sock.sendall(data)
        except OSError as exc:
            raise RuntimeError(f"{self.path}: the device is gone ({exc})") from None
        if timeout == 0 or threading.current_thread() is self.reader:
            return None
        limit = _DEFAULT_TIMEOUT if timeout is None else float(timeout)
        end = time.monotonic() + limit
        with self.cond:
            while rid not in self.replies:
                left = end - time.monotonic()
                if self.closed:
                    raise RuntimeError(f"{self.path}: the device is gone")
                if left <= 0:
                    raise TimeoutError(f"{self.path}: {msg.get('op')} {msg.get('topic', '')} timed out")
                self.cond.wait(min(left, 0.1))
            return self.replies.pop(rid)

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.cond:
            self.cond.notify_all()

    # -- the instrument's messages ----------------------------------------------
    def _read(self):
        buf = b""
        try:
            while not self.closed:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._message(line)
        except OSError:
            pass
        gone = not self.closed
        self.closed = True
        with self.cond:
            self.cond.notify_all()
        if gone:
            self.driver._removed(self.path)

    def _message(self, line):
        try:
            msg = json.loads(line)
            op = msg["op"]
        except (ValueError, KeyError, TypeError):
            return  # a damaged frame: its data is lost
        if op == "rc":
            if "retained" in msg:
                self.retained.update(msg["retained"])
            with self.cond:
                if msg.get("id") is not None:
                    self.replies[msg["id"]] = msg
                self.cond.notify_all()
        elif op == "data":
            try:
                self._data(int(msg["k0"]), int(msg["k1"]), msg["i"], msg["v"], msg["gpi"])
            except (KeyError, TypeError, ValueError, IndexError):
                return
        elif op == "publish":  # a value the instrument publishes (s/gpi/+/!value)
            topic = msg.get("topic")
            if isinstance(topic, str):
                self.driver._publish_local(f"{self.path}/{topic}", msg.get("value"))

    def _publish_stream(self, base, sample_id, decimate, data):
        if base not in self.enabled:
            return
        field_id, index = _FIELDS[base]
        tm = self.time_map
        value = {
            "sample_id": int(sample_id),
            "utc": tm["offset_time"] + int((sample_id - tm["offset_counter"]) / SAMPLE_ID_RATE * (1 << 30)),
            "field_id": field_id,
            "index": index,
            "sample_rate": SAMPLE_ID_RATE,
            "decimate_factor": int(decimate),
            "time_map": dict(tm),
            "data": data,
        }
        self.driver._publish_local(f"{self.path}/{base}!data", value)

    def _data(self, k0, k1, i_breaks, v_breaks, gpi):
        if k1 <= k0:
            return
        if self.avail is None:
            self.time_map["offset_counter"] = k0
        decim = max(1, SAMPLE_ID_RATE // max(1, int(self.fs)))
        if self.avail is None or k0 != self.avail:
            # the first data, or a gap (lost frames): start over at k0
            self.out_next = -(-k0 // decim) * decim
            self.i_breaks, self.v_breaks = [], []
            self.gpi_carry = np.zeros(0, dtype=np.uint8)
            self.gpi_next = k0
        self.avail = k1
        self.i_breaks += [tuple(b) for b in i_breaks]
        self.v_breaks += [tuple(b) for b in v_breaks]
        # current, voltage, power, range: whole output samples
        n = (k1 - self.out_next) // decim
        if n > 0 and self.i_breaks and self.v_breaks:
            bounds = self.out_next + decim * np.arange(n + 1, dtype=np.float64)
            cur = integrate(self.i_breaks, self.out_next, bounds)
            vol = integrate(self.v_breaks, self.out_next, bounds)
            start = self.out_next
            self.out_next += n * decim
            self.i_breaks = _tail(self.i_breaks, self.out_next)
            self.v_breaks = _tail(self.v_breaks, self.out_next)
            self._publish_stream("s/i/", start, decim, cur.astype(np.float32))
            self._publish_stream("s/v/", start, decim, vol.astype(np.float32))
            self._publish_stream("s/p/", start, decim, (cur * vol).astype(np.float32))
            rng = np.repeat(current_range(cur), decim)
            self._publish_stream("s/i/range/", start, 1, rng)
        # GPI at 2 Msps, packed 8 samples a byte
        levels = np.zeros(k1 - k0, dtype=np.uint8)
        for s, bits in gpi:
            s = int(s)
            if k0 <= s < k1:
                levels[s - k0:] = int(bits)
        levels = np.concatenate((self.gpi_carry, levels))
        whole = len(levels) // 8 * 8
        if whole:
            start = self.gpi_next
            self._publish_stream("s/gpi/0/", start, 1, np.packbits(levels[:whole] & 1, bitorder="little"))
            self._publish_stream("s/gpi/1/", start, 1, np.packbits((levels[:whole] >> 1) & 1, bitorder="little"))
            self.gpi_next = start + whole
        self.gpi_carry = levels[whole:]


def _tail(breaks, s):
    """The breakpoints that still matter from sample id ``s`` on."""
    i = 0
    while i + 1 < len(breaks) and breaks[i + 1][0] <= s:
        i += 1
    return breaks[i:]


class Driver:
    """The driver API ``joulescope.v1`` uses, for the twin's JS220s."""

    def __init__(self):
        self._subs = []  # (topic, fn)
        self._subs_lock = threading.Lock()
        self._sessions = {}
        self._log_level = "WARNING"
        self._finalized = False
        # hotplug, as the real backend reports it: @/!add and @/!remove
        self._present = set(self.device_paths())
        self._hotplug = threading.Thread(target=self._watch, name="tinytwin-js220-hotplug", daemon=True)
        self._hotplug.start()

    def _watch(self):
        while not self._finalized:
            time.sleep(HOTPLUG_S)
            now = set(self.device_paths())
            for path in sorted(now - self._present):
                self._publish_local("@/!add", path)
            for path in sorted(self._present - now):
                self._publish_local("@/!remove", path)
            self._present = now

    # -- housekeeping -------------------------------------------------------------
    @property
    def log_level(self):
        return self._log_level

    @log_level.setter
    def log_level(self, level):
        self._log_level = level

    def device_paths(self, timeout=None):
        return [d["path"] for d in _twin_devices() if os.path.exists(d.get("socket", ""))]

    def finalize(self, timeout=None):
        for path in list(self._sessions):
            try:
                self.close(path, timeout=0)
            except Exception:
                pass
        self._finalized = True

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.finalize()

    # -- publish / subscribe --------------------------------------------------------
    def subscribe(self, topic, flags, fn, timeout=None):
        if not callable(fn):
            raise ValueError("fn must be callable")
        with self._subs_lock:
            self._subs.append((topic, fn))

    def unsubscribe(self, topic, fn=None, timeout=None):
        if fn is None and callable(topic):  # unsubscribe(fn): every topic
            return self.unsubscribe_all(topic, timeout)
        with self._subs_lock:
            self._subs = [(t, f) for t, f in self._subs if not (t == topic and f == fn)]

    def unsubscribe_all(self, fn, timeout=None):
        with self._subs_lock:
            self._subs = [(t, f) for t, f in self._subs if f != fn]

    def _publish_local(self, topic, value):
        with self._subs_lock:
            subs = [f for t, f in self._subs if topic == t or topic.startswith(t.rstrip("/") + "/")]
        for fn in subs:
            fn(topic, value)

    def _removed(self, path):
        self._sessions.pop(path, None)
        self._present.discard(path)  # (said once: the hotplug watcher need not say it again)
        self._publish_local("@/!remove", path)

    def _split(self, topic):
        for path, session in self._sessions.items():
            if topic.startswith(path + "/"):
                return session, topic[len(path) + 1:]
        raise RuntimeError(f"publish {topic}: device not open")

    def publish(self, topic, value, timeout=None):
        if timeout == 0 and not any(topic.startswith(p + "/") for p in self._sessions):
            return None  # asynchronous: a device that is gone answers nothing, nobody waits
        session, sub = self._split(topic)
        if sub.startswith("h/"):  # host-side topics of the driver
            if sub == "h/fs":
                fs = int(value)
                if not 1 <= fs <= SAMPLE_ID_RATE:
                    raise RuntimeError(f"publish {topic} {value}: parameter invalid")
                session.fs = fs
            return None
        rsp = session.request({"op": "publish", "topic": sub, "value": value}, timeout)
        if sub.endswith("ctrl"):
            base = sub[: -len("ctrl")]
            if base in _FIELDS:
                (session.enabled.add if value not in (0, False, None, "0", "off") else session.enabled.discard)(base)
        if rsp is not None and rsp.get("rc"):
            raise RuntimeError(f"publish {topic} failed with error code {rsp['rc']}")
        return None

    def publish_and_wait(self, topic, value, timeout=None):
        return self.publish(topic, value, timeout)

    def query(self, topic, timeout=None):
        session, sub = self._split(topic)
        if sub in session.retained:
            return session.retained[sub]
        if sub == "h/fs":
            return session.fs
        raise RuntimeError(f"query {topic} failed: not found")

    # -- open / close ------------------------------------------------------------------
    def open(self, device_prefix, mode=None, timeout=None):
        if device_prefix in self._sessions:
            return None
        devices = {d["path"]: d for d in _twin_devices()}
        d = devices.get(device_prefix)
        if d is None or not os.path.exists(d.get("socket", "")):
            raise RuntimeError(f"open {device_prefix} failed: not found")
        limit = _DEFAULT_TIMEOUT if timeout is None else float(timeout)
        try:
            session = _Session(self, device_prefix, d["socket"], limit)
        except OSError as exc:
            raise RuntimeError(f"open {device_prefix} failed: {exc}") from None
        session.start()
        rsp = session.request({"op": "open", "mode": mode}, timeout)
        if rsp is not None and rsp.get("rc"):
            session.close()
            raise RuntimeError(f"open {device_prefix} failed with error code {rsp['rc']}")
        self._sessions[device_prefix] = session
        # like the real Driver.open: nothing is returned

    def close(self, device_prefix, timeout=None):
        session = self._sessions.pop(device_prefix, None)
        if session is None:
            return None
        try:
            session.request({"op": "close"}, timeout)
        except (RuntimeError, TimeoutError):
            pass
        session.close()


__all__ = ["Driver", "ErrorCode", "current_range", "integrate"]

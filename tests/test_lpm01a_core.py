"""The LPM01A shell as a pure state machine: answers, errors, encodings."""
from __future__ import annotations

import math

import pytest

from emulator.emon.lpm01a.core import (
    Lpm01aCore,
    Reply,
    ResetBoard,
    SetTargetPower,
    SetVoltage,
    StartAcquisition,
    StopAcquisition,
    TargetReset,
)
from emulator.emon.lpm01a.stream import (
    decode_ascii_value,
    decode_bin_value,
    encode_bin_value,
    format_ascii_value,
    parse_ascii_stream,
    parse_binary_stream,
    parse_value,
)

P = "PowerShield > "


def text(actions) -> str:
    return b"".join(a.data for a in actions if isinstance(a, Reply)).decode("latin-1")


def send(core: Lpm01aCore, line: str) -> list:
    return core.receive((line + "\r\n").encode())


@pytest.fixture
def core() -> Lpm01aCore:
    c = Lpm01aCore()
    assert text(send(c, "htc")) == f"{P}ack htc\r\n"
    return c


def err(cmd: str, detail: str) -> str:
    return f"{P}error {cmd}\r\n{P}Error detail: {detail}\r\n"


# -- common commands, standalone mode ------------------------------------------


def test_identification_answers_in_standalone_mode():
    c = Lpm01aCore()
    assert text(send(c, "version")) == f"{P}ack version: 1.0.6\r\n"
    ident = text(send(c, "powershield"))
    assert ident.startswith(f"{P}ack powershield ") and ident.endswith("\r\n")
    assert len(ident.split()[-1].split("-")) == 3  # the unique ID as three words
    assert text(send(c, "status")) == f"{P}ack status ok\r\n"
    assert text(send(c, "echo hello there")) == f"{P}ack echo hello there\r\n"
    helptext = text(send(c, "help"))
    assert helptext.startswith(f"{P}ack help\r\n") and "eventsrc" in helptext and "targrst" in helptext


def test_configuration_needs_host_control():
    c = Lpm01aCore()
    out = send(c, "volt 3000m")
    assert text(out) == err("volt 3000m", "host control required: send 'htc' first")
    assert not any(isinstance(a, SetVoltage) for a in out)
    assert text(send(c, "pwr on")) == err("pwr on", "host control required: send 'htc' first")
    send(c, "htc")
    assert text(send(c, "hrc")) == f"{P}ack hrc\r\n"
    assert text(send(c, "start")).startswith(f"{P}error start\r\n")


def test_unknown_command_and_line_endings():
    c = Lpm01aCore()
    assert text(c.receive(b"frobnicate 3\n")) == err("frobnicate 3", "unknown command 'frobnicate'")
    # CR LF, LF or CR alone end a line; blank lines are ignored; a line may arrive in pieces
    assert text(c.receive(b"\r\n\r\nver")) == ""
    assert text(c.receive(b"sion\r")) == f"{P}ack version: 1.0.6\r\n"
    assert text(c.receive(b"\n")) == ""


# -- configuration --------------------------------------------------------------


def test_mlcommons_setup_sequence_is_acknowledged(core):
    """The mlcommons/tiny runner's LPMCommands.setup() and power_on()."""
    for line in (
        'lcd 1 "MLPerf Tiny"',
        'lcd 2 "     monitor    "',
        "pwr off",
        "acqtime inf",
        "trigdelay 0",
        "trigsrc sw",
        "eventsrc d7 fal",
        "output energy",
        "format ascii_dec",
        "freq 1k",
        "volt 1800m",
        'lcd 2 "           1.8V "',
    ):
        assert text(send(core, line)) == f"{P}ack {line}\r\n", line
    out = send(core, "pwr on nostatus")
    assert text(out) == f"{P}ack pwr on nostatus\r\n"
    assert SetTargetPower(True) in out
    s = core.settings
    assert (s.voltage_mv, s.freq_hz, s.acqtime_s, s.output, s.format, s.trigdelay_s) == (1800, 1000, 0.0, "energy", "ascii_dec", 0.0)
    assert (s.eventsrc, s.event_edge, s.lcd) == ("d7", "fal", ("MLPerf Tiny", "           1.8V "))


@pytest.mark.parametrize(
    "line, mv",
    [("volt 3000m", 3000), ("volt 3000 m", 3000), ("volt 3-3", 0.003), ("volt 3300m", 3300), ("volt 1800m", 1800), ("volt 2", 2000)],
)
def test_volt_number_forms(core, line, mv):
    out = send(core, line)
    if mv < 1:
        assert text(out) == err(line, "voltage out of range [1800m; 3300m]: 0.003 V")
        return
    assert text(out) == f"{P}ack {line}\r\n"
    assert SetVoltage(mv) in out
    assert text(send(core, "volt get")) == f"{P}ack volt get {mv:04d}-03\r\n"


@pytest.mark.parametrize(
    "line, detail",
    [
        ("volt 3400m", "voltage out of range [1800m; 3300m]: 3.4 V"),
        ("volt 3.0", "not a number: '3.0'"),
        ("volt", "missing argument: voltage"),
        ("freq 3k", "frequency not in the list {100k ... 1}: 3000 Hz"),
        ("freq fast", "not a number: 'fast'"),
        ("acqtime 101", "acquisition time out of range [100u; 100] (0 or inf: infinite): 101 s"),
        ("acqtime 50u", "acquisition time out of range [100u; 100] (0 or inf: infinite): 5e-05 s"),
        ("trigdelay 31", "trigger delay out of range [0; 30]: 31 s"),
        ("currthre 60m", "current threshold out of range [100n; 50m] (0: disabled): 0.06 A"),
        ("output power", "'power' is not one of current|energy"),
        ("format hex", "'hex' is not one of ascii_dec|bin_hexa"),
        ("trigsrc d8", "'d8' is not one of sw|d7"),
        ("eventsrc d6 fal", "'d6' is not one of d7"),
        ("eventsrc d7 both", "'both' is not one of ris|fal"),
        ("pwr maybe", "'maybe' is not one of auto|on|off"),
        ("pwr on loud", "'loud' is not one of status|nostatus"),
        ("pwrend later", "'later' is not one of on|off"),
        ("acqmode fast", "'fast' is not one of dyn|stat"),
        ('lcd 3 "x"', "LCD line must be 1 or 2, not '3'"),
        ('lcd 1 "seventeen chars!!"', "LCD text longer than 16 characters (17)"),
        ("lcd 1 nothing", 'expected: lcd <1|2> "<text>"'),
        ("targrst 5m", "target reset duration out of range [10m; 1] (0: leave powered down): 0.005 s"),
        ("temp kelvin", "'kelvin' is not one of degc|degf"),
        ("start now", "no argument expected: now"),
    ],
)
def test_bad_arguments_get_the_error_lines(core, line, detail):
    before = core.settings.__dict__.copy()
    out = send(core, line)
    assert text(out) == err(line, detail)
    assert [a for a in out if not isinstance(a, Reply)] == []
    assert core.settings.__dict__ == before


def test_queries(core):
    assert text(send(core, "pwr get")) == f"{P}ack pwr get off\r\n"
    send(core, "pwr on")
    assert text(send(core, "pwr get")) == f"{P}ack pwr get on\r\n"
    assert text(send(core, "temp")) == f"{P}ack temp degc 25.0\r\n"
    assert text(send(core, "temp degf")) == f"{P}ack temp degf 77.0\r\n"
    assert text(send(core, "volt get")) == f"{P}ack volt get 3300-03\r\n"  # default 3300 mV
    assert text(send(core, "currthres 10u")) == f"{P}ack currthres 10u\r\n"  # both spellings
    assert core.settings.currthre_a == pytest.approx(10e-6)


def test_numbers_as_the_firmware_reads_them():
    assert parse_value("2m") == pytest.approx(2e-3)
    assert parse_value("2-3") == pytest.approx(2e-3)
    assert parse_value("1+3") == 1000
    assert parse_value("1k") == 1000
    assert parse_value("100u") == pytest.approx(100e-6)
    assert parse_value("0") == 0
    for bad in ("1.5", "-3", "3x", "", "m", "1-123"):
        assert parse_value(bad) is None, bad


# -- acquisition control ----------------------------------------------------------


def test_start_stop_and_what_is_refused_meanwhile(core):
    send(core, "freq 1k")
    send(core, "output energy")
    out = send(core, "start")
    assert text(out) == f"{P}ack start\r\n"
    # pwr auto (the default): the target is powered when the acquisition starts
    assert out[1] == SetTargetPower(True)
    assert isinstance(out[2], StartAcquisition) and out[2].settings.freq_hz == 1000
    assert core.acquiring
    assert text(send(core, "freq 10")) == err("freq 10", "not allowed during an acquisition: send 'stop' first")
    assert text(send(core, "start")) == err("start", "not allowed during an acquisition: send 'stop' first")
    assert text(send(core, "hrc")) == err("hrc", "not allowed during an acquisition: send 'stop' first")
    # allowed meanwhile: power, queries
    assert text(send(core, "volt get")) == f"{P}ack volt get 3300-03\r\n"
    out = send(core, "pwr off")
    assert text(out) == f"{P}ack pwr off\r\n" and SetTargetPower(False) in out
    assert send(core, "stop") == [StopAcquisition()]  # the device answers when the data are out
    assert core.acquisition_ended(disarm=True) == []
    assert not core.acquiring
    # stop without an acquisition is simply acknowledged
    assert text(send(core, "stop")) == f"{P}ack stop\r\n"


def test_pwrend_off_powers_the_target_down_after_the_acquisition(core):
    send(core, "pwrend off")
    send(core, "acqtime 100m")
    send(core, "start")
    assert core.acquisition_ended(disarm=False) == [SetTargetPower(False)]
    assert text(send(core, "pwr get")) == f"{P}ack pwr get off\r\n"


@pytest.mark.parametrize(
    "cfg, detail",
    [
        (("freq 100k",), "ascii_dec is limited to 20k samples/s (freq 100000); use bin_hexa"),
        (("freq 10k", "acqtime inf"), "ascii_dec at 10000 Hz allows acquisitions of at most 1 s"),
        (("freq 20k", "acqtime 1"), "ascii_dec at 20000 Hz allows acquisitions of at most 0.5 s"),
        (("freq 20k", "output energy", "format bin_hexa"), "energy output limited to 10k samples/s (freq 20000)"),
    ],
)
def test_start_refuses_what_the_link_cannot_carry(core, cfg, detail):
    for line in cfg:
        send(core, line)
    assert text(send(core, "start")) == err("start", detail)
    assert not core.acquiring


def test_start_accepts_the_table_limits(core):
    for line in ("freq 10k", "acqtime 1"):
        send(core, line)
    assert text(send(core, "start")).startswith(f"{P}ack start")
    core.acquisition_ended(disarm=True)
    for line in ("freq 100k", "format bin_hexa", "acqtime inf"):
        send(core, line)
    assert text(send(core, "start")).startswith(f"{P}ack start")


def test_d7_trigger_arms_and_stop_disarms(core):
    send(core, "trigsrc d7")
    out = send(core, "start")
    assert core.armed and not core.acquiring and isinstance(out[-1], StartAcquisition)
    core.acquisition_started()
    assert core.acquiring
    core.acquisition_ended(disarm=False)  # acqtime elapsed: stays armed
    assert core.armed
    assert send(core, "stop") == [StopAcquisition()]
    core.acquisition_ended(disarm=True)
    assert not core.armed


def test_targrst_and_psrst(core):
    out = send(core, "targrst 100m")
    assert text(out) == f"{P}ack targrst 100m\r\n" and TargetReset(0.1) in out
    send(core, "freq 1k")
    out = send(core, "psrst")
    assert text(out) == f"{P}ack psrst\r\n" and ResetBoard() in out
    assert not core.host_control and core.settings.freq_hz == 100


def test_binary_stream_answers_are_metadata(core):
    send(core, "format bin_hexa")
    send(core, "volt 1800m")
    send(core, "pwr on")
    send(core, "start")
    assert text(send(core, "volt get")).encode("latin-1") == b"\xf0\xf7\x07\x08\xff\xff"  # 1800 mV
    assert text(send(core, "pwr get")).encode("latin-1") == b"\xf0\xf9\x01\xff\xff"
    assert text(send(core, "temp")).encode("latin-1") == b"\xf0\xf8\x00\x19\xff\xff"  # 25 degC
    assert text(send(core, "targrst 0")).encode("latin-1") == b"\xf0\xf6\xff\xff"
    bad = text(send(core, "freq 1")).encode("latin-1")
    assert bad.startswith(b"\xf0\xf1error freq 1\r\n") and bad.endswith(b"\xff\xff")


# -- encodings -----------------------------------------------------------------------


def test_ascii_encoding_matches_the_manual_example():
    assert format_ascii_value(640.9e-6) == b"6409-07"
    assert decode_ascii_value("6409-07") == pytest.approx(640.9e-6)
    assert format_ascii_value(40.84e-6) == b"4084-08"
    assert format_ascii_value(1.0) == b"1000-03"
    assert format_ascii_value(12345.0) == b"1235+01"
    assert format_ascii_value(0.0) == b"0000+00"
    assert format_ascii_value(9.99995e-3) == b"1000-05"  # rounding carries into the exponent


def test_binary_encoding_matches_the_manual_example():
    assert decode_bin_value(0x52, 0xA0) == pytest.approx(640.9e-6, rel=1e-3)
    assert encode_bin_value(640.9e-6) == bytes.fromhex("52A0")
    assert encode_bin_value(0.0) == b"\x00\x00"
    with pytest.raises(ValueError):
        decode_bin_value(0xF0, 0xF3)


def test_encodings_resolution_over_twelve_decades():
    for k in range(-120, 0):
        v = 10 ** (k / 10) * 1.2345
        a = decode_ascii_value(format_ascii_value(v))
        assert abs(a - v) / v <= 0.5e-3 + 1e-12
        b0, b1 = encode_bin_value(v)
        assert b0 >> 4 != 0xF
        b = decode_bin_value(b0, b1)
        assert abs(b - v) / v <= 0.002  # the manual's worst case: +/-0.20%


def test_stream_parsers_read_metadata():
    ascii_stream = (
        b"PowerShield > ack start\r\n\r\nTimeStamp: 000s 000ms, buff 00%\r\n\x00"
        b"4000-08\r\n\r\nevent 1 ris\r\n4100-08\r\n\r\nend\r\nPowerShield > ack stop\r\n"
        b"\r\nsummary begin\r\n4000-08\r\n4100-08\r\nsummary end\r\nPowerShield > Acquisition completed\r\n"
    )
    p = parse_ascii_stream(ascii_stream)
    assert p.samples == pytest.approx([40e-6, 41e-6])
    assert p.events == [(1, 1)] and p.timestamps == [(0, 0, 0)]
    assert p.ended and p.completed and p.summary == pytest.approx((40e-6, 41e-6))
    binary = (
        b"\xf0\xf3\x00\x00\x03\xe8\x00\xff\xff" + encode_bin_value(40e-6) + b"\xf0\xf2event 1 ris\r\n\xff\xff"
        + encode_bin_value(41e-6) + b"\xf0\xf4\xff\xff" + b"\r\nsummary begin\r\n4000-08\r\n4100-08\r\nsummary end\r\n"
        + b"PowerShield > Acquisition completed\r\n"
    )
    q = parse_binary_stream(binary)
    assert q.samples == pytest.approx([40e-6, 41e-6], rel=2e-3)
    assert q.events == [(1, 1)] and q.timestamps == [(1000, 0, 0)] and q.ended and q.completed


# -- what the runners parse ------------------------------------------------------------


def _mlcommons_read_response(lines: list[str], command: str) -> list[str]:
    """The mlcommons/tiny runner's LPMCommands._read_response rule, restated:
    text lines before the answer are kept, and the answer line (containing the
    command, starting with ack/error once the prompt is removed) is split
    into at most three space-separated parts with the command taken out."""
    out: list[str] = []
    for line in lines:
        temp = line.replace(P, "").strip()
        if temp and command in temp and (temp.startswith("ack") or temp.startswith("error")):
            out.extend(r for r in temp.replace(command, "").split(" ", 2) if r)
            return out
        if temp and not temp.startswith("ack") and not temp.startswith("error"):
            out.append(temp)
    raise AssertionError(f"no answer to {command!r} in {lines!r}")


def test_answers_parse_as_the_mlcommons_runner_expects():
    c = Lpm01aCore()
    lines = text(send(c, "version")).splitlines()
    resp = _mlcommons_read_response(lines, "version")
    assert resp[0] == "ack" and resp[1:][1] == "1.0.6"  # its get_version() takes output[1]
    lines = text(send(c, "freq 1k")).splitlines()  # refused: no htc yet
    resp = _mlcommons_read_response(lines, "freq 1k")
    assert resp == ["error"]
    assert any(x.replace(P, "").startswith("Error detail") for x in lines)  # what it waits for next
    send(c, "htc")
    assert _mlcommons_read_response(text(send(c, "pwr on nostatus")).splitlines(), "pwr on nostatus") == ["ack"]


def test_every_prompted_line_ends_with_crlf(core):
    for line in ("help", "version", "bogus", "volt get", "pwr get", "temp", "status", "powershield"):
        t = text(send(core, line))
        assert t.endswith("\r\n") and "\n" not in t.replace("\r\n", ""), line
        assert not math.isnan(len(t))

"""The sww01 firmware core (emulator/dut/sww01/core.py): the calling convention,
the per-frame actions, the printing formats, and the whole pure chain on the
short test file scored as mlcommons/tiny's runner scores it."""
from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest

from emulator.dut.sww01 import features as F
from emulator.dut.sww01.core import (
    ArmDma, Extract, FixedData, Invoke, MemOp, Pin, Print, Pulse, SetPin, State, StopDma, Sww01Core,
    Tim16Mark, PrintTim16, dump_float, dump_int8, dump_int16, printed, run_until_idle, tim16_line,
)
from emulator.models import ModelError
from runner.sww_metrics import detection_stats


class FixedEngine:
    """A stand-in for the model where the test decides the scores (pure logic tests
    only; the real model is used below)."""

    input_scale = F.OFFICIAL_INPUT_SCALE

    def __init__(self, scores):
        self.scores = list(scores)
        self.inputs: list[np.ndarray] = []

    def set_input(self, window):
        self.inputs.append(np.array(window, dtype=np.int8))

    def invoke(self):
        pass

    def output(self):
        s = self.scores.pop(0) if self.scores else -128
        return np.array([s, 0, 0], dtype=np.int8)


def frame(left: int, right: int | None = None) -> bytes:
    return np.array([left, left if right is None else right] * F.STRIDE, dtype="<i2").tobytes()


def cmd(core: Sww01Core, text: bytes) -> bytes:
    core.feed(text)
    return run_until_idle(core)


# ------------------------------------------------------------------ convention


def test_step_units_echo_then_body_and_none_when_waiting():
    core = Sww01Core()
    assert core.step() is None
    core.feed(b"na")
    assert core.step() is None  # incomplete command: waits
    core.feed(b"me%")
    assert core.step() == [Print(b"Received command: name\r\n")]
    assert core.step() == [Print(b"m-name-dut-[ML Commons]\r\n"), Print(b"m-ready\r\n")]
    assert core.step() is None


def test_boot_sets_pins_and_pulses_d7():
    acts = Sww01Core().boot()
    assert acts[-1] == Pulse(Pin.TIMESTAMP)
    assert set(acts[:-1]) == {SetPin(Pin.WW_DETECTED, 1), SetPin(Pin.PROCESSING, 0), SetPin(Pin.TIMESTAMP, 1)}


def test_command_buffer_keeps_1028_characters():
    core = Sww01Core()
    out = cmd(core, b"name " + b"x" * 2000 + b"%")
    assert out.startswith(b"Received command: name " + b"x" * 1023 + b"\r\n")
    assert out.endswith(b"m-name-dut-[ML Commons]\r\nm-ready\r\n")


def test_start_and_stop_actions_in_firmware_order():
    core = Sww01Core()
    core.feed(b"start%")
    core.step()
    acts = core.step()
    kinds = [type(a) for a in acts]
    # the D7 pulse comes after "Listening..." and the memsets, before the DMA is armed
    assert kinds.index(Pulse) > kinds.index(Print) and kinds.index(Pulse) < kinds.index(ArmDma)
    assert acts[kinds.index(Pulse)] == Pulse(Pin.TIMESTAMP)
    assert [a for a in acts if isinstance(a, SetPin)] == [
        SetPin(Pin.PROCESSING, 0), SetPin(Pin.PROCESSING, 1), SetPin(Pin.PROCESSING, 0)]
    assert sum(a.nbytes for a in acts if isinstance(a, MemOp)) == 64000 + 4096 + 1200 + 2048
    assert core.state == State.STREAMING and core.dma_armed
    core.feed(b"stop%")
    core.step()
    acts = core.step()
    assert acts[:2] == [StopDma(), Pulse(Pin.TIMESTAMP)]  # the energy window ends before the dump is printed
    assert core.state == State.IDLE and not core.dma_armed


def test_frames_are_processed_with_the_firmware_pin_sequence():
    eng = FixedEngine([-128, -20, 116, 115, 127])
    core = Sww01Core(engine=eng)
    cmd(core, b"start%")
    seqs = []
    for k in range(5):
        core.feed_audio(frame(100 * k))
        seqs.append(core.step())
        assert core.step() is None
    for k, acts in enumerate(seqs):
        assert acts[0] == SetPin(Pin.PROCESSING, 1) and acts[-1] == SetPin(Pin.PROCESSING, 0)
        assert isinstance(acts[1], ArmDma) and isinstance(acts[2], Extract) and isinstance(acts[3], Invoke)
        assert len(acts[3].window) == 1200
    pulsed = [any(a == Pulse(Pin.WW_DETECTED) for a in acts) for acts in seqs]
    # frame 0: the sync pulse whatever its score; then only scores above 115
    assert pulsed == [True, False, True, False, True]
    assert core.activations == [-128, -20, 116, 115, 127]
    # the model window starts as int8 0 (not -128) and shifts by 40 per frame
    first = eng.inputs[0]
    assert (first[:1160] == 0).all()
    assert (eng.inputs[1][:1120] == 0).all() and np.array_equal(eng.inputs[1][1120:1160], first[1160:])


def test_audio_is_served_before_commands_and_dropped_when_not_armed():
    core = Sww01Core(engine=FixedEngine([]))
    core.feed_audio(frame(1))
    assert core.step() is None and core.frames_dropped == 1
    cmd(core, b"start%")
    core.feed(b"stop%")
    assert core.step() == [Print(b"Received command: stop\r\n")]
    # a transfer completing while the echo is printed is processed before stop runs
    core.feed_audio(frame(5))
    assert isinstance(core.step()[0], SetPin)
    out = run_until_idle(core)
    assert b"target activations: \r\n[-128  \r\n]\r\n" in out
    core.feed_audio(frame(5))
    assert core.step() is None and core.frames_dropped == 2
    with pytest.raises(ValueError):
        core.feed_audio(bytes(100))


def test_start_clears_windows_but_not_the_preemphasis_memory():
    core = Sww01Core(engine=FixedEngine([]))
    cmd(core, b"start%")
    core.feed_audio(frame(20000))
    core.step()
    assert core.extractor.last_value == np.float32(0.0)  # window[511] was the zero half
    core.feed_audio(frame(20000))
    core.step()
    assert core.extractor.last_value == np.float32(20000 / 32768)
    cmd(core, b"stop%start%")
    assert (core.audio_window.samples == 0).all() and (core.model_window.data == 0).all()
    assert core.activations == [] and core.first_frame == 1
    assert core.extractor.last_value == np.float32(20000 / 32768)  # a static, never reset


# ------------------------------------------------------------------ formats


def test_dump_formats():
    assert dump_int8([]) == b"[]\r\n"
    assert dump_int8([5]) == b"[5  \r\n]\r\n"
    assert dump_int8(range(17)) == (
        b"[" + b"".join(b"%d, " % i for i in range(16)) + b"\r\n16  \r\n]\r\n")
    assert dump_int8(range(16)) == b"[" + b"".join(b"%d, " % i for i in range(15)) + b"15  \r\n]\r\n"
    assert dump_int16([-256, -32641]) == b"[-256, -32641] \r\n"
    assert dump_float([0.47, 1.0]) == b"[4.70000e-01, 1.00000e+00  \r\n]\r\n\r\n"


def test_the_runner_parses_the_activation_dump():
    scores = list(range(-128, 128, 7))  # 37 values: 3 lines
    core = Sww01Core(engine=FixedEngine(scores))
    cmd(core, b"start%")
    for _ in scores:
        core.feed_audio(frame(0))
        core.step()
    out = cmd(core, b"stop%").decode()
    # mlcommons/tiny streaming_ww_utils.array_from_strings: joined lines, this regex, ints
    joined = " ".join(out.split("\r\n"))
    m = re.search(r"target activations:\s*(\[.*?\])\s*m-ready", joined)
    assert m is not None
    assert [int(v) for v in m.group(1).strip("[]").replace(",", " ").split()] == scores


def test_i2scap_prints_the_capture_and_pulls_ww_detected_low():
    core = Sww01Core()
    cmd(core, b"i2scap 3000%")
    core.feed_audio(frame(7, -7))
    acts = core.step()
    assert isinstance(acts[0], ArmDma) and acts[1] == SetPin(Pin.WW_DETECTED, 1) and acts[-1] == SetPin(Pin.WW_DETECTED, 0)
    core.feed_audio(frame(8, -8))
    out = printed(core.step())
    assert core.state == State.IDLE and core.int16s_read == 2048
    assert out.startswith(b"DMA Receive completed 2048 int16s read out of 3000 requested\r\n[7, -7, 7, -7, ")
    assert out.endswith(b"8, -8, 8, -8] \r\n")
    assert out.count(b"\r\n") == 1 + 2048 // 16


def test_tim16_lines_wrap_like_the_firmware():
    assert tim16_line("th_ai_run", 65000, 500) == b"TIM16: th_ai_run took (65000 : 500) = 1036 TIM16 cycles\r\n"
    assert tim16_line("th_compute_lfbe_f32", 65000, 500) == (
        b"TIM16: th_compute_lfbe_f32 took (65000 : 500) = 4294902796 TIM16 cycles\r\n")


def test_run_model_and_extract_with_the_firmware_data():
    src = ("const int8_t test_input_class1[1200] = {" + ", ".join(["-128"] * 1200) + "};\n"
           "const int16_t test_wav_marvin[] = {" + ", ".join(["0"] * 2048) + "};\n")
    fixed = FixedData.from_c_source(src)
    assert fixed.test_input_class0 is None and len(fixed.test_input_class1) == 1200
    eng = FixedEngine([3])
    core = Sww01Core(engine=eng, fixed=fixed)
    core.feed(b"run_model class1%")
    core.step()
    acts = core.step()
    assert [type(a) for a in acts[1:7]] == [SetPin, Tim16Mark, Invoke, Tim16Mark, SetPin, PrintTim16]
    ticks = iter([100, 1700])
    out = printed(acts, lambda: next(ticks))
    assert out == (b"In run_model. about to run model\r\n"
                   b"TIM16: th_ai_run took (100 : 1700) = 1600 TIM16 cycles\r\n"
                   b"Output = [03, 00, 00, ]\r\nm-ready\r\n")
    assert (eng.inputs[0] == -128).all()
    out = cmd(core, b"extract 1024%")
    assert b"TIM16: th_compute_lfbe_f32 took (0 : 0) = 0 TIM16 cycles\r\n\r\n{\r\n\"Input\": [0, 0," in out
    assert b",\r\n \"Output\": [0.00000e+00, " in out and out.endswith(b"0.00000e+00  \r\n]\r\n\r\n}\r\nm-ready\r\n")
    assert b"reads past test_wav_marvin" in cmd(core, b"extract 1025%")


# ------------------------------------------------------------------ the model


def test_open_sww01_errors_name_the_fix(tmp_path):
    from emulator.dut.sww01.model import open_sww01
    from emulator.models.engine import open_engine

    with pytest.raises(ModelError, match="tinytwin models download"):
        open_sww01(tmp_path / "nowhere")
    (tmp_path / "sww01.tflite").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not the official sww01 model"):
        open_sww01(tmp_path)
    with pytest.raises(ModelError, match="its own firmware"):
        open_engine("sww01", models_dir=tmp_path)


# ------------------------------------------------------------------ the short test file


def _played_frames(wav: Path) -> list[bytes]:
    """The DMA transfers the DUT receives when the interface board plays ``wav``:
    everything after the 44-byte header except the last 4 KiB block read."""
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 16000)
        data = w.readframes(w.getnframes())
    played = (-(-len(data) // 4096) - 1) * 4096
    return [data[i : i + F.I2S_FRAME_BYTES] for i in range(0, played, F.I2S_FRAME_BYTES)]


@pytest.fixture(scope="module")
def short_run(request):
    from conftest import shared_dir

    shared = shared_dir()
    if shared is None or not (shared / "models" / "sww01.tflite").is_file():
        pytest.skip("sww01.tflite is missing: run `tinytwin models download` (or set TINYTWIN_SHARED)")
    wav = shared / "sd_card" / "short_wav_easy10s.wav"
    truth = shared / "datasets" / "sww01" / "sww_short_test.json"
    if not wav.is_file() or not truth.is_file():
        pytest.skip("short_wav_easy10s.wav / sww_short_test.json are missing: they are mlcommons/tiny's "
                    "benchmark/runner/sd_card/short_wav_easy10s.wav and benchmark/runner/sww_data_dir/"
                    "sww_short_test.json, expected in ../shared (or set TINYTWIN_SHARED)")
    from emulator.dut.sww01.model import open_sww01

    core = Sww01Core(engine=open_sww01(shared / "models"))
    cmd(core, b"stop%start%")
    detections = []
    frames = _played_frames(wav)
    for j, fr in enumerate(frames):
        core.feed_audio(fr)
        acts = core.step()
        if Pulse(Pin.WW_DETECTED) in acts:
            detections.append(j)
        assert core.step() is None
    dump = cmd(core, b"stop%")
    import json

    return {"frames": len(frames), "detections": detections, "core": core, "dump": dump,
            "truth": json.loads(truth.read_text())[0]}


def test_short_file_detections_match_the_runner_readme(short_run):
    assert short_run["frames"] == 312  # 638,976 of 640,000 data bytes are played
    assert short_run["detections"] == [0, *range(43, 67), 156]
    assert short_run["core"].activations[156] == 116  # one LSB above the threshold
    assert len(short_run["core"].activations) == 312
    # the interface board timestamps each pulse; frame j's comes 32*j ms after the sync pulse
    ts = [32 * j for j in short_run["detections"]]
    stats = detection_stats(ts, short_run["truth"]["detection_windows"])
    assert stats.accuracy_line() == "Accuracy: 2 True positives, 1 False negatives, 0 False positives"
    assert stats.true_positives == (1.0, 4.0) and stats.false_negatives == (7.0,)
    # the README's rule (a word ends + 1 s, i.e. half the code's suppression added twice)
    # gives the same figure on this file: frame 156 (4.992 s) is inside both
    readme = detection_stats(ts, short_run["truth"]["detection_windows"], suppression_s=0.5)
    assert readme.accuracy_line() == stats.accuracy_line()
    # the dump the runner parses holds all 312 scores
    assert short_run["dump"].count(b", ") + 1 == 312


def test_detection_stats_follows_the_runner_code():
    windows = [(1.0, 1.5), (4.0, 4.5)]
    # sync at 100 ms; one hit 1.9 s after window 1 ends (inside the code's +2 s), a
    # train of false detections 32 ms apart counted as one per second
    ts = [100, 100 + 3400] + [100 + 8000 + 32 * k for k in range(40)]
    s = detection_stats(ts, windows)
    assert s.true_positives == (1.0,) and s.false_negatives == (4.0,)
    assert len(s.false_positives) == 2  # 1.28 s of pulses: the one at +1.024 s survives the debounce
    with pytest.raises(ValueError):
        detection_stats([], windows)


def test_extract_uart_stream_is_the_streaming_pipeline_on_mono_samples():
    rng = np.random.default_rng(3)
    chunks = [rng.integers(-20000, 20000, F.STRIDE).astype("<i2") for _ in range(3)]
    uart_eng, i2s_eng = FixedEngine([]), FixedEngine([])
    uart, i2s = Sww01Core(engine=uart_eng), Sww01Core(engine=i2s_eng)
    cmd(i2s, b"start%")
    for c in chunks:
        # stream_wav_uart.py's exchange: db load 1024, the bytes, extract_uart_stream
        out = cmd(uart, b"db load 1024%db " + c.tobytes()[:512].hex().encode() + b"%db "
                  + c.tobytes()[512:].hex().encode() + b"%extract_uart_stream%")
        assert b"512 bytes received\r\n" in out and b"m-load-done\r\n" in out
        feats = re.search(rb"m-features-\[([^\]]*)\]", out).group(1)
        stereo = np.repeat(c, 2)
        stereo[1::2] = -1
        i2s.feed_audio(stereo.tobytes())
        i2s.step()
        assert [int(v) for v in feats.split(b",")] == list(i2s_eng.inputs[-1][-40:])
    assert all(np.array_equal(a, b) for a, b in zip(uart_eng.inputs, i2s_eng.inputs))


def test_infer_wav_on_the_builtin_wav(short_run):
    # the firmware's test_wav_long is the left channel of short_wav_easy10s.wav
    from conftest import shared_dir

    with wave.open(str(shared_dir() / "sd_card" / "short_wav_easy10s.wav")) as w:
        left = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")[0::2].copy()
    core = Sww01Core(engine=short_run["core"].engine, fixed=FixedData(test_wav_long=left))
    out = cmd(core, b"infer_wav 0%")
    assert out.count(b"), \r\n") == 311  # (160000 - 512) // 512 steps
    steps = [int(v) for v in re.findall(rb"\[(\d+)\]: Detection", out)]
    # step k covers the window of streaming frame k + 1 (no half-zero first frame)
    assert steps[0] == 0 and steps[1:] == [j - 1 for j in short_run["detections"][1:]]
    log = cmd(core, b"log%")
    assert log.startswith(b"Received command: log\r\nLog contents[cp=")
    assert log.count(b"Detection") == len(steps)

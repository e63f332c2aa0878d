"""The pure parts of our runner's streaming-wakeword procedure: the interface
board's lists as the upstream runner reads them (streaming_ww_utils.py at
1afd2c9), the duty cycle, and the truth files (runner/sww_metrics.py,
runner/dataset.py)."""
from __future__ import annotations

import json

import pytest

from runner.dataset import load_truth
from runner.errors import DatasetError
from runner.protocol import STREAMING_MODELS
from runner.sww_metrics import detection_stats, duty_cycle, parse_activations, parse_detections, parse_dutycycle

SWW = STREAMING_MODELS["sww01"]


def test_duty_cycle_as_upstream():
    starts = [6594 + 3200 * k for k in range(100)]
    stops = [s + 1816 for s in starts]
    d = duty_cycle(starts, stops)
    assert d.period_s == pytest.approx(0.032)
    assert d.duty_cycle == pytest.approx(18.16 / 32)
    assert d.throughput == pytest.approx(1 / 0.01816)  # 1 / processing time, not 1 / period
    assert d.start_times_s[0] == pytest.approx(0.06594) and not d.warnings
    short = duty_cycle(starts, stops[:50])  # cut to the shorter list, with the upstream warning
    assert len(short.start_times_s) == 50 and "should be equal" in short.warnings[0]
    jitter = duty_cycle([0, 3200, 6600], [100, 3300, 6700])
    assert "variation exceeds 2%" in jitter.warnings[0]
    with pytest.raises(ValueError, match="at least 2"):
        duty_cycle([], [])


def test_parse_the_boards_lists():
    assert parse_detections(["Detection Timestamps (ms)", "84,", "1460,"]) == [84, 1460]
    with pytest.raises(ValueError):
        parse_detections(["something else"])
    lines = ["Duty cycle start times (s)", "1, 2, 3, 4, 5, 6, 7, 8, ", "9, ", "Duty cycle stop times (s)",
             "11, 12, 13, 14, 15, 16, 17, 18, ", "19, "]
    assert parse_dutycycle(lines) == ([1, 2, 3, 4, 5, 6, 7, 8, 9], [11, 12, 13, 14, 15, 16, 17, 18, 19])
    # a relay that lost bytes: the garbled value is replaced by the one before it (upstream's
    # streaming_ww_utils.py, "to avoid corrupting the timing") and counted; a garbled first one is dropped
    vals, bad = parse_activations(["Streaming stopped.", "target activations: ", "[-128, -12", "8, 5,, 7  ", "]"])
    assert vals == [-128, -128, 5, 5, 7] and bad == 1
    assert parse_activations(["target activations: ", "[x1, 3, 4]"]) == ([3, 4], 1)
    assert parse_activations(["I2S is already idle.  Ignoring stop request"]) == ([], 0)


def test_scoring_follows_the_code_not_the_readme():
    """A detection 1.9 s after a word ends is a true positive (the code adds the
    1 s suppression twice; the README says 1 s)."""
    windows = [(1.0, 2.0)]
    assert len(detection_stats([0, 3900], windows).true_positives) == 1
    assert len(detection_stats([0, 4100], windows).false_positives) == 1


def write(tmp_path, name, data):
    d = tmp_path / "sww01"
    d.mkdir(exist_ok=True)
    (d / name).write_text(json.dumps(data))
    return tmp_path


def test_truth_files(tmp_path):
    entry = {"wav_file": "a.wav", "length_sec": 10.0, "detection_windows": [[1.0, 1.5]], "sample_rate": 16000}
    write(tmp_path, "sww_short_test.json", [entry])
    t = load_truth(tmp_path, SWW)
    assert t.labels_path.name == "sww_short_test.json" and t.entries[0].windows == ((1.0, 1.5),)
    write(tmp_path, "sww_long_test.json", [entry])
    assert load_truth(tmp_path, SWW).labels_path.name == "sww_long_test.json"  # the submission test by default
    assert load_truth(tmp_path, SWW, "sww_short_test.json").labels_path.name == "sww_short_test.json"
    with pytest.raises(DatasetError, match="does not exist"):
        load_truth(tmp_path, SWW, "sww_med_test.json")


@pytest.mark.parametrize("entry,msg", [
    ({"wav_file": "a.wav", "length_sec": 10.0}, "no 'detection_windows'"),
    ({"length_sec": 10.0, "detection_windows": []}, "'wav_file'"),
    ({"wav_file": "a.wav", "detection_windows": []}, "'length_sec'"),
    ({"wav_file": "a.wav", "length_sec": 1, "detection_windows": [[2.0, 1.0]]}, "ends before it starts"),
    ({"wav_file": "a.wav", "length_sec": 1, "detection_windows": [[2.0]]}, "pair"),
])
def test_bad_truth_entries(tmp_path, entry, msg):
    write(tmp_path, "sww_x_test.json", [entry])
    with pytest.raises(DatasetError, match=msg):
        load_truth(tmp_path, SWW)


def test_several_truth_files_and_no_default_need_a_choice(tmp_path):
    e = {"wav_file": "a.wav", "length_sec": 1, "detection_windows": []}
    write(tmp_path, "sww_a_test.json", [e])
    write(tmp_path, "sww_b_test.json", [e])
    with pytest.raises(DatasetError, match="--truth"):
        load_truth(tmp_path, SWW)


def test_which_runs_are_streaming(tmp_path):
    from runner.energy import EnergyOptions

    def opts(ds, **kw):
        return EnergyOptions("io", "emon", ds, tmp_path / "o", **kw)

    write(tmp_path, "sww_short_test.json", [])
    assert opts(tmp_path).streaming()  # only sww01 there
    assert opts(tmp_path / "sww01").streaming()
    (tmp_path / "kws01").mkdir()
    assert not opts(tmp_path).streaming()  # kws01 and sww01 side by side: --truth says which
    assert opts(tmp_path, truth="sww_short_test.json").streaming()
    assert opts(tmp_path, mode="performance").streaming()


def test_a_silent_h573_is_asked_about_its_sd_card():
    """A real H573 with no SD card (or one pulled) stops answering: the timeout says so."""
    import os
    import tty

    import pytest

    from runner.errors import DeviceTimeout
    from runner.ioman_client import IoManagerClient

    master, slave = os.openpty()
    tty.setraw(master)
    try:
        io = IoManagerClient(os.ttyname(slave), interface="h573", timeout=0.2)
        io.open()
        try:
            with pytest.raises(DeviceTimeout, match="is a card inserted"):
                io.command("ls")
        finally:
            io.close()
        arduino = IoManagerClient(os.ttyname(slave), interface="arduino", timeout=0.2)
        arduino.open()
        try:
            with pytest.raises(DeviceTimeout) as err:
                arduino.command("name")
            assert "card" not in str(err.value)
        finally:
            arduino.close()
    finally:
        os.close(master)
        os.close(slave)

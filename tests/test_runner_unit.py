"""Runner: the pure parts (protocol, dataset checks, metrics, results format)."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from runner import metrics
from runner.dataset import load_dataset
from runner.errors import DatasetError
from runner.protocol import (
    MODELS,
    ProtocolError,
    check_db_chunk,
    check_db_load,
    db_commands,
    lap_delta_us,
    parse_infer,
    parse_name,
    parse_profile,
    parse_results,
    sliding_windows,
)
from runner.report import ResultsText

# The submission checker's patterns (mlcommons/tiny tools/submission/submission_checker.py,
# v1.4), applied with re.match exactly as the checker does.
CHECKER_PERF = r".* Median throughput is\s+([\d\.]+) inf\./sec\..*"
CHECKER_TOP1 = r".* Top[- ]1%?\s?[:=] ([\d\.]+).*"
CHECKER_AUC = r".* AUC\s?[:=] ([\d\.]+).*"


def checker_value(path: Path, pattern: str) -> str | None:
    value = None
    for line in path.read_text().splitlines(keepends=True):
        m = re.match(pattern, line)
        if m:
            value = m.group(1)
    return value


# -- protocol ---------------------------------------------------------------------------


def test_lap_delta_wraps_like_the_board():
    # vww01 accuracy log of the reference board: the timer wrapped inside a window
    assert lap_delta_us(4294809060, 444303) == 602539
    assert lap_delta_us(251222283, 269414673) == 18192390
    assert lap_delta_us(5, 5) == 0
    assert lap_delta_us(2**32 - 1, 0) == 1


def test_db_commands_fit_the_firmware_buffer_and_carry_the_bytes():
    data = bytes(range(256)) * 2 + b"\x00\xff\x7f"
    cmds = db_commands(data)
    assert len(cmds) == -(-len(data) // 31)
    assert all(c.startswith("db ") and len(c) + 1 <= 80 for c in cmds)  # with the '%'
    assert max(len(c) for c in cmds) == 3 + 62
    assert b"".join(bytes.fromhex(c[3:]) for c in cmds) == data
    assert len(db_commands(bytes(490))) == 16


def test_sliding_windows_of_the_ad01_set():
    # 200 frames x 128 float32, windows of 5 frames, stride 1 frame
    starts = sliding_windows(102400, 2560, 512)
    assert len(starts) == 196 and starts[0] == 0 and starts[-1] == 102400 - 2560
    assert sliding_windows(2559, 2560, 512) == []
    assert sliding_windows(2560 + 511, 2560, 512) == [0]  # a remainder shorter than a stride is not sent


def test_parse_results_variants():
    assert parse_results("m-results-[0.023438,0.976563,]") == [0.023438, 0.976563]
    assert parse_results("m-results-[94.518875]") == [94.518875]
    assert parse_results("m-ready") is None
    with pytest.raises(ProtocolError):
        parse_results("m-results-[0.1,x2]")


def test_identity_lines():
    assert parse_name(["m-name-dut-[unspecified]"]) == "dut-[unspecified]"
    assert parse_profile(["m-profile-[ULPMark for tinyML Firmware V0.0.1]", "m-model-[kws01]"]) == (
        "ULPMark for tinyML Firmware V0.0.1",
        "kws01",
    )
    assert parse_profile(["e-[Unknown command: profile]"]) == (None, None)


def test_db_answers_checked():
    check_db_load(["m-[Expecting 490 bytes]"], 490)
    with pytest.raises(ProtocolError, match="expects 491"):
        check_db_load(["m-[Expecting 491 bytes]"], 490)
    with pytest.raises(ProtocolError, match="buffer holds 1024") as ei:
        check_db_load(["Supplied buffer size 5000 exceeds maximum of 1024"], 5000)
    assert not ei.value.transient
    with pytest.raises(ProtocolError, match="not accepted"):
        check_db_load(["e-[Command 'db load' must be >0 bytes]"], 0)
    check_db_chunk([], last=False)
    check_db_chunk(["m-load-done"], last=True)
    with pytest.raises(ProtocolError, match="fewer"):
        check_db_chunk([], last=True)
    with pytest.raises(ProtocolError, match="more"):
        check_db_chunk(["m-load-done"], last=False)
    with pytest.raises(ProtocolError, match="Invalid hex"):
        check_db_chunk(["e-[Invalid hex digit 'zz']"], last=False)


def _golden_window(golden: Path) -> list[str]:
    """The lines the board sent for the first 'infer 100 1' of the kws01 performance log."""
    lines, on = [], False
    for raw in (golden / "kws" / "performance" / "log.txt").read_text().splitlines():
        if 'Command "dut infer 100 1"' in raw:
            on = True
            continue
        if on and " dut: " in raw:
            text = raw.split(" dut: ", 1)[1]
            if text == "m-ready":
                return lines
            lines.append(text)
    raise AssertionError("no window in the golden log")


def test_parse_infer_on_the_boards_own_answer(golden):
    ans = parse_infer(_golden_window(golden), 100, 1)
    assert ans.elapsed_us == 269414673 - 251222283
    assert len(ans.results) == 12 and abs(sum(ans.results) - 0.998) < 0.01
    assert round(metrics.throughput(100, ans.elapsed_us), 3) == 5.497


def test_parse_infer_rejects_wrong_answers():
    good = [
        "m-warmup-start-0",
        "m-warmup-done",
        "m-infer-start-1",
        "m-lap-us-10",
        "m-lap-us-20",
        "m-infer-done",
        "m-results-[0.5,0.5]",
    ]
    assert parse_infer(good, 1, 0).elapsed_us == 10
    with pytest.raises(ProtocolError, match="m-infer-start-2"):
        parse_infer(good, 2, 0)
    with pytest.raises(ProtocolError, match="2 'm-lap-us-'"):
        parse_infer([l for l in good if l != "m-lap-us-20"], 1, 0)
    with pytest.raises(ProtocolError, match="m-results"):
        parse_infer(good[:-1], 1, 0)
    with pytest.raises(ProtocolError, match="490 input elements") as ei:
        parse_infer(["Input db has 480 elemented, expected 490"] + good, 1, 0)
    assert not ei.value.transient
    with pytest.raises(ProtocolError, match="Inference iterations"):
        parse_infer(["e-[Inference iterations must be >0]"], 1, 0)


# -- metrics -------------------------------------------------------------------------------


def test_calibration_picks_n_for_the_window():
    # kws01 on the reference board: 181913 us an inference, ~1 ms for the first lap line
    cal = metrics.Calibration(single_us=182985, multi_iterations=6, multi_us=182985 + 5 * 181913)
    assert abs(cal.inference_us - 181913) < 1 and abs(cal.overhead_us - 1072) < 1
    n = metrics.pick_iterations(cal)
    assert n * cal.inference_us + cal.overhead_us >= metrics.TARGET_WINDOW_S * 1e6
    assert (n - 1) * cal.inference_us + cal.overhead_us < metrics.TARGET_WINDOW_S * 1e6
    # a fast model whose single run is mostly the UART print: N must follow the inference time
    fast = metrics.Calibration(single_us=1100, multi_iterations=910, multi_us=1100 + 909 * 100)
    assert metrics.pick_iterations(fast) >= 109_000
    assert metrics.pick_iterations(metrics.Calibration(5_000_000, 2, 10_000_000)) == 10


def test_window_rules():
    assert metrics.window_problems(100, 18_192_390) == []
    assert "under the 10 s" in metrics.window_problems(100, 9_999_999)[0]
    assert "minimum of 10" in metrics.window_problems(9, 20_000_000)[0]
    assert metrics.median_throughput([5.0, 1.0, 3.0, 4.0, 2.0]) == 3.0


def _board_accuracy(golden: Path, shared: Path, task: str, model: str):
    labels = {r[0]: int(r[2]) for r in csv.reader((shared / "golden" / "labels" / f"{model}_y_labels.csv").open())}
    cur, scores, labs = None, [], []
    for line in (golden / task / "accuracy" / "log.txt").read_text().splitlines():
        m = re.search(r'Command "bload dut ".*/([^/"]+)""', line)
        if m:
            cur = m.group(1)
        m = re.search(r"dut: (m-results-\[.*\])$", line)
        if m:
            scores.append(parse_results(m.group(1)))
            labs.append(labels[cur])
    return scores, labs


def test_metrics_reproduce_the_eembc_runner_on_the_boards_vww_log(golden, shared):
    # the complete vww01 accuracy session of the reference board: EnergyRunner printed
    # "Top-1: 85.4%" and "AUC: 0.94"
    scores, labels = _board_accuracy(golden, shared, "vww", "vww01")
    assert len(scores) == 1000
    assert f"{metrics.top1(scores, labels):.1f}" == "85.4"
    assert f"{metrics.classification_auc(scores, labels, 2):.2f}" == "0.94"


def test_classification_auc_matches_sklearn_ovr():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    s = rng.random((60, 4))
    y = np.arange(60) % 4
    ref = roc_auc_score(y, s / s.sum(axis=1, keepdims=True), multi_class="ovr")
    assert metrics.classification_auc(s.tolist(), y.tolist(), 4) == pytest.approx(ref)
    assert metrics.classification_auc(s.tolist(), [0] * 60, 4) is None
    assert metrics.top1([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]], [1, 1, 0]) == pytest.approx(200 / 3)


def test_anomaly_auc_per_file_mean():
    assert metrics.file_score([1.0, 2.0, 6.0]) == 3.0
    assert metrics.anomaly_auc([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1]) == 1.0
    assert metrics.anomaly_auc([4.0, 2.0, 3.0, 1.0], [0, 0, 1, 1]) == 0.25
    assert metrics.anomaly_auc([1.0, 2.0], [0, 0]) is None


def test_anomaly_top1_as_the_mlcommons_runner_computes_it():
    # the best 100 (precision + recall) / 2 over 100 thresholds from the lowest
    # file score to the highest, anomalous above the threshold
    assert metrics.anomaly_top1([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1]) == pytest.approx(100.0)
    # reversed: best at the lowest threshold, 3 files above it of which 1 anomalous
    assert metrics.anomaly_top1([4.0, 3.0, 2.0, 1.0], [0, 0, 1, 1]) == pytest.approx(100 * (1 / 3 + 1 / 2) / 2)
    assert metrics.anomaly_top1([1.0, 2.0], [0, 0]) == 0.0


# -- results.txt -------------------------------------------------------------------------------


class _Clock:
    def stamp(self):
        return "00012.345"


def test_results_text_matches_the_checker(tmp_path):
    p = tmp_path / "results.txt"
    t = ResultsText(p, _Clock())
    t.header("performance", "/dev/ttyACM0", {"model": "kws01", "profile": "x", "name": "dut"})
    for w in range(1, 6):
        t.window(w, 100, 18_192_386, 5.497, [])
    t.median(5.4969, [])
    assert checker_value(p, CHECKER_PERF) == "5.497"
    assert checker_value(p, CHECKER_TOP1) is None and checker_value(p, CHECKER_AUC) is None

    p2 = tmp_path / "invalid.txt"
    t = ResultsText(p2, _Clock())
    t.window(1, 100, 9_000_000, 11.1, ["ran 9.000 s, under the 10 s minimum"])
    t.median(11.1, ["window 1 ran 9.000 s, under the 10 s minimum"])
    assert checker_value(p2, CHECKER_PERF) is None
    t.stopped("timeout: no answer to 'infer 100 1%' on /dev/x; Top-1: 5")  # nothing a checker could take
    assert checker_value(p2, CHECKER_PERF) is None

    p3 = tmp_path / "acc.txt"
    t = ResultsText(p3, _Clock())
    t.accuracy(MODELS["kws01"], 90.1, 0.99312, True)
    assert checker_value(p3, CHECKER_TOP1) == "90.1"
    assert checker_value(p3, CHECKER_AUC) == "0.993"
    p4 = tmp_path / "ad.txt"
    t = ResultsText(p4, _Clock())
    t.accuracy(MODELS["ad01"], None, 0.8612, True)
    assert checker_value(p4, CHECKER_AUC) == "0.861"
    assert checker_value(p4, CHECKER_TOP1) is None


# -- dataset checks ------------------------------------------------------------------------------


def _kws_set(root: Path, lines: list[str], files: dict[str, int]) -> Path:
    d = root / "kws01"
    d.mkdir(parents=True)
    for name, size in files.items():
        (d / name).write_bytes(bytes(size))
    (d / "y_labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_dataset_good_and_root_forms(tmp_path):
    root = _kws_set(tmp_path, ["a.bin,12,3", "", "b.bin,12,11"], {"a.bin": 490, "b.bin": 490})
    ds = load_dataset(root, MODELS["kws01"])
    assert [(e.file, e.label, e.line) for e in ds.entries] == [("a.bin", 3, 1), ("b.bin", 11, 3)]
    assert load_dataset(root / "kws01", MODELS["kws01"]).folder == root / "kws01"


@pytest.mark.parametrize(
    "lines, files, match",
    [
        (["a.bin,12,3", "b.bin,12,4"], {"a.bin": 490}, r"y_labels.csv:2: input file .*b.bin is missing"),
        (["a.bin,12"], {"a.bin": 490}, r"y_labels.csv:1: expected 3 fields"),
        (["a.bin,12,x"], {"a.bin": 490}, r"y_labels.csv:1: label must be an integer, got 'x'"),
        (["a.bin,12,12"], {"a.bin": 490}, r"y_labels.csv:1: label 12 is not in 0..11"),
        (["a.bin,10,1"], {"a.bin": 490}, r"y_labels.csv:1: kws01 has 12 classes"),
        (["a.bin,12,1"], {"a.bin": 489}, r"y_labels.csv:1: .*a.bin has 489 bytes; kws01 takes 490-byte inputs"),
        (["a.bin,12,1", "a.bin,12,1"], {"a.bin": 490}, r"y_labels.csv:2: a.bin is already listed on line 1"),
        ([], {}, r"lists no inputs"),
    ],
)
def test_dataset_problems_name_file_and_line(tmp_path, lines, files, match):
    root = _kws_set(tmp_path, lines, files)
    with pytest.raises(DatasetError, match=match):
        load_dataset(root, MODELS["kws01"])


def test_dataset_folder_missing(tmp_path):
    with pytest.raises(DatasetError, match=r"no folder for model kws01 in .*expected .*kws01/"):
        load_dataset(tmp_path, MODELS["kws01"])
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope", MODELS["kws01"])


def test_ad01_labels(tmp_path):
    d = tmp_path / "ad01"
    d.mkdir()
    (d / "n.bin").write_bytes(bytes(102400))
    (d / "short.bin").write_bytes(bytes(1000))
    (d / "y_labels.csv").write_text("n.bin,2,0,2560,512\n")
    ds = load_dataset(tmp_path, MODELS["ad01"])
    assert ds.total_inputs() == 196
    (d / "y_labels.csv").write_text("n.bin,2,0,2560,512\nshort.bin,2,1,2560,512\n")
    with pytest.raises(DatasetError, match=r"y_labels.csv:2: .*short.bin has 1000 bytes, less than one 2560-byte window"):
        load_dataset(tmp_path, MODELS["ad01"])
    (d / "y_labels.csv").write_text("n.bin,2,0,2048,512\n")
    with pytest.raises(DatasetError, match=r"y_labels.csv:1: window width 2048"):
        load_dataset(tmp_path, MODELS["ad01"])
    (d / "y_labels.csv").write_text("n.bin,2,0\n")
    with pytest.raises(DatasetError, match=r"y_labels.csv:1: expected 5 fields"):
        load_dataset(tmp_path, MODELS["ad01"])


def test_golden_label_files_parse(shared, tmp_path):
    # the real label files (formats of all four models) pass the checks given inputs of the right size
    for model in MODELS.values():
        src = shared / "golden" / "labels" / f"{model.name}_y_labels.csv"
        d = tmp_path / model.name
        d.mkdir()
        rows = list(csv.reader(src.open()))
        for r in rows[:20]:
            (d / r[0]).write_bytes(bytes(102400 if model.windowed else model.input_bytes))
        (d / "y_labels.csv").write_text("\n".join(",".join(r) for r in rows[:20]) + "\n")
        ds = load_dataset(tmp_path, model)
        assert len(ds) == 20


# -- progress bar ------------------------------------------------------------------------------------


class _Stream:
    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_on_a_terminal_redraws_one_line_with_eta():
    from runner.progress import Progress

    s = _Stream(True)
    p = Progress("kws01 accuracy", 4, s)
    p.draw(force=True)
    p.advance(1)
    time_line = p.line()
    assert "1/4" in time_line and "ETA" in time_line and "25.0%" in time_line
    p.clear()
    p.finish()
    assert "\n" not in s.text.rstrip("\n") and s.text.startswith("\r") and "\x1b[K" in s.text
    assert s.text.endswith("\n") and "4/4" not in s.text  # finish draws where it stands, then a newline


@pytest.mark.parametrize("columns", [60, 30])
def test_progress_fits_a_narrow_terminal_on_one_line(monkeypatch, columns):
    from rich.text import Text

    from runner.progress import Progress

    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("LINES", "25")
    s = _Stream(True)
    p = Progress("kws01 performance", 50, s)
    p.draw(force=True)
    p.advance(10)
    p.finish()
    assert "\n" not in s.text.rstrip("\n")
    lines = [Text.from_ansi(part.replace("\x1b[K", "")).plain.rstrip("\n") for part in s.text.split("\r")]
    assert all(len(line) <= columns for line in lines)
    if columns == 60:  # the bar gives way first
        assert all(f in lines[-1] for f in ("kws01 performance ━", "10/50", "20.0%", "ETA "))


def test_progress_moves_while_a_command_is_in_flight():
    from runner.progress import Progress

    p = Progress("x", 8, _Stream(False))
    p.advance(4)
    p.expect(4, 1e-9)  # overdue: the bar stops short of the end until the command answers
    line = p.line()
    assert "4/8" in line and "99.5%" in line
    p.advance(4)
    assert "8/8" in p.line() and "100.0%" in p.line()


def test_progress_in_a_log_prints_every_tenth():
    from runner.progress import Progress

    s = _Stream(False)
    p = Progress("x", 100, s)
    for _ in range(100):
        p.advance(1)
    p.finish()
    lines = s.text.splitlines()
    assert len(lines) == 11 and "1/100" in lines[0] and "100/100" in lines[-1]  # the start, then each 10 %
    assert "\x1b" not in s.text and "\r" not in s.text  # plain text in a log



def test_classification_auc_is_upstreams_to_the_last_bit():
    """Scores printed with 3 digits (as the firmware prints them) tie often, so
    a last-bit difference in a row's total decides the ROC: the mlcommons
    runner normalises each row with Python's sum (left to right), and so must
    we (numpy's pairwise sum gave 0.564802 here against upstream's 0.564747)."""
    from sklearn.metrics import roc_auc_score

    def normalize_probabilities(scores):  # benchmark/runner/main.py, as upstream writes it
        total = sum(scores)
        return [s / total for s in scores]

    rng = np.random.default_rng(6)
    raw = rng.integers(0, 40, (100, 10))
    raw[np.arange(100), rng.integers(0, 10, 100)] += 200
    scores = (np.floor(raw / 256 * 1000) / 1000).tolist()
    labels = [int(x) for x in rng.integers(0, 10, 100)]
    labels[:10] = list(range(10))
    upstream = roc_auc_score(np.array(labels), np.array([normalize_probabilities(r) for r in scores]), multi_class="ovr")
    assert metrics.classification_auc(scores, labels, 10) == upstream
    assert upstream == pytest.approx(0.5647467867522579, abs=1e-12)


def test_labels_must_be_a_file_name(tmp_path):
    from runner.protocol import MODELS

    (tmp_path / "kws01").mkdir()
    for bad in ("", "..", "../y_labels.csv", "sub/y_labels.csv"):
        with pytest.raises(DatasetError, match="give a file name in the model's dataset folder"):
            load_dataset(tmp_path, MODELS["kws01"], bad)

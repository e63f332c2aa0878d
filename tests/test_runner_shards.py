"""Sharded accuracy runs (``--jobs N``): the pure planner and merger, and
whole runs whose results.txt/results.json equal a serial run's: kws01 on its
1000 shared inputs, a generated ad01 set over in-process twins and over ptys,
a shard whose DUT runs another model."""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from helpers import wait_booted
from runner.errors import RunnerError
from runner.session import EXIT_ERROR, EXIT_OK, RunOptions, run
from runner.shards import ShardResult, merge_shards, plan_slices, shard_ports, with_instance
from runner.synth import synthesize

STAMP = re.compile(r"^\d{5}\.\d{3} ")


# -- pure parts -----------------------------------------------------------------------------------


def test_plan_slices_are_contiguous_balanced_and_never_empty():
    assert plan_slices([1] * 1000, 2) == [(0, 500), (500, 1000)]
    assert plan_slices([196] * 248, 2) == [(0, 124), (124, 248)]
    assert plan_slices([10, 1, 1, 1, 10], 2) == [(0, 3), (3, 5)]  # 12 + 11 inputs
    assert plan_slices([5, 5, 5], 7) == [(0, 1), (1, 2), (2, 3)]  # more jobs than files
    assert plan_slices([100, 1, 1], 3) == [(0, 1), (1, 2), (2, 3)]  # each slice keeps a file
    for sizes in ([3, 1, 4, 1, 5, 9, 2, 6], [1] * 7, [50, 50, 1, 1, 1, 97]):
        for jobs in (1, 2, 3, 4):
            slices = plan_slices(sizes, jobs)
            assert slices[0][0] == 0 and slices[-1][1] == len(sizes)
            assert all(a < b for a, b in slices) and all(x[1] == y[0] for x, y in zip(slices, slices[1:]))
            assert len(slices) == min(jobs, len(sizes))


def test_shard_ports_one_url_is_one_twin_per_job_else_one_port_each():
    url = "tinytwin://kws01?speed=fast&models_dir=/m"
    ports = shard_ports(url, 3)
    assert [p.rsplit("instance=", 1)[1] for p in ports] == ["run-shard1", "run-shard2", "run-shard3"]
    assert all(p.startswith("tinytwin://kws01?speed=fast&models_dir=/m&") for p in ports)
    assert with_instance(url + "&instance=mine", 1).endswith("instance=mine-shard2")
    assert shard_ports("/dev/a,/dev/b", 2) == ["/dev/a", "/dev/b"]
    with pytest.raises(RunnerError, match=r"--jobs 2 needs one DUT per job: give 2 ports .* tinytwin:// URL"):
        shard_ports("/dev/ttyACM0", 2)


def test_merge_keeps_input_order_and_stops_at_an_incomplete_shard():
    def res(i, status, files):
        return ShardResult(i, status, 0, record={"accuracy": {"inferences": [{"file": f} for f in files]}})

    infs, failed = merge_shards([res(1, "complete", "cd"), res(0, "complete", "ab")])
    assert [r["file"] for r in infs] == list("abcd") and failed is None
    infs, failed = merge_shards([res(0, "complete", "ab"), res(1, "stopped", "c"), res(2, "complete", "ef")])
    assert [r["file"] for r in infs] == list("abc") and failed.index == 1


# -- whole runs ---------------------------------------------------------------------------------------


def comparable(folder: Path) -> tuple[list[str], dict]:
    """results.txt without stamps; results.json without what differs between
    any two runs: dates, and each inference's µs (the µs timer's value is
    printed inside the window: its digits, its phase)."""
    text = [STAMP.sub("", ln) for ln in (folder / "results.txt").read_text().splitlines()]
    rec = json.loads((folder / "results.json").read_text())
    for k in ("started", "finished"):
        rec.pop(k)
    for inf in rec.get("accuracy", {}).get("inferences", []):
        inf.pop("us")
    return text, rec


@pytest.fixture
def url(models_dir):
    import emulator.urlhandler  # noqa: F401
    from emulator.urlhandler.protocol_tinytwin import shutdown_all

    def make(model: str) -> str:
        return f"tinytwin://{model}?models_dir={models_dir}&speed=fast&instance={uuid.uuid4().hex}"

    yield make
    shutdown_all()


def go(port: str, dataset: Path, out: Path, jobs: int):
    return run(RunOptions(port=port, mode="accuracy", dataset=dataset, out=out, jobs=jobs, progress=False))


def assert_same_as_serial(serial: Path, sharded: Path, jobs: int) -> None:
    assert sorted(p.name for p in sharded.iterdir()) == ["log.txt", "results.json", "results.txt"]
    assert comparable(sharded) == comparable(serial)
    a = json.loads((serial / "results.json").read_text())["accuracy"]["inferences"]
    b = json.loads((sharded / "results.json").read_text())["accuracy"]["inferences"]
    assert all(abs(x["us"] - y["us"]) < 1000 for x, y in zip(a, b))  # the same inference, give or take a lap line
    log = (sharded / "log.txt").read_text().splitlines()
    assert all(re.match(r"^\d{5}\.\d{3} (host|dut|runner): ", ln) for ln in log)
    blocks = [i for i, ln in enumerate(log) if re.search(r"runner: shard \d+/\d+: files .*: complete; its log follows", ln)]
    assert len(blocks) == jobs
    # every input's download in the log, in input order
    files = [rec["file"] for rec in b]
    first_of_shard = [log[i].split("files ")[1].split("-")[0] for i in blocks]
    assert [int(x) for x in first_of_shard] == sorted(int(x) for x in first_of_shard)
    assert sum(ln.endswith("host: infer 1 0%") for ln in log) == len(files)


@pytest.mark.slow
def test_kws01_1000_inputs_two_jobs_equal_one(url, shared, tmp_path):
    ds = shared / "datasets"
    port = url("kws01")
    one = go(port, ds, tmp_path / "one", 1)
    two = go(port, ds, tmp_path / "two", 2)
    assert one.exit_code == two.exit_code == EXIT_OK, (one.message, two.message)
    assert one.summary == two.summary and "Top-1 90.1%" in two.summary[0]
    assert_same_as_serial(tmp_path / "one", tmp_path / "two", 2)


@pytest.fixture(scope="module")
def ad01_set(tmp_path_factory, models_dir):
    root = tmp_path_factory.mktemp("ad01set")
    synthesize("ad01", root, 7, models_dir=models_dir, seed=3, frames=24)  # 7 files x 20 windows
    return root


def test_generated_ad01_three_jobs_equal_one_in_process(url, ad01_set, tmp_path):
    port = url("ad01")
    one = go(port, ad01_set, tmp_path / "one", 1)
    three = go(port, ad01_set, tmp_path / "three", 3)
    assert one.exit_code == three.exit_code == EXIT_OK, (one.message, three.message)
    assert_same_as_serial(tmp_path / "one", tmp_path / "three", 3)
    expected = json.loads((ad01_set / "ad01" / "synth.json").read_text())["expected"]["auc"]
    assert json.loads((tmp_path / "three" / "results.json").read_text())["accuracy"]["auc"] == expected


@pytest.fixture
def pty_twins(models_dir):
    """In-process twins, each behind a real pty: factory(model) -> device path."""
    from emulator.benches.dut import build_dut_bench
    from emulator.transport import PtyPort

    benches = []

    def start(model: str, **kw) -> str:
        bench = build_dut_bench(model, models_dir=models_dir, speed="fast", **kw)
        port = bench.bridge.attach(PtyPort("dut", initial_baud=bench.dut.uart.baud))
        bench.twin.start()
        benches.append(bench)
        wait_booted(bench)
        return port.device

    yield start
    for b in benches:
        b.twin.close()


def test_generated_ad01_two_jobs_over_two_ptys_equal_one(pty_twins, ad01_set, tmp_path):
    a, b = pty_twins("ad01"), pty_twins("ad01")
    one = go(a, ad01_set, tmp_path / "one", 1)
    two = go(f"{a},{b}", ad01_set, tmp_path / "two", 2)
    assert one.exit_code == two.exit_code == EXIT_OK, (one.message, two.message)
    text, _ = comparable(tmp_path / "two")
    # the same lines but the DUT's port, named as given
    assert [ln.replace(f"{a},{b}", a) for ln in text] == comparable(tmp_path / "one")[0]


def test_a_shard_whose_dut_runs_another_model_stops_the_run(pty_twins, ad01_set, tmp_path):
    a, b = pty_twins("ad01"), pty_twins("ic01", baud=921600)  # (the shards use the baud the first DUT answered at)
    res = go(f"{a},{b}", ad01_set, tmp_path / "out", 2)
    assert res.exit_code == EXIT_ERROR and res.status == "stopped"
    assert f"shard 2/2: files 5-7 (60 inputs) on {b}: the DUT on {b} reports model 'ic01'" in res.message
    rec = json.loads((tmp_path / "out" / "results.json").read_text())
    # what shard 1 did before it was stopped too: the first inputs, in order
    files = [ln.split(",")[0] for ln in (ad01_set / "ad01" / "y_labels.csv").read_text().split()]
    done = rec["accuracy"]["inferences"]
    assert rec["status"] == "stopped" and len(done) <= 80
    assert [(r["file"], r["offset"]) for r in done] == [(f, 512 * w) for f in files[:4] for w in range(20)][: len(done)]
    assert "shard 1/2: files 1-4 (80 inputs) on" in (tmp_path / "out" / "log.txt").read_text()
    assert not (tmp_path / "out" / ".shards").exists()


def test_jobs_need_an_accuracy_run(url, ad01_set, tmp_path):
    with pytest.raises(RunnerError, match="--jobs 2 applies to accuracy runs"):
        run(RunOptions(port=url("ad01"), mode="performance", dataset=ad01_set, out=tmp_path / "o", jobs=2))


def test_the_parents_meanwhile_runs_on_a_thread_after_every_shard_has_started(url, ad01_set, tmp_path):
    """run_local's ``meanwhile`` (the merged summary's imports, in a real run)
    starts only once every shard process has forked: a fork while a thread
    holds an import lock would leave the child unable to import."""
    import multiprocessing
    import threading

    from runner.dataset import load_dataset
    from runner.protocol import MODELS
    from runner.shards import plan_shards, run_local

    specs = plan_shards(load_dataset(ad01_set, MODELS["ad01"]), shard_ports(url("ad01"), 2), tmp_path)
    seen = []

    def meanwhile():
        seen.append((threading.current_thread() is threading.main_thread(), len(multiprocessing.active_children())))

    results = run_local(specs, meanwhile=meanwhile)
    assert [r.status for r in results] == ["complete", "complete"]
    assert seen == [(False, 2)]

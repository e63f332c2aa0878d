"""Runner through the console command: ``tinytwin dut`` (a real pty, its own
process) driven by ``tinytwin run`` (another process), and ``tinytwin dataset synth``."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINYTWIN = [sys.executable, "-c", "from emulator.cli import main; main()"]


@pytest.fixture
def dut_process(models_dir, tmp_path):
    procs = []

    def start(model: str, name: str | None = None) -> Path:
        link = tmp_path / (name or f"{model}-dut")
        p = subprocess.Popen(
            TINYTWIN + ["dut", "--model", model, "--link", str(link), "--models-dir", str(models_dir), "--speed", "fast"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(p)
        deadline = time.monotonic() + 60
        while not link.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"tinytwin dut did not start: {p.communicate(timeout=5)}")
            time.sleep(0.05)
        return link

    yield start
    for p in procs:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def tinytwin(*args, timeout=300):
    return subprocess.run(TINYTWIN + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def test_run_against_tinytwin_dut_process(shared, dut_process, tmp_path):
    link = dut_process("kws01")
    out = tmp_path / "results" / "kws" / "performance"
    r = tinytwin("run", "--port", link, "--mode", "performance", "--dataset", shared / "datasets", "--out", out, "--verbose")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "kws01 performance" in r.stdout and "median throughput" in r.stdout
    # --verbose echoes the wire on stderr; the progress bar is there too
    assert "host: name%" in r.stderr and "dut: m-model-[kws01]" in r.stderr
    assert re.search(r"^kws01 performance .* \d+/\d+ +\d+\.\d% .*ETA", r.stderr, re.M), r.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "results.json", "results.txt"]
    assert "Median throughput is" in (out / "results.txt").read_text()
    # the same board, now an invalid run (windows of 10 inferences last 1.8 s): exit code 1
    out2 = tmp_path / "short"
    r = tinytwin("run", "--port", link, "--mode", "performance", "--dataset", shared / "datasets", "--out", out2, "--iterations", "10")
    assert r.returncode == 1, r.stderr[-2000:]
    assert "NOT VALID" in r.stdout
    assert json.loads((out2 / "results.json").read_text())["status"] == "invalid"


def test_run_errors_are_messages_not_tracebacks(shared, tmp_path):
    master, slave = os.openpty()
    try:
        dev = os.ttyname(slave)
        r = tinytwin("run", "--port", dev, "--mode", "accuracy", "--dataset", shared / "datasets", "--out", tmp_path / "o", "--timeout", "0.3")
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"port {dev} does not answer" in r.stderr
    r = tinytwin("run", "--port", dev, "--mode", "speed", "--dataset", tmp_path, "--out", tmp_path / "o2")
    assert r.returncode == 2 and "--mode must be performance or accuracy" in r.stderr
    # a port path that does not exist: waited for --port-wait seconds (0: not at all), in every mode
    gone = tmp_path / "no-such-tty"
    r = tinytwin("run", "--port", gone, "--mode", "accuracy", "--dataset", shared / "datasets", "--out", tmp_path / "o3",
                 "--port-wait", "0")
    assert r.returncode == 2 and f"cannot open port {gone}: no such file after 0 s" in r.stderr
    r = tinytwin("run", "--io-port", gone, "--emon-port", gone, "--mode", "energy", "--dataset", shared / "datasets",
                 "--out", tmp_path / "o4", "--port-wait", "0.1")
    assert r.returncode == 2 and f"cannot open port {gone}: no such file after 0.1 s" in r.stderr


def test_dataset_synth_command_then_accuracy_run(models_dir, dut_process, tmp_path):
    r = tinytwin("dataset", "synth", "--model", "ic01", "--out", tmp_path / "ds", "--count", "5", "--models-dir", models_dir)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "ds" / "ic01"
    lines = (folder / "y_labels.csv").read_text().splitlines()
    assert len(lines) == 5 and all(len(ln.split(",")) == 3 and ln.split(",")[1] == "10" for ln in lines)
    assert all((folder / ln.split(",")[0]).stat().st_size == 3072 for ln in lines)
    link = dut_process("ic01")
    out = tmp_path / "acc"
    r = tinytwin("run", "-p", link, "-m", "accuracy", "-d", tmp_path / "ds", "-o", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "Top-1 100.0%" in r.stdout
    r = tinytwin("dataset", "synth", "--model", "xx01", "--out", tmp_path / "ds", "--count", "5")
    assert r.returncode == 2 and "unknown model 'xx01'" in r.stderr


def test_ctrl_c_keeps_what_was_done(shared, models_dir, tmp_path):
    """SIGINT in the middle of a (real-time) accuracy run: exit 130, the folder keeps the inferences so far."""
    out = tmp_path / "o"
    port = f"tinytwin://kws01?models_dir={models_dir}&speed=realtime"
    p = subprocess.Popen(
        TINYTWIN + ["run", "-p", port, "-m", "accuracy", "-d", str(shared / "datasets"), "-o", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    # wait until 3 inferences are recorded: the runner records one once its
    # results and m-ready are in, so the 4th m-infer-done in the log is the sign
    while time.monotonic() < deadline:
        log = out / "log.txt"
        if log.exists() and log.read_text().count("m-infer-done") >= 4:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    rec = json.loads((out / "results.json").read_text())
    assert rec["status"] == "interrupted" and len(rec["accuracy"]["inferences"]) >= 3
    assert "run stopped" in (out / "results.txt").read_text()


@pytest.fixture
def kws_dataset(models_dir, tmp_path) -> Path:
    from runner.synth import synthesize

    synthesize("kws01", tmp_path / "ds", 2, models_dir=models_dir, seed=5)
    return tmp_path / "ds"


def test_run_waits_for_a_port_that_is_about_to_appear(models_dir, kws_dataset, tmp_path):
    """`tinytwin dut ... &` then `tinytwin run` at once: the runner waits for the link."""
    link = tmp_path / "late" / "dut"
    run = subprocess.Popen(
        TINYTWIN + ["run", "--port", str(link), "--mode", "accuracy", "--dataset", str(kws_dataset),
                    "--out", str(tmp_path / "o"), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    dut = None
    try:
        time.sleep(1.0)
        assert run.poll() is None, run.communicate()
        dut = subprocess.Popen(TINYTWIN + ["dut", "--model", "kws01", "--link", str(link), "--models-dir", str(models_dir),
                                           "--speed", "fast"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err[-2000:]
        assert f"waiting up to 10 s for {link} to appear" in err
        assert "Top-1 100.0%" in out
    finally:
        if run.poll() is None:
            run.kill()
        if dut is not None:
            dut.send_signal(signal.SIGINT)
            dut.wait(timeout=10)


def test_a_port_that_never_appears_is_one_message(tmp_path):
    from runner.errors import DeviceError
    from runner.link import wait_for_path

    said = []
    with pytest.raises(DeviceError, match=r"after 0.2 s; start the twin"):
        wait_for_path(str(tmp_path / "nothing"), 0.2, said.append)
    assert said == [f"waiting up to 0.2 s for {tmp_path / 'nothing'} to appear"]
    wait_for_path("socket://127.0.0.1:1", 0.2, said.append)  # URLs are not waited for
    assert len(said) == 1


def test_a_second_runner_on_a_port_is_told_who_holds_it(dut_process, kws_dataset, tmp_path):
    from runner.link import open_serial

    link = dut_process("kws01")
    first = open_serial(str(link), 115200)  # what a first runner holds while it runs
    try:
        r = tinytwin("run", "--port", link, "--mode", "accuracy", "--dataset", kws_dataset, "--out", tmp_path / "o")
        assert r.returncode == 2, r.stderr
        assert f"port {link} is in use by process {os.getpid()} (" in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2
    finally:
        first.close()
    r = tinytwin("run", "--port", link, "--mode", "accuracy", "--dataset", kws_dataset, "--out", tmp_path / "o",
                 "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]


def test_run_models_dir_goes_into_a_tinytwin_url(models_dir, kws_dataset, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "empty-cache"), TINYTWIN_SHARED=str(tmp_path / "no-shared"))
    env.pop("TINYTWIN_MODELS_DIR", None)
    args = ["run", "--port", "tinytwin://kws01?speed=fast", "--mode", "accuracy", "--dataset", str(kws_dataset),
            "--no-progress"]
    r = subprocess.run(TINYTWIN + args + ["--out", str(tmp_path / "a")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "tinytwin models download" in r.stderr  # no models anywhere
    r = subprocess.run(TINYTWIN + args + ["--out", str(tmp_path / "b"), "--models-dir", str(models_dir)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Top-1 100.0%" in r.stdout
    r = tinytwin("run", "--port", tmp_path / "dev", "--mode", "accuracy", "--dataset", kws_dataset,
                 "--out", tmp_path / "c", "--models-dir", models_dir)
    assert r.returncode == 2 and "--models-dir" in r.stderr and "tinytwin://" in r.stderr


def test_run_jobs_over_two_twin_processes_and_wrong_port_counts(dut_process, models_dir, tmp_path):
    """``--jobs 2`` with one ``--port`` per job: two ``tinytwin dut`` processes;
    a port count that does not match the jobs is one clear error."""
    from runner.synth import synthesize

    synthesize("ad01", tmp_path / "ds", 3, models_dir=models_dir, seed=5, frames=12)
    a, b = dut_process("ad01"), dut_process("ad01", "ad01-second")
    r = tinytwin("run", "--port", a, "--port", b, "--jobs", 2, "--mode", "accuracy", "--dataset", tmp_path / "ds",
                 "--out", tmp_path / "out", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "AUC 1.000 over 3 files (24 windows)" in r.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["log.txt", "results.json", "results.txt"]
    r = tinytwin("run", "--port", a, "--jobs", 2, "--mode", "accuracy", "--dataset", tmp_path / "ds", "--out", tmp_path / "o2")
    assert r.returncode == 2 and "--jobs 2 needs one DUT per job: give 2 ports" in r.stderr
    r = tinytwin("run", "--port", a, "--port", b, "--mode", "performance", "--dataset", tmp_path / "ds", "--out", tmp_path / "o3")
    assert r.returncode == 2 and "--jobs 2 applies to accuracy runs" in r.stderr


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_fast_twin_process_sleeps_when_the_host_is_quiet(dut_process):
    """A ``tinytwin dut --speed fast`` process looks at its port without
    sleeping for a moment after each command (Twin.SPIN_S), then sleeps:
    one second of silence after a burst of commands costs it next to no CPU."""
    link = dut_process("kws01")
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    try:
        import tty

        tty.setraw(fd)
        for cmd in [b"%", b"db load 62%"] + [b"db " + b"ab" * 31 + b"%"] * 2:
            os.write(fd, cmd)
            buf = b""
            deadline = time.monotonic() + 10
            while not buf.endswith(b"m-ready\r\n") and time.monotonic() < deadline:
                buf += os.read(fd, 4096)
            assert buf.endswith(b"m-ready\r\n"), buf
        from emulator.transport.pty import link_holder

        pid = int(link_holder(link).split()[1].rstrip(":"))
        before = _cpu_s(pid)
        time.sleep(1.0)
        assert _cpu_s(pid) - before < 0.2  # asleep in poll(), not spinning
    finally:
        os.close(fd)


def test_labels_names_another_labels_file(models_dir, tmp_path):
    """ad01's smaller evaluation set (y_labels_alt.csv, accepted from v1.2) is
    chosen with --labels, serially and over two in-process twins; --truth in
    accuracy mode and --labels in energy mode are refused, not ignored."""
    from runner.synth import synthesize

    synthesize("ad01", tmp_path / "ds", 4, models_dir=models_dir, seed=7, frames=12)
    rows = (tmp_path / "ds" / "ad01" / "y_labels.csv").read_text().splitlines()
    (tmp_path / "ds" / "ad01" / "y_labels_alt.csv").write_text("\n".join(rows[:2]) + "\n")
    url = f"tinytwin://ad01?speed=fast&models_dir={models_dir}"
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        r = tinytwin("run", "--port", url, "--jobs", jobs, "--mode", "accuracy", "--dataset", tmp_path / "ds",
                     "--labels", "y_labels_alt.csv", "--out", out, "--no-progress")
        assert r.returncode == 0, r.stderr
        assert "over 2 files" in r.stdout, r.stdout
        assert json.loads((out / "results.json").read_text())["dataset"]["labels"].endswith("y_labels_alt.csv")
    r = tinytwin("run", "--port", url, "--mode", "accuracy", "--dataset", tmp_path / "ds", "--labels", "nope.csv",
                 "--out", tmp_path / "o3")
    assert r.returncode == 2 and "nope.csv is missing" in r.stderr and "y_labels_alt.csv" in r.stderr
    r = tinytwin("run", "--port", url, "--mode", "accuracy", "--dataset", tmp_path / "ds", "--truth", "x.json",
                 "--out", tmp_path / "o4")
    assert r.returncode == 2 and "use --labels" in r.stderr
    r = tinytwin("run", "--mode", "energy", "--io-port", "/dev/null", "--emon-port", "/dev/null", "--dataset",
                 tmp_path / "ds", "--labels", "y_labels_alt.csv", "--out", tmp_path / "o5")
    assert r.returncode == 2 and "--labels is for performance and accuracy runs" in r.stderr

"""Wall time of streaming-wakeword (sww01) runs against the twin in fast mode.

Our runner's energy mode against the sww01 rig (H573 interface board playing
from an SD card directory, LPM01A at 3.3 V, DUT with the reference firmware's
timing profile) on real pseudo-terminals, fast mode:

* the short test (``sww_short_test.json``, ``short_wav_easy10s.wav``: 312
  frames, 10 s of audio on the board);
* a synthetic 1200 s file: the short file's audio repeated 120 times
  (76.8 MB, the size of the official ``long_wav.wav``; 37,498 frames played,
  1.2 million LPM01A samples), with the short test's three windows every 10 s
  (360 wakewords). The official long file is not in ``../shared``
  (mlcommons/tiny's ``benchmark/training/streaming_wakeword/build_long_wav.py``
  rebuilds it from Speech Commands v2 and MUSAN).

Not a test: the figures depend on the machine (printed with them).

Usage::

    python benchmarks/sww01_walltime.py [--shared ../shared] [--skip-long] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import SHARED_HELP, models_folder, shared_folder  # noqa: E402

SHORT = "short_wav_easy10s.wav"
REPEATS = 120  # 120 x 10 s = 1200 s


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_long(shared: Path, root: Path) -> tuple[Path, Path]:
    """The synthetic 1200 s card and dataset under ``root``."""
    card = root / "card"
    ds = root / "ds" / "sww01"
    card.mkdir(parents=True)
    ds.mkdir(parents=True)
    raw = (shared / "sd_card" / SHORT).read_bytes()
    data = raw[44:]
    n = len(data) * REPEATS
    with open(card / "long_synth.wav", "wb") as fh:
        fh.write(b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 2, 16000, 64000, 4, 16)
                 + b"data" + struct.pack("<I", n))
        for _ in range(REPEATS):
            fh.write(data)
    truth = json.loads((shared / "datasets" / "sww01" / "sww_short_test.json").read_text())[0]
    wins = [[a + 10.0 * k, b + 10.0 * k] for k in range(REPEATS) for a, b in truth["detection_windows"]]
    (ds / "sww_synth_test.json").write_text(json.dumps([{
        "wav_file": "long_synth.wav", "length_sec": 10.0 * REPEATS, "sample_rate": 16000, "detection_windows": wins}]))
    return card, root / "ds"


def run(card: Path, dataset: Path, truth: str, out: Path, models_dir: Path) -> dict:
    """``tinytwin rig --model sww01 ... --speed fast`` in its own process (as a
    user runs it), our runner's energy mode against its ptys in this one."""
    from runner.energy import EnergyOptions, run_energy

    links = out.parent / f"{out.name}-rig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.cli", "rig", "--model", "sww01", "--interface", "h573", "--sd-card", str(card),
         "--models-dir", str(models_dir), "--speed", "fast", "--dir", str(links)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 60
        while not ((links / "io").exists() and (links / "emon").exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tinytwin rig did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        t0 = time.monotonic()
        outcome = run_energy(EnergyOptions(io_port=str(links / "io"), emon_port=str(links / "emon"), dataset=dataset,
                                           out=out, progress=False, truth=truth))
        wall = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    rec = json.loads((out / "results.json").read_text())
    st = rec.get("stream", {})
    frames = len(st.get("activations", [])) + st.get("activations_garbled", 0)
    played = st.get("dutycycle", {})
    return {
        "truth": truth,
        "status": outcome.status,
        "message": outcome.message,
        "wall_s": round(wall, 2),
        "frames_in_dump": frames,
        "audio_s": round(rec.get("stream", {}).get("length_s", 0.0), 3),
        "period_s": played.get("period_s"),
        "accuracy": f"{len(st.get('true_positives', []))} TP, {len(st.get('false_negatives', []))} FN, "
                    f"{len(st.get('false_positives', []))} FP",
        "duty_cycle": st.get("dutycycle", {}).get("duty_cycle"),
        "energy_window_s": st.get("energy", {}).get("elapsed_s"),
        "power_mw": st.get("energy", {}).get("power_mw"),
        "emon_samples": rec.get("energy_trace", {}).get("samples"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=None, help=SHARED_HELP)
    ap.add_argument("--skip-long", action="store_true", help="only the short test")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    shared = shared_folder(args.shared)
    models = models_folder(names=("sww01",))
    if not (shared / "sd_card" / SHORT).is_file():
        print(f"needs {shared}/sd_card/{SHORT} (the project's ground-truth folder)", file=sys.stderr)
        return 2
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}")
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="sww01-walltime-"))
    try:
        rows.append(run(shared / "sd_card", shared / "datasets", "sww_short_test.json", tmp / "short", models))
        if not args.skip_long:
            t = time.monotonic()
            card, ds = make_long(shared, tmp / "long")
            print(f"synthetic 1200 s file written in {time.monotonic() - t:.1f} s")
            rows.append(run(card, ds, "sww_synth_test.json", tmp / "long_out", models))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for r in rows:
        if r["status"] != "complete":
            print(f"{r['truth']:>22}: {r['status']}: {r['message']}")
            continue
        print(f"{r['truth']:>22}: {r['audio_s']:g} s file, ~{r['frames_in_dump']} scores in the DUT's dump, in "
              f"{r['wall_s']:.1f} s wall; {r['accuracy']}; duty {r['duty_cycle']:.4f}; window "
              f"{r['energy_window_s']:.3f} s, {r['power_mw']:.2f} mW; {r['emon_samples']} EMON samples")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if all(r["status"] == "complete" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Twin vs the real NUCLEO-L4R5ZI: inference windows and leave-one-out.

    python benchmarks/latency_table.py [--golden DIR] [--models-dir DIR] [--profile P.json]

Prints markdown: (1) the windows the board printed (median m-lap-us delta of
``infer N 1`` in performance mode, of ``infer 1 0`` in accuracy mode) next to
what the cycle model predicts with the shipped profile; (2) leave-one-out:
the profile refitted on three models' reference latencies predicts the
fourth; (3) the fitted parameters.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import golden_folder, models_folder  # noqa: E402

from emulator.cpu import calibrate as cal  # noqa: E402
from emulator.cpu import cycles as C  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--golden", type=Path, default=None)
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None)
    a = ap.parse_args(argv)
    golden = a.golden or golden_folder()
    mdir = models_folder(a.models_dir)
    if not (golden / "reference.csv").exists():
        print(f"reference results not found in {golden}: pass --golden DIR (the reference board's results)")
        return 1
    prof = C.KernelProfile.load(a.profile) if a.profile else C.KernelProfile.load()
    ref = cal.read_reference_csv(golden / "reference.csv")

    print(f"## Twin vs reference (profile `{prof.name}`, {prof.clock_mhz:g} MHz)\n")
    print("| model | N | board window µs | twin µs | err % | board single µs | twin µs | err % "
          "| twin µs/inference | at 80 MHz | arena / model KiB | memory |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for m in ("kws01", "vww01", "ic01", "ad01"):
        r = ref[m]
        g = C.load_graph(mdir / f"{m}.tflite")
        n = int(r["perf_iterations"])
        w_ref = float(r["perf_window_us"])
        w = C.window_us(g, n, prof)
        s_ref = r["single_infer_us"].strip()
        if s_ref:
            s = C.window_us(g, 1, prof)
            single = f"{float(s_ref):,.0f} | {s:,.0f} | {100 * (s / float(s_ref) - 1):+.3f}"
        else:
            single = "– | – | –"
        est = C.estimate(g, prof)
        e80 = C.estimate(g, prof, 80.0)
        mem = est.memory
        print(f"| {m} | {n} | {w_ref:,.0f} | {w:,.0f} | {100 * (w / w_ref - 1):+.3f} | {single} "
              f"| {est.latency_us:,.1f} | {e80.latency_us / est.latency_us:.3f}x "
              f"| {mem.arena_bytes / 1024:.1f} / {mem.model_bytes / 1024:.1f} | {mem.verdict} |")

    meas, fw, _notes = cal.derive_reference(golden, prof)
    base = prof.copy(firmware=fw)
    loo = cal.leave_one_out(meas, base=base, models_dir=mdir)
    print("\n## Leave-one-out (fit on the other three reference latencies)\n")
    print("| held out | reference µs/inference | predicted µs | err % |")
    print("|---|---:|---:|---:|")
    for r in loo:
        print(f"| {r['held_out']} | {r['measured_us']:,.1f} | {r['predicted_us']:,.1f} | {r['error_pct']:+.1f} |")
    ok = sum(abs(r["error_pct"]) < 20 for r in loo)
    print(f"\n{ok} of {len(loo)} within 20 %.")

    print("\n## Parameters\n")
    print("| parameter | value | meaning |")
    print("|---|---:|---|")
    for k, v in prof.params.items():
        print(f"| {k} | {v:,.3f} | {C.PARAM_DOC.get(k, '')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Power model vs the real NUCLEO-L4R5ZI's energy traces: in-sample fit and leave-one-out.

    python benchmarks/energy_loo.py [--golden DIR]

Prints markdown: (1) the parameters fitted on all four reference traces (at
the 1.8 V the logs give) and what each means; (2) the in-sample fit: every
segment of the traces (idle before and after, prints, energy windows),
measured vs model; (3) leave-one-out, the held-out check: the model fitted
on three models' traces predicts the fourth's mean energy-window power.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import golden_folder  # noqa: E402

from emulator.power.model import build_default_profile  # noqa: E402

MEANING = {
    "static_ua": "clock-independent current (regulator, oscillators, PLL, memories' static current): prior, not fitted",
    "run_ua_per_mhz": "dynamic current per MHz of the CPU in the firmware's main loop (busy-polling the UART)",
    "tx_extra_ua": "extra current while the firmware prints (UART transmit, pin driven)",
    "infer_extra_ua_per_mhz": "extra dynamic current per MHz of the inference kernels over the main loop, any model",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--golden", type=Path, default=None)
    a = ap.parse_args(argv)
    golden = a.golden or golden_folder()
    if not (golden / "reference.csv").exists():
        print(f"reference results not found in {golden}: pass --golden DIR (the reference board's results)")
        return 1
    model, report = build_default_profile(golden)
    volts = sorted(set(model.provenance["supply_voltage"]["volts_by_log"].values()))
    v = volts[0]

    print(f"## Power model parameters (fitted on all four traces, supply {', '.join(f'{x:g}' for x in volts)} V)\n")
    print("| parameter | value | at 120 MHz | meaning |")
    print("|---|---:|---:|---|")
    for k, val in model.params().items():
        at = f"{val * 120 * model.core_scale(120) / 1000:.2f} mA" if k.endswith("per_mhz") else f"{val / 1000:.2f} mA"
        print(f"| `{k}` | {val:.4g} | {at} | {MEANING[k]} |")
    print(f"\nLevels at {v:g} V, 120 MHz: idle {model.power_mw('idle', v):.3f} mW ({model.current_ua('idle') / 1000:.2f} mA), "
          f"inference {model.power_mw('infer', v):.3f} mW ({model.current_ua('infer') / 1000:.2f} mA).\n")

    fit = report["fit"]
    print(f"## In-sample fit (every segment; rms {fit.rms_pct:.2f} %, worst {fit.max_abs_pct:.2f} %)\n")
    print("| segment | board mW | model mW | err % |")
    print("|---|---:|---:|---:|")
    for r in fit.residuals:
        print(f"| {r['label']} | {r['measured_mw']:.3f} | {r['model_mw']:.3f} | {r['error_pct']:+.2f} |")

    loo = report["leave_one_out"]
    ok = sum(abs(r["error_pct"]) <= 3.0 for r in loo)
    print(f"\n## Leave-one-out (held out: fitted on the other three models' traces): {ok} of {len(loo)} within 3 %\n")
    print("| held-out model | board window mW | predicted mW | err % | infer_extra µA/MHz of that fit |")
    print("|---|---:|---:|---:|---:|")
    for r in loo:
        print(f"| {r['model']} | {r['measured_mw']:.3f} | {r['predicted_mw']:.3f} | {r['error_pct']:+.2f} "
              f"| {r['parameters']['infer_extra_ua_per_mhz']:.2f} |")
    return 0 if ok >= 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""What-if predictions against published MLPerf Tiny runs they were not fitted to.

    python benchmarks/whatif_validation.py [--runs benchmarks/data/published_runs.csv]
        [--sizes 2,3] [--subset kws01+ic01 ...] [--models-dir DIR] [--out FILE.md] [--csv FILE.csv]

Prints markdown:

1. *Held out, reference stack*: leave-one-out on the v0.5 reference (TFLM
   2.3.1 + CMSIS-NN, NUCLEO-L4R5ZI): each model's latency predicted from the
   other three, with its interval.
2. *Held out, published runs*: for every other system of the table (one
   kernel stack on one board) and every calibration subset (all subsets of
   ``--sizes`` models, or the ``--subset`` lists), the stack is calibrated on
   that subset (latency; energy when published) and predicts the system's
   remaining models: error and whether the interval covered the published
   figure. Summary by calibration size, then every row, misses marked.
3. *Another board*: a stack calibrated on one board's four models, moved to
   another board of the same submission (the core's prior cycle factor from
   ``priors.json``, the board's flash), predicts that board's latencies.
4. *Supply*: same board, same firmware, published at two supplies: the
   power model's supply scaling against the second supply's energies.
5. *Datasheet power*: on the shipped boards whose power is the datasheet's
   headline run current, that power times the published latency against the
   published energy (the power path of an uncalibrated board, on its own).
6. *Held back*: the runs kept out of the table and of every choice of
   method (``--held-back``, read by ``data/read_published_runs.py
   --held-back`` once the rest was frozen), predicted as in 2.

Every predicted figure was left out of the fit that predicts it, and the
priors (``emulator/whatif/priors.json``) were set from the cycle model's
structure, Arm's CoreMark figures and the reference board. Not wholly held
out, though: the fit's likelihood (with a model-error term) was chosen after
scoring the alternative on this table, the datasheet power width cites ST's
U575 runs (rows of it), and the supply pair is the power model's own
evidence for P = V x I (see the README's "What-if, held out"); section 6's
runs are the ones that are.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import models_folder  # noqa: E402

from emulator.whatif import validate as V  # noqa: E402
from emulator.whatif.boards import priors  # noqa: E402

TOL = 25.0


def _pct(x) -> str:
    return "–" if x is None else f"{x:+.1f}"


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def summary_table(summ: dict) -> list[str]:
    """The markdown rows of :func:`emulator.whatif.validate.summarize`'s counts."""
    lines = [f"| predicted | models calibrated on | predictions | within {TOL:g} % | interval covers | median abs err % |",
             "|---|---:|---:|---:|---:|---:|"]
    for what in ("latency", "energy"):
        for n, s in summ[what].items():
            lines.append(f"| {what} | {n} | {s['n']} | {s['within']} ({100 * s['within'] / s['n']:.0f} %) | "
                         f"{s['covered']} ({100 * s['covered'] / s['n']:.0f} %) | {s['median_abs_err_pct']:.1f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path(__file__).resolve().parent / "data" / "published_runs.csv")
    ap.add_argument("--sizes", default="2,3", help="calibration subset sizes (all subsets of these sizes)")
    ap.add_argument("--subset", action="append", default=None,
                    help="a calibration subset such as kws01+ic01 (repeatable; replaces --sizes)")
    ap.add_argument("--held-back", type=Path, default=Path(__file__).resolve().parent / "data" / "held_back_runs.csv",
                    help="runs kept out of --runs and of every choice of method (read by "
                         "data/read_published_runs.py --held-back): predicted last, the same way")
    ap.add_argument("--likelihood", choices=("model-error", "noise-only"), default="model-error",
                    help="the fit's likelihood: measurement noise and the model's structural error (the what-if "
                         "fit's), or measurement noise alone (the alternative it was chosen over)")
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    ap.add_argument("--csv", type=Path, default=None, help="write every held-out row as CSV")
    a = ap.parse_args(argv)
    mdir = models_folder(a.models_dir)
    sizes = tuple(int(x) for x in a.sizes.split(","))
    subsets = [s.split("+") for s in a.subset] if a.subset else None
    systems = V.read_published(a.runs)
    level = int(round(100 * float(priors()["interval"])))
    out: list[str] = []
    p = out.append
    p(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
      f"Python {platform.python_version()}; table: {a.runs.name} ({sum(len(s.runs) for s in systems.values())} runs, "
      f"{len(systems)} systems); likelihood: {a.likelihood}\n")

    noise_only = a.likelihood == "noise-only"
    loo = V.reference_loo(mdir, noise_only=noise_only)
    p(f"## Held out: the reference stack, leave-one-out ({level} % intervals)\n")
    p("| held out | reference µs | predicted µs | interval µs | err % | covered |")
    p("|---|---:|---:|---:|---:|---|")
    for r in loo:
        p(f"| {r['model']} | {r['latency_us']:,.0f} | {r['pred_latency_us']:,.0f} | "
          f"{r['latency_lo_us']:,.0f} – {r['latency_hi_us']:,.0f} | {_pct(r['latency_err_pct'])} | "
          f"{_mark(r['latency_covered'])} |")
    p(f"\n{sum(abs(r['latency_err_pct']) <= 20 for r in loo)} of 4 within 20 %, intervals cover "
      f"{sum(r['latency_covered'] for r in loo)} of 4.\n")

    rows = V.held_out(systems, sizes, subsets, models_dir=mdir, noise_only=noise_only)
    p(f"## Held out: published runs (not the reference), calibrated on {'the given subsets' if subsets else ' or '.join(map(str, sizes)) + ' of each system' + chr(39) + 's models'}\n")
    out += summary_table(V.summarize(rows, TOL))
    p("\nBy held-out model (the intervals' coverage is not uniform across models):\n")
    p(f"| predicted | models calibrated on | held out | predictions | within {TOL:g} % | interval covers |")
    p("|---|---:|---|---:|---:|---:|")
    for what in ("latency", "energy"):
        cells: dict[tuple[int, str], list[dict]] = {}
        for r in rows:
            if f"{what}_err_pct" in r:
                cells.setdefault((r["n_cal"], r["model"]), []).append(r)
        for (n, m), rs in sorted(cells.items()):
            within = sum(abs(r[f"{what}_err_pct"]) <= TOL for r in rs)
            cov = sum(bool(r[f"{what}_covered"]) for r in rs)
            p(f"| {what} | {n} | {m} | {len(rs)} | {within} ({100 * within / len(rs):.0f} %) | "
              f"{cov} ({100 * cov / len(rs):.0f} %) |")
    misses_l = [r for r in rows if abs(r["latency_err_pct"]) > TOL]
    misses_e = [r for r in rows if "energy_err_pct" in r and abs(r["energy_err_pct"]) > TOL]
    p(f"\nMisses (beyond {TOL:g} %): {len(misses_l)} latency, {len(misses_e)} energy predictions, every one in the "
      "table below (**bold**).\n")
    by_model: dict[str, list] = {}
    for r in misses_l:
        by_model.setdefault(r["model"], []).append(r)
    p("Latency misses by held-out model: " + "; ".join(
        f"{m}: {len(v)} (median {sorted(x['latency_err_pct'] for x in v)[len(v) // 2]:+.0f} %)"
        for m, v in sorted(by_model.items())) + "\n")

    p("## Every held-out prediction\n")
    p("| system | stack | calibrated on | held out | latency err % | covered | energy err % | covered | source |")
    p("|---|---|---|---|---:|---|---:|---|---|")
    for r in rows:
        le = _pct(r["latency_err_pct"])
        le = f"**{le}**" if abs(r["latency_err_pct"]) > TOL else le
        if "energy_err_pct" in r:
            ee = _pct(r["energy_err_pct"])
            ee = f"**{ee}**" if abs(r["energy_err_pct"]) > TOL else ee
            ec = _mark(r["energy_covered"])
        else:
            ee = ec = "–"
        src = r["source"].split(" ; ")[0].replace("mlcommons/tiny_results_", "")
        p(f"| {r['system']} | {r['stack']} | {r['calibrated_on']} | {r['model']} | {le} | {_mark(r['latency_covered'])} "
          f"| {ee} | {ec} | {src} |")

    xb = V.cross_board(systems, models_dir=mdir)
    p("\n## Held out: another board, same stack (calibrated on all four models of one system, moved by the core's "
      "prior cycle factor)\n")
    p(f"| from core | to core | predictions | within {TOL:g} % | interval covers | median err % |")
    p("|---|---|---:|---:|---:|---:|")
    pairs_c: dict[tuple[str, str], list[dict]] = {}
    for r in xb:
        pairs_c.setdefault((r["from_core"], r["to_core"]), []).append(r)
    for (fc, tc), rs in pairs_c.items():
        errs = sorted(r["latency_err_pct"] for r in rs)
        p(f"| {fc} | {tc} | {len(rs)} | {sum(abs(e) <= TOL for e in errs)} | {sum(r['latency_covered'] for r in rs)} "
          f"| {errs[len(errs) // 2]:+.1f} |")
    p(f"\nAll: {sum(abs(r['latency_err_pct']) <= TOL for r in xb)} of {len(xb)} within {TOL:g} %, intervals cover "
      f"{sum(r['latency_covered'] for r in xb)}. Pairs: same release, same submitter, same stack, different board.")

    pairs = V.supply_pairs(systems)
    p("\n## Supply: the same firmware published at two supplies\n")
    p("| board | regulator | stack | model | from | to | published µJ | predicted µJ | err % | latency ratio |")
    p("|---|---|---|---|---|---|---:|---:|---:|---:|")
    for r in pairs:
        p(f"| {r['board']} | {r['regulator']} | {r['stack']} | {r['model']} | {r['from_system']} @ {r['from_supply_v']:g} V "
          f"| {r['to_system']} @ {r['to_supply_v']:g} V | {r['energy_uj']:,.1f} | {r['pred_energy_uj']:,.1f} | "
          f"{_pct(r['energy_err_pct'])} | {r['latency_ratio']:.3f} |")
    ldo = [r for r in pairs if r["regulator"] == "LDO"]
    if ldo:
        p(f"\nLDO board: {sum(abs(r['energy_err_pct']) <= 3 for r in ldo)} of {len(ldo)} within 3 % "
          "(P = V x I, the current unchanged).")
    ds = V.datasheet_power(systems)
    if ds:
        p("\n## Datasheet power, unmeasured: the board's headline run current x the published latency\n")
        p("The power an uncalibrated board brings (every held-out energy above uses power fitted from the system's "
          "own runs instead). Not held out for the U575: its published runs informed the prior's width.\n")
        p("| board | system | model | supply V | published µJ | predicted µJ | interval µJ | err % | covered |")
        p("|---|---|---|---:|---:|---:|---:|---:|---|")
        for r in ds:
            p(f"| {r['board']} | {r['system']} | {r['model']} | {r['supply_v']:g} | {r['energy_uj']:,.1f} | "
              f"{r['pred_energy_uj']:,.1f} | {r['energy_lo_uj']:,.1f} – {r['energy_hi_uj']:,.1f} | "
              f"{_pct(r['energy_err_pct'])} | {_mark(r['energy_covered'])} |")
        errs = sorted(r["energy_err_pct"] for r in ds)
        p(f"\n{len(ds)} energies: median error {statistics.median(errs):+.1f} % (range {errs[0]:+.1f} to "
          f"{errs[-1]:+.1f} %), intervals cover {sum(r['energy_covered'] for r in ds)}.")
    if a.held_back.is_file():
        hb_systems = V.read_published(a.held_back)
        hb = V.held_out(hb_systems, sizes, subsets, models_dir=mdir, noise_only=noise_only)
        p(f"\n## Held back: {sum(len(s.runs) for s in hb_systems.values())} runs of {len(hb_systems)} systems "
          "read for this check only (never in the table, a prior or a choice of method), predicted as above\n")
        out += summary_table(V.summarize(hb, TOL))
        p("")
        p("| system | stack | calibrated on | held out | latency err % | covered | energy err % | covered |")
        p("|---|---|---|---|---:|---|---:|---|")
        for r in hb:
            ee = _pct(r.get("energy_err_pct"))
            ec = _mark(r["energy_covered"]) if "energy_covered" in r else "–"
            p(f"| {r['system']} | {r['stack']} | {r['calibrated_on']} | {r['model']} | {_pct(r['latency_err_pct'])} | "
              f"{_mark(r['latency_covered'])} | {ee} | {ec} |")
    text = "\n".join(out)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    if a.csv:
        cols = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("system", "model"), k))
        with open(a.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

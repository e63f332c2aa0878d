"""Build ``published_runs.csv`` from checkouts of the public MLPerf Tiny results.

    git clone https://github.com/mlcommons/tiny_results_v1.1   (and v0.5, v0.7, v1.0, v1.2, v1.3)
    python benchmarks/data/read_published_runs.py --root DIR [--out benchmarks/data/published_runs.csv] [--held-back]

``DIR`` holds the checkouts as ``tiny_results_v0.5`` ... ``tiny_results_v1.3``.
Every figure is read off the submission's own files:

* ``latency_us``: 1e6 / the "Median throughput is X inf./sec." line of the
  performance ``results.txt`` (the EnergyRunner's median over 5 windows);
* ``energy_uj``: the "Median energy cost is X uJ/inf." line of the energy
  ``results.txt``; ``energy_latency_us``: the energy run's own latency
  (1e6 / its median throughput; v1.3's runner prints per-trial "Elapsed time"
  and "Inferences" instead: the median of their ratio);
* ``supply_v``: the EMON's answer to the session's last ``emon voltage``
  (``m-voltage-mv[...]`` in the energy ``log.txt``), per run; v1.3's runner
  does not log it, so there the system description's "Hardware Notes"
  (e.g. "Operating at 1.8V / SMPS") give it, and ``supply_from`` says which.

Only systems whose inference runs on an Arm Cortex-M CPU the cycle model
covers (M4F, M7, M33) are read (:data:`SYSTEMS`); accelerators, RISC-V, DSPs
and FPGAs are not. Two groups of published runs are deliberately NOT read
(:data:`HELD_BACK_SYSTEMS`): they are kept for an independent check, and
nothing in tinytwin is fitted or tuned to them; ``--held-back`` reads them
alone into ``held_back_runs.csv`` (2026-12-07, after the method was frozen).
"""
from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

MODEL_DIRS = {"kws": "kws01", "vww": "vww01", "ic": "ic01", "ad": "ad01"}


@dataclass(frozen=True)
class System:
    release: str
    path: str  # results folder of the system, under the release's repository
    system: str  # our id
    board: str
    core: str
    clock_mhz: float
    stack: str
    #: where the system description is (for the supply when the logs lack it)
    description: str = ""


def _s(release, path, system, board, core, clock, stack, description=""):
    return System(release, path, system, board, core, float(clock), stack, description)


#: runs kept out of ``published_runs.csv`` (and out of every fit, prior and
#: choice of method): ``--held-back`` reads them, alone, into
#: ``held_back_runs.csv`` for ``benchmarks/whatif_validation.py``'s last check
HELD_BACK_SYSTEMS = (
    _s("v1.0", "closed/OctoML/results/microtvm_cmsis_nn/NUCLEO_L4R5ZI", "v1.0/octoml/NUCLEO-L4R5ZI-cmsis-nn",
       "NUCLEO-L4R5ZI", "M4F", 120, "microtvm-cmsis-nn",
       "closed/OctoML/systems/system_description_NUCLEO_L4R5ZI_microtvm_cmsis_nn.json"),
    _s("v1.1", "closed/Krai/results/NUCLEO-L4R5ZI_MICROTVM-CMSIS-NN", "v1.1/krai/NUCLEO-L4R5ZI-microtvm-cmsis-nn",
       "NUCLEO-L4R5ZI", "M4F", 120, "microtvm-cmsis-nn", "closed/Krai/systems/NUCLEO-L4R5ZI_MICROTVM-CMSIS-NN.json"),
    _s("v1.1", "closed/cTuning/results/NUCLEO-L4R5ZI_MicroTVM_CMSIS_NN", "v1.1/ctuning/NUCLEO-L4R5ZI-microtvm-cmsis-nn",
       "NUCLEO-L4R5ZI", "M4F", 120, "microtvm-cmsis-nn", "closed/cTuning/systems/NUCLEO-L4R5ZI_MicroTVM_CMSIS_NN.json"),
    _s("v0.7", "closed/renesas/results/EK-RA6M4", "v0.7/renesas/EK-RA6M4", "EK-RA6M4", "M33", 200, "tflm-cmsis-nn",
       "closed/renesas/systems/EK-RA6M4_System_Description.json"),
)
HELD_BACK = tuple((s.release, s.path) for s in HELD_BACK_SYSTEMS)


#: the systems read, with board, core, clock and kernel stack as their system
#: descriptions give them (systems/*.json of each submission)
SYSTEMS = (
    _s("v0.5", "closed/reference/results/Nucleo-L4R5ZI", "v0.5/reference/NUCLEO-L4R5ZI", "NUCLEO-L4R5ZI", "M4F", 120,
       "tflm-2.3.1-cmsis-nn", "closed/reference/systems/Nucleo_L4R5ZI_System_Description.json"),
    _s("v0.7", "closed/STMicroelectronics/results/NUCLEO_L4R5ZI", "v0.7/st/NUCLEO-L4R5ZI", "NUCLEO-L4R5ZI", "M4F", 120,
       "x-cube-ai-7.1", "closed/STMicroelectronics/systems/NUCLEO_L4R5ZI/NUCLEO_L4R5ZI_system_description.json"),
    _s("v0.7", "closed/STMicroelectronics/results/NUCLEO-U575ZI-Q", "v0.7/st/NUCLEO-U575ZI-Q", "NUCLEO-U575ZI-Q", "M33", 160,
       "x-cube-ai-7.1", "closed/STMicroelectronics/systems/NUCLEO-U575ZI-Q/NUCLEO-U575ZI-Q_system_description.json"),
    _s("v0.7", "closed/STMicroelectronics/results/NUCLEO-H7A3ZI-Q", "v0.7/st/NUCLEO-H7A3ZI-Q", "NUCLEO-H7A3ZI-Q", "M7", 280,
       "x-cube-ai-7.1", "closed/STMicroelectronics/systems/NUCLEO-H7A3ZI-Q/NUCLEO_H7A3ZI_Q_system_description.json"),
    _s("v0.7", "closed/plumerai/results/NUCLEO_L4R5ZI", "v0.7/plumerai/NUCLEO-L4R5ZI", "NUCLEO-L4R5ZI", "M4F", 120,
       "plumerai-2022"),
    _s("v0.7", "closed/plumerai/results/DISCO_F746NG", "v0.7/plumerai/DISCO-F746NG", "DISCO-F746NG", "M7", 216,
       "plumerai-2022"),
    _s("v0.7", "closed/plumerai/results/cy8cproto_062_4343w", "v0.7/plumerai/CY8CPROTO-062-4343W", "CY8CPROTO-062-4343W",
       "M4F", 150, "plumerai-2022"),
    _s("v1.0", "closed/OctoML/results/microtvm_native/NUCLEO_L4R5ZI", "v1.0/octoml/NUCLEO-L4R5ZI-native", "NUCLEO-L4R5ZI",
       "M4F", 120, "microtvm-native"),
    _s("v1.0", "closed/OctoML/results/microtvm_cmsis_nn/NRF5340-DK", "v1.0/octoml/NRF5340-DK-cmsis-nn", "NRF5340-DK",
       "M33", 128, "microtvm-cmsis-nn"),
    _s("v1.0", "closed/STMicroelectronics/results/NUCLEO_L4R5ZI", "v1.0/st/NUCLEO-L4R5ZI", "NUCLEO-L4R5ZI", "M4F", 120,
       "x-cube-ai-7.3", "closed/STMicroelectronics/systems/NUCLEO_L4R5ZI/NUCLEO_L4R5ZI_system_description.json"),
    _s("v1.0", "closed/STMicroelectronics/results/NUCLEO-U575ZI-Q", "v1.0/st/NUCLEO-U575ZI-Q", "NUCLEO-U575ZI-Q", "M33", 160,
       "x-cube-ai-7.3", "closed/STMicroelectronics/systems/NUCLEO-U575ZI-Q/NUCLEO-U575ZI-Q_system_description.json"),
    _s("v1.0", "closed/STMicroelectronics/results/NUCLEO-H7A3ZI-Q", "v1.0/st/NUCLEO-H7A3ZI-Q", "NUCLEO-H7A3ZI-Q", "M7", 280,
       "x-cube-ai-7.3", "closed/STMicroelectronics/systems/NUCLEO-H7A3ZI-Q/NUCLEO_H7A3ZI_Q_system_description.json"),
    _s("v1.0", "closed/plumerai/results/NUCLEO_L4R5ZI", "v1.0/plumerai/NUCLEO-L4R5ZI", "NUCLEO-L4R5ZI", "M4F", 120,
       "plumerai-2022"),
    _s("v1.0", "closed/plumerai/results/DISCO_F746NG", "v1.0/plumerai/DISCO-F746NG", "DISCO-F746NG", "M7", 216,
       "plumerai-2022"),
    _s("v1.0", "closed/plumerai/results/cy8cproto_062_4343w", "v1.0/plumerai/CY8CPROTO-062-4343W", "CY8CPROTO-062-4343W",
       "M4F", 150, "plumerai-2022"),
    _s("v1.0", "closed/plumerai/results/B_U585I_IOT02A", "v1.0/plumerai/B-U585I-IOT02A", "B-U585I-IOT02A", "M33", 160,
       "plumerai-2022"),
    _s("v1.1", "closed/Krai/results/NUCLEO-L4R5ZI_X-CUBE-AI-7.3", "v1.1/krai/NUCLEO-L4R5ZI-xcubeai-7.3", "NUCLEO-L4R5ZI",
       "M4F", 120, "x-cube-ai-7.3", "closed/Krai/systems/NUCLEO-L4R5ZI_X-CUBE-AI-7.3.json"),
    _s("v1.1", "closed/Krai/results/NUCLEO-L4R5ZI_X-CUBE-AI-8.0", "v1.1/krai/NUCLEO-L4R5ZI-xcubeai-8.0", "NUCLEO-L4R5ZI",
       "M4F", 120, "x-cube-ai-8.0", "closed/Krai/systems/NUCLEO-L4R5ZI_X-CUBE-AI-8.0.json"),
    _s("v1.1", "closed/Krai/results/NUCLEO-H7A3ZI-Q_X-CUBE-AI-7.3", "v1.1/krai/NUCLEO-H7A3ZI-Q-xcubeai-7.3", "NUCLEO-H7A3ZI-Q",
       "M7", 280, "x-cube-ai-7.3", "closed/Krai/systems/NUCLEO-H7A3ZI-Q_X-CUBE-AI-7.3.json"),
    _s("v1.1", "closed/Krai/results/NUCLEO-H7A3ZI-Q_X-CUBE-AI-8.0", "v1.1/krai/NUCLEO-H7A3ZI-Q-xcubeai-8.0", "NUCLEO-H7A3ZI-Q",
       "M7", 280, "x-cube-ai-8.0", "closed/Krai/systems/NUCLEO-H7A3ZI-Q_X-CUBE-AI-8.0.json"),
    _s("v1.1", "closed/Krai/results/NUCLEO-L4R5ZI_MICROTVM-NATIVE", "v1.1/krai/NUCLEO-L4R5ZI-microtvm-native", "NUCLEO-L4R5ZI",
       "M4F", 120, "microtvm-native"),
    _s("v1.1", "closed/Krai/results/NRF5340-DK_MICROTVM-CMSIS-NN", "v1.1/krai/NRF5340-DK-microtvm-cmsis-nn", "NRF5340-DK",
       "M33", 128, "microtvm-cmsis-nn"),
    _s("v1.1", "closed/Nuvoton/results/NUMAKER_M467HJ-zephyr", "v1.1/nuvoton/NUMAKER-M467HJ", "NUMAKER-M467HJ", "M4F", 200,
       "onnc-cmsis-nn"),
    _s("v1.1", "closed/STMicroelectronics/results/NUCLEO_L4R5ZI", "v1.1/st/NUCLEO-L4R5ZI", "NUCLEO-L4R5ZI", "M4F", 120,
       "x-cube-ai-8.1", "closed/STMicroelectronics/systems/NUCLEO_L4R5ZI.json"),
    _s("v1.1", "closed/STMicroelectronics/results/NUCLEO_U575ZI_Q", "v1.1/st/NUCLEO-U575ZI-Q", "NUCLEO-U575ZI-Q", "M33", 160,
       "x-cube-ai-8.1", "closed/STMicroelectronics/systems/NUCLEO_U575ZI_Q.json"),
    _s("v1.1", "closed/STMicroelectronics/results/NUCLEO_H7A3ZI_Q", "v1.1/st/NUCLEO-H7A3ZI-Q", "NUCLEO-H7A3ZI-Q", "M7", 280,
       "x-cube-ai-8.1", "closed/STMicroelectronics/systems/NUCLEO_H7A3ZI_Q.json"),
    _s("v1.1", "closed/Skymizer/results/NUCLEO_L4R5ZI-mbed_os", "v1.1/skymizer/NUCLEO-L4R5ZI-mbed", "NUCLEO-L4R5ZI", "M4F", 120,
       "onnc-cmsis-nn"),
    _s("v1.1", "closed/Skymizer/results/NUCLEO_L4R5ZI-zephyr", "v1.1/skymizer/NUCLEO-L4R5ZI-zephyr", "NUCLEO-L4R5ZI", "M4F",
       120, "onnc-cmsis-nn"),
    _s("v1.1", "closed/bosch/results/NUCLEO_L4R5ZI", "v1.1/bosch/NUCLEO-L4R5ZI", "NUCLEO-L4R5ZI", "M4F", 120, "bosch-hale-1.0"),
    _s("v1.1", "closed/bosch/results/NUCLEO_U575ZI", "v1.1/bosch/NUCLEO-U575ZI-Q", "NUCLEO-U575ZI-Q", "M33", 160,
       "bosch-hale-1.0"),
    _s("v1.1", "closed/bosch/results/NUCLEO_H7A3ZI", "v1.1/bosch/NUCLEO-H7A3ZI-Q", "NUCLEO-H7A3ZI-Q", "M7", 280,
       "bosch-hale-1.0"),
    _s("v1.1", "closed/bosch/results/DISCO_F746NG", "v1.1/bosch/DISCO-F746NG", "DISCO-F746NG", "M7", 216, "bosch-hale-1.0"),
    _s("v1.1", "closed/plumerai/results/NUCLEO-L4R5ZI", "v1.1/plumerai/NUCLEO-L4R5ZI", "NUCLEO-L4R5ZI", "M4F", 120,
       "plumerai-2023.05"),
    _s("v1.1", "closed/plumerai/results/NUCLEO-U575ZI-Q", "v1.1/plumerai/NUCLEO-U575ZI-Q", "NUCLEO-U575ZI-Q", "M33", 160,
       "plumerai-2023.05"),
    _s("v1.1", "closed/plumerai/results/NUCLEO-H7A3ZI-Q", "v1.1/plumerai/NUCLEO-H7A3ZI-Q", "NUCLEO-H7A3ZI-Q", "M7", 280,
       "plumerai-2023.05"),
    _s("v1.1", "closed/plumerai/results/DISCO-F746NG", "v1.1/plumerai/DISCO-F746NG", "DISCO-F746NG", "M7", 216,
       "plumerai-2023.05"),
    _s("v1.1", "closed/plumerai/results/CY8CPROTO-062-4343W", "v1.1/plumerai/CY8CPROTO-062-4343W", "CY8CPROTO-062-4343W",
       "M4F", 150, "plumerai-2023.05"),
    _s("v1.2", "closed/STMicroelectronics/results/NUCLEO_L4R5ZI", "v1.2/st/NUCLEO-L4R5ZI", "NUCLEO-L4R5ZI", "M4F", 120,
       "x-cube-ai-9.0", "closed/STMicroelectronics/systems/NUCLEO_L4R5ZI.json"),
    _s("v1.2", "closed/STMicroelectronics/results/NUCLEO_U575ZI_Q", "v1.2/st/NUCLEO-U575ZI-Q", "NUCLEO-U575ZI-Q", "M33", 160,
       "x-cube-ai-9.0", "closed/STMicroelectronics/systems/NUCLEO_U575ZI_Q.json"),
    _s("v1.2", "closed/STMicroelectronics/results/NUCLEO_H7A3ZI_Q", "v1.2/st/NUCLEO-H7A3ZI-Q", "NUCLEO-H7A3ZI-Q", "M7", 280,
       "x-cube-ai-9.0", "closed/STMicroelectronics/systems/NUCLEO_H7A3ZI_Q.json"),
    _s("v1.2", "closed/bosch/results/NUCLEO_L4R5ZI_int8", "v1.2/bosch/NUCLEO-L4R5ZI", "NUCLEO-L4R5ZI", "M4F", 120,
       "bosch-hale-1.0.175"),
    _s("v1.2", "closed/bosch/results/NUCLEO_U575ZI_int8", "v1.2/bosch/NUCLEO-U575ZI-Q", "NUCLEO-U575ZI-Q", "M33", 160,
       "bosch-hale-1.0.175"),
    _s("v1.2", "closed/bosch/results/NUCLEO_H7A3ZI_int8", "v1.2/bosch/NUCLEO-H7A3ZI-Q", "NUCLEO-H7A3ZI-Q", "M7", 280,
       "bosch-hale-1.0.175"),
    _s("v1.2", "closed/bosch/results/DISCO_F746NG_int8", "v1.2/bosch/DISCO-F746NG", "DISCO-F746NG", "M7", 216,
       "bosch-hale-1.0.175"),
    _s("v1.2", "closed/bosch/results/CY8CPROTO_062_4343W_int8", "v1.2/bosch/CY8CPROTO-062-4343W", "CY8CPROTO-062-4343W",
       "M4F", 150, "bosch-hale-1.0.175"),
    _s("v1.3", "closed/STMicroelectronics/results/NUCLEO_L4R5ZI-P", "v1.3/st/NUCLEO-L4R5ZI-P", "NUCLEO-L4R5ZI-P", "M4F", 120,
       "x-cube-ai-10.2", "closed/STMicroelectronics/systems/NUCLEO_L4R5ZI-P.json"),
    _s("v1.3", "closed/STMicroelectronics/results/NUCLEO_U575ZI_Q", "v1.3/st/NUCLEO-U575ZI-Q", "NUCLEO-U575ZI-Q", "M33", 160,
       "x-cube-ai-10.2", "closed/STMicroelectronics/systems/NUCLEO_U575ZI_Q.json"),
    _s("v1.3", "closed/STMicroelectronics/results/NUCLEO_U385RG_Q", "v1.3/st/NUCLEO-U385RG-Q", "NUCLEO-U385RG-Q", "M33", 96,
       "x-cube-ai-10.2", "closed/STMicroelectronics/systems/NUCLEO_U385RG_Q.json"),
)

COLUMNS = ("system", "release", "board", "core", "clock_mhz", "stack", "model", "latency_us", "energy_uj",
           "energy_latency_us", "supply_v", "supply_from", "source")

_MEDIAN_THR = re.compile(r"Median throughput is\s+([\d.]+)")
_MEDIAN_E = re.compile(r"Median energy cost is\s+([\d.]+)")
_VOLT = re.compile(r"m-voltage-mv\[(\d+)\]")
_TRIAL = re.compile(r"Elapsed time\s*:\s*([\d.]+)\s*\n\s*Inferences\s*:\s*(\d+)")
_NOTES_V = re.compile(r"Operating at\s*([\d.]+)\s*V", re.I)


def _one(folder: Path, kind: str) -> Path | None:
    """``results.txt`` (or ``<kind>_results.txt``) in a run folder."""
    for name in ("results.txt", f"{kind}_results.txt"):
        if (folder / name).exists():
            return folder / name
    return None


def read_system(root: Path, s: System) -> list[dict]:
    repo = f"mlcommons/tiny_results_{s.release}"
    base = root / f"tiny_results_{s.release}" / s.path
    if not base.is_dir():
        raise FileNotFoundError(f"{base} not found (clone {repo} into {root})")
    rows = []
    for short, model in MODEL_DIRS.items():
        perf = _one(base / short / "performance", "performance")
        if perf is None:
            continue
        m = _MEDIAN_THR.search(perf.read_text(errors="replace"))
        if not m:
            raise ValueError(f"{perf}: no 'Median throughput' line")
        row = {c: "" for c in COLUMNS}
        row.update(system=s.system, release=s.release, board=s.board, core=s.core, clock_mhz=f"{s.clock_mhz:g}",
                   stack=s.stack, model=model, latency_us=f"{1e6 / float(m.group(1)):.1f}")
        sources = [f"{repo}:{perf.relative_to(root / f'tiny_results_{s.release}')}"]
        energy = _one(base / short / "energy", "energy")
        if energy is not None:
            text = energy.read_text(errors="replace")
            me = _MEDIAN_E.search(text)
            if me:
                row["energy_uj"] = me.group(1)
                mt = _MEDIAN_THR.search(text)
                if mt:
                    row["energy_latency_us"] = f"{1e6 / float(mt.group(1)):.1f}"
                else:
                    trials = [1e6 * float(t) / int(n) for t, n in _TRIAL.findall(text)]
                    if trials:
                        row["energy_latency_us"] = f"{statistics.median(trials):.1f}"
                rel = energy.relative_to(root / f"tiny_results_{s.release}")
                sources.append(f"{repo}:{rel}")
                log = energy.parent / energy.name.replace("results.txt", "log.txt")
                volts = _VOLT.findall(log.read_text(errors="replace")) if log.exists() else []
                if volts:
                    row["supply_v"] = f"{int(volts[-1]) / 1000:g}"
                    row["supply_from"] = f"m-voltage-mv[{volts[-1]}] in {repo}:{log.relative_to(root / f'tiny_results_{s.release}')}"
                elif s.description:
                    desc = (root / f"tiny_results_{s.release}" / s.description).read_text(errors="replace")
                    mv = _NOTES_V.search(desc)
                    if mv:
                        row["supply_v"] = f"{float(mv.group(1)):g}"
                        row["supply_from"] = f"Hardware Notes '{mv.group(0)}' in {repo}:{s.description} (the log has no m-voltage-mv)"
        row["source"] = " ; ".join(sources)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="folder holding tiny_results_v0.5 ... tiny_results_v1.3")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: published_runs.csv beside this script (held_back_runs.csv with --held-back)")
    ap.add_argument("--held-back", action="store_true",
                    help="read only the held-back runs (HELD_BACK_SYSTEMS), for the independent check")
    a = ap.parse_args(argv)
    out = a.out or Path(__file__).with_name("held_back_runs.csv" if a.held_back else "published_runs.csv")
    held = set(HELD_BACK)
    rows = []
    for s in HELD_BACK_SYSTEMS if a.held_back else SYSTEMS:
        if not a.held_back and (s.release, s.path) in held:
            raise SystemExit(f"{s.system} is held back for an independent check and must not be read")
        rows += read_system(a.root, s)
    with open(out, "w", newline="") as fh:
        what = "held back from published_runs.csv and from every fit" if a.held_back else "published runs"
        fh.write(f"# MLPerf Tiny {what} (mlcommons/tiny_results_v0.5 ... v1.3), read by "
                 "benchmarks/data/read_published_runs.py; see its docstring for how each column was read\n")
        w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}: {len(rows)} rows from {len(HELD_BACK_SYSTEMS if a.held_back else SYSTEMS)} systems",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

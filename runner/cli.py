"""``tinytwin run``, ``tinytwin dataset`` and ``tinytwin conform``: the host runner's commands.

The lead's console command mounts them with :func:`register`; on its own::

    python -m runner.cli run --port /dev/ttyACM0 --mode accuracy --dataset DIR --out OUT
"""
from __future__ import annotations

import sys
import urllib.parse
from pathlib import Path
from typing import List, Optional

import typer

from .link import PORT_APPEAR_S

MODE_HELP = (
    "performance (5 timed windows, median throughput), accuracy (every input once: Top-1 / AUC) or "
    "energy (5 windows measured by an LPM01A through an IO manager: --io-port, --emon-port); "
    "sww01: energy or performance with --io-port (the H573 plays the truth file's WAV)"
)


def run_command(
    port: Optional[List[str]] = typer.Option(None, "--port", "-p", help="performance/accuracy: serial device (/dev/ttyACM0, COM3) or pyserial URL (socket://, tinytwin://kws01?...); accuracy with --jobs N: once per job (or one tinytwin:// URL)"),
    mode: str = typer.Option(..., "--mode", "-m", help=MODE_HELP),
    dataset: Path = typer.Option(..., "--dataset", "-d", help="datasets root in the EEMBC layout: DIR/<model>/y_labels.csv beside the inputs"),
    out: Path = typer.Option(..., "--out", "-o", help="result folder to write: log.txt, results.txt, results.json"),
    baud: Optional[int] = typer.Option(None, "--baud", help="baud rate (default: try 115200, then 921600 as the reference firmware uses)"),
    iterations: Optional[int] = typer.Option(None, "--iterations", "-n", help="performance: inferences per window (default: calibrated for ~11 s windows)"),
    warmup: int = typer.Option(1, "--warmup", "-w", help="performance: warmup inferences before each window"),
    timeout: float = typer.Option(5.0, "--timeout", help="seconds to wait for each line of an answer (inference loops get their expected duration on top)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="echo every line exchanged with the DUT on stderr"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar"),
    io_port: Optional[str] = typer.Option(None, "--io-port", help="energy: the IO manager's serial port (Arduino io-manager or H573 interface board)"),
    emon_port: Optional[str] = typer.Option(None, "--emon-port", help="energy: the LPM01A PowerShield's serial port"),
    interface: Optional[str] = typer.Option(None, "--interface", help="energy: arduino or h573 (default: whichever answers on --io-port)"),
    voltage: Optional[float] = typer.Option(None, "--voltage", help="energy: DUT supply voltage from the EMON, V (1.8-3.3; default 1.8, the v0.5 reference results' supply; 3.3 for sww01 as devices_sww.yaml)"),
    windows: int = typer.Option(5, "--windows", help="energy: windows to measure (the rules: 5; fewer makes the run invalid)"),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="with --port tinytwin://...: where the twin finds its models (passed into the URL as models_dir=)"),
    truth: Optional[str] = typer.Option(None, "--truth", help="sww01 (streaming wakeword): the truth JSON in DATASET/sww01/ (default sww_long_test.json, the submission test); it also says the DUT is sww01"),
    labels: Optional[str] = typer.Option(None, "--labels", help="performance/accuracy: the labels file in the model's dataset folder (default y_labels.csv; e.g. ad01's smaller y_labels_alt.csv, accepted from v1.2)"),
    dut_baud: Optional[int] = typer.Option(None, "--dut-baud", help="energy/sww01 with the H573: the DUT-side baud (setbaud); default 9600 (EEMBC energy firmware), 115200 for sww01"),
    port_wait: float = typer.Option(PORT_APPEAR_S, "--port-wait", min=0.0, help="seconds to wait for a port path that does not exist: at the start (a twin or board started a moment ago) and, in performance/accuracy mode, when it goes away mid-run (unplugged); 0: fail at once"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="accuracy: share the inputs out among N DUTs, each driven by its own process (one --port per job, or one tinytwin:// URL: N in-process twins); results.txt/results.json as a serial run's (default: 1, or the number of ports given)"),
) -> None:
    """Run the MLPerf Tiny performance, accuracy or energy procedure against a DUT."""
    from .errors import RunnerError
    from .lifecycle import EXIT_ERROR, report_outcome
    from .session import MODES, RunOptions, run

    mode = mode.strip().lower()
    ports = list(port or [])
    if models_dir is not None:
        ports = [with_models_dir(p, models_dir) for p in ports] or [with_models_dir(None, models_dir)]
    if jobs is None:
        jobs = max(1, len(ports))
    if mode == "energy" or (mode == "performance" and io_port and not ports):
        # energy; or performance through the interface board: the streaming-wakeword procedure
        from .energy import energy_options_from_cli, run_energy

        if labels is not None:
            typer.echo("tinytwin run: --labels is for performance and accuracy runs over --port (energy windows take "
                       "y_labels.csv's first inputs; sww01 names its truth file with --truth)", err=True)
            raise typer.Exit(EXIT_ERROR)

        def start():
            return run_energy(
                energy_options_from_cli(
                    io_port, emon_port, dataset, out, interface, voltage, iterations, warmup, windows, timeout,
                    verbose, no_progress, mode=mode, truth=truth, dut_baud=dut_baud, port_wait_s=port_wait,
                )
            )
    else:
        if truth is not None:
            typer.echo("tinytwin run: --truth names the sww01 truth file of the streaming procedure (--mode performance "
                       "or energy with --io-port); for another labels file of a model over --port, use --labels", err=True)
            raise typer.Exit(EXIT_ERROR)
        if mode not in MODES:
            typer.echo(f"tinytwin run: --mode must be performance or accuracy (or energy), got {mode!r}", err=True)
            raise typer.Exit(EXIT_ERROR)
        if not ports:
            typer.echo(f"tinytwin run: --port is required in {mode} mode (the DUT's serial port; for sww01, "
                       "--io-port: the interface board)", err=True)
            raise typer.Exit(EXIT_ERROR)
        if len(ports) > 1 and jobs == 1:
            typer.echo(f"tinytwin run: {len(ports)} ports given for one job: give --jobs {len(ports)}, or one --port", err=True)
            raise typer.Exit(EXIT_ERROR)

        def start():
            return run(
                RunOptions(
                    port=",".join(ports),
                    mode=mode,
                    dataset=dataset,
                    out=out,
                    baud=baud,
                    iterations=iterations,
                    warmup=warmup,
                    timeout=timeout,
                    verbose=verbose,
                    progress=not no_progress,
                    jobs=jobs,
                    port_wait_s=port_wait,
                    labels=labels,
                )
            )

    try:
        outcome = start()
    except RunnerError as exc:
        typer.echo(f"tinytwin run: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR)
    report_outcome(outcome, out, lambda text, err: typer.echo(text, err=err))
    raise typer.Exit(outcome.exit_code)


def with_models_dir(port: Optional[str], models_dir: Path) -> str:
    """``port`` (a ``tinytwin://`` URL) with ``models_dir=`` added; the
    option applies to no other kind of port."""
    if not port or not port.startswith("tinytwin://"):
        raise typer.BadParameter(
            "applies to --port tinytwin://... only (a twin behind a device path or socket was started "
            "with its own --models-dir)", param_hint="--models-dir",
        )
    parts = urllib.parse.urlsplit(port)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "models_dir" for k, _ in query):
        raise typer.BadParameter(f"{port} already has models_dir=; give one of the two", param_hint="--models-dir")
    query.append(("models_dir", str(models_dir)))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="/:")))


dataset_app = typer.Typer(help="Make datasets in the EEMBC layout.", no_args_is_help=True)


@dataset_app.command("synth")
def synth_command(
    model: str = typer.Option(..., "--model", "-m", help="kws01, vww01, ic01 or ad01"),
    out: Path = typer.Option(..., "--out", "-o", help="datasets root: files go to OUT/<model>/ with y_labels.csv"),
    count: int = typer.Option(..., "--count", "-n", help="number of input files"),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="directory with the .tflite models (default: the emulator's)"),
    seed: int = typer.Option(0, "--seed", help="random seed (same seed, same files)"),
    frames: int = typer.Option(200, "--frames", help="ad01: frames (128 float32 bins each) per file; 200 as in the real set, fewer for short runs"),
) -> None:
    """Generate inputs whose labels are what the model itself answers (ad01:
    normal and perturbed files, labelled by the model's anomaly score)."""
    from .errors import RunnerError
    from .synth import synthesize

    try:
        ds = synthesize(model, out, count, models_dir=models_dir, seed=seed, frames=frames)
    except RunnerError as exc:
        typer.echo(f"tinytwin dataset synth: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(f"{ds.labels_path}: {ds.count} files ({ds.describe()})")


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``dataset`` to the ``tinytwin`` command."""
    app.command("run")(run_command)
    app.add_typer(dataset_app, name="dataset", help="Make datasets in the EEMBC layout.")
    from .conform.cli import conform_command

    app.command("conform")(conform_command)


def main() -> None:  # pragma: no cover - convenience entry point
    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    register(app)
    app()


if __name__ == "__main__":
    main()

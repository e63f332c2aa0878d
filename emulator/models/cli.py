"""``tinytwin models ...``: download, verify and inspect the official models."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import ModelError
from .profiles import PROFILES
from .store import (
    ENV_DIR, ENV_URL, MODELS_DIR_HELP, OFFICIAL, PINNED_COMMIT, SWW01_COMMIT, download, download_dir,
    resolve_models_dir, verify,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Download, verify and inspect the official models.")


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@app.command("download")
def download_cmd(
    dir: Optional[Path] = typer.Option(None, "--dir", help=f"where to put them (default: ${ENV_DIR} or ~/.cache/tinytwin/models)"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help=f"fetch from this mirror of the repository instead (or ${ENV_URL}); http(s):// or file://"),
    force: bool = typer.Option(False, "--force", help="fetch again even if a correct file is present"),
) -> None:
    """Fetch kws01, vww01, ic01, ad01 and sww01 from mlcommons/tiny (pinned commits) and check their md5/sha256."""
    try:
        res = download(dir, base_url=base_url, force=force)
    except ModelError as exc:
        _fail(str(exc))
    for r in res:
        what = {"ok": "already present", "downloaded": "downloaded"}.get(r.status, r.status)
        line = f"{r.name}: {what}  {r.path}"
        if not r.ok:
            line += f"  ({r.detail})"
        typer.echo(line)
    if not all(r.ok for r in res):
        _fail(f"{sum(not r.ok for r in res)} model(s) could not be fetched; check the network or use --base-url", 1)
    typer.echo(f"all {len(res)} models verified (mlcommons/tiny@{PINNED_COMMIT[:10]}, sww01@{SWW01_COMMIT[:10]}) "
               f"in {download_dir(dir)}")


@app.command("verify")
def verify_cmd(dir: Path = typer.Argument(..., help="models directory to check")) -> None:
    """Check the five official files in DIR: ok, missing or mismatch (md5 and sha256)."""
    if not dir.is_dir():
        _fail(f"{dir} is not a directory: run `tinytwin models download --dir {dir}` first")
    res = verify(dir)
    for r in res:
        line = f"{r.name}: {r.status}  {r.path}"
        if r.status != "ok":
            line += f"  ({r.detail})"
        typer.echo(line)
    if not all(r.ok for r in res):
        raise typer.Exit(1)


@app.command("info")
def info_cmd(
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help=MODELS_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Per official model: file, md5 check, size, tensor arena needed (TFLM) and I/O shapes."""
    from .engine import open_engine

    d = resolve_models_dir(models_dir, names=OFFICIAL)
    rows = []
    for name, om in OFFICIAL.items():
        p = PROFILES.get(name)
        row = {"name": name, "file": str(d / f"{name}.tflite"), "md5_ok": False, "status": "missing",
               "firmware_arena": p.arena_size if p else None}
        if (d / f"{name}.tflite").is_file():
            try:
                eng = open_engine(name, models_dir=d) if p else _open_sww01(d)
            except ModelError as exc:
                row.update(status="mismatch" if "md5" in str(exc) else "error", detail=str(exc))
            else:
                info = eng.info()
                row.update(status="ok", md5_ok=True, md5=info["md5"], sha256=info["sha256"], size=info["size"],
                           arena_used=info["arena_used"], input=info["input"], output=info["output"], ops=info["ops"])
        rows.append(row)
    if as_json:
        typer.echo(json.dumps({"models_dir": str(d), "models": rows}, indent=2))
    else:
        typer.echo(f"models directory: {d}")
        for r in rows:
            if r["status"] != "ok":
                typer.echo(f"{r['name']:6} {r['status']:9} {r['file']}" + (f"  ({r['detail']})" if "detail" in r else ""))
                continue
            i, o = r["input"], r["output"]
            fw = r["firmware_arena"] if r["firmware_arena"] is not None else "X-CUBE-AI"
            typer.echo(
                f"{r['name']:6} ok        {r['size']:7d} B  arena {r['arena_used']:6d}/{fw} B  "
                f"in {i['dtype']}{i['shape']}  out {o['dtype']}{o['shape']}  {r['file']}"
            )
    if not all(r["status"] == "ok" for r in rows):
        if not as_json:
            typer.echo("fix: run `tinytwin models download` (or point --models-dir at a directory that has them)", err=True)
        raise typer.Exit(1)


def _open_sww01(models_dir: Path):
    """sww01 through the streaming firmware's own model wrapper (same resolver and checks)."""
    from ..dut.sww01.model import open_sww01

    return open_sww01(models_dir)

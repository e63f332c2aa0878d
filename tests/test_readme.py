"""The README's main-job and energy blocks, pasted into one shell script,
run to the end, as a new user would run them after cloning.

The script runs in a fresh working directory, with a fresh home (so the
models come from `tinytwin models download` into its cache, here from a
``file://`` copy laid out like mlcommons/tiny), and with the README's
``/tmp/tinytwin`` moved to a directory of this test (several test runs may
share a machine). Nothing else of the blocks is changed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_block(name: str) -> str:
    """The ```bash block after ``<!-- readme-script: NAME -->``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- readme-script: {name} -->\s*```bash\n(.*?)```", text, re.S)
    assert m, f"README.md has no block marked readme-script: {name}"
    return m.group(1)


@pytest.mark.slow
def test_readme_main_job_and_energy_blocks_run_as_one_script(mirror, tmp_path):
    script = readme_block("main") + readme_block("energy")
    assert "tinytwin models download" in script and "tinytwin dut" in script and "tinytwin rig" in script
    links = tmp_path / "links"
    script = script.replace("/tmp/tinytwin", str(links))
    script = script.replace("tinytwin models download", f"tinytwin models download --base-url {mirror.as_uri()}", 1)
    work = tmp_path / "work"
    work.mkdir()
    (work / "readme.sh").write_text("set -euo pipefail\n" + script)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYTWIN_") and k != "XDG_CACHE_HOME"}
    env.update(HOME=str(home), TINYTWIN_SHARED=str(tmp_path / "no-shared"))
    # the console command of this checkout's environment first on PATH
    bindir = Path(sys.executable).parent
    assert shutil.which("tinytwin", path=str(bindir)), "tinytwin is not installed in this environment"
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    r = subprocess.run(["bash", "readme.sh"], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert (home / ".cache" / "tinytwin" / "models" / "kws01.tflite").is_file()
    for folder, status in (("kws01-perf", "complete"), ("kws01-acc", "complete"), ("kws01-energy", "complete")):
        rec = json.loads((work / "out" / folder / "results.json").read_text())
        assert rec["status"] == status, (folder, rec.get("status"))
    assert (work / "out" / "kws01-energy" / "trace1-energy.png").is_file()
    assert "Median throughput is" in (work / "out" / "kws01-perf" / "results.txt").read_text()
    assert not any(links.iterdir())  # both twins stopped and removed their links

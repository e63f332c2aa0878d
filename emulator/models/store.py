"""Where the official models live, how to fetch them, and how to check them.

Resolution of the models directory: an explicit argument, else ``$TINYTWIN_MODELS_DIR``,
else the user cache directory (``$XDG_CACHE_HOME/tinytwin/models``, by default
``~/.cache/tinytwin/models``).

``download()`` fetches the five files from mlcommons/tiny at pinned commits (for the
four v0.5 models the commit that moved them to ``benchmark/``, every blob there having
the md5 the reference firmware embeds; for sww01 the commit that added the streaming
wakeword benchmark) and keeps a file only if its md5 and sha256 match. The base URL can be
pointed elsewhere (``base_url=`` or ``$TINYTWIN_MODELS_URL``), e.g. a mirror or a
``file://`` directory laid out like the repository.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import ModelError
from .profiles import PROFILES

ENV_DIR = "TINYTWIN_MODELS_DIR"
ENV_URL = "TINYTWIN_MODELS_URL"

# mlcommons/tiny commit bceb91c "renaming 0.5 folder to benchmark to prepare next
# release" (2021-12-13): the first commit with the benchmark/ paths; checked blob by
# blob against the md5s below.
PINNED_COMMIT = "bceb91c5ad2e2deb295547d81505721d3a87d578"
# mlcommons/tiny commit 904de6f "Merging SWW into master (#176)" (2025-07-08): the first
# commit with the streaming-wakeword model; the file is unchanged since (checked at 1afd2c9).
SWW01_COMMIT = "904de6f8652d97a9e1ff73a050aab6b0335457f4"
REPO_URL = "https://raw.githubusercontent.com/mlcommons/tiny/"
DEFAULT_BASE_URL = f"{REPO_URL}{PINNED_COMMIT}/"


@dataclass(frozen=True)
class OfficialModel:
    name: str
    upstream_path: str
    md5: str
    sha256: str
    size: int
    commit: str = PINNED_COMMIT  # the mlcommons/tiny commit it is fetched from


OFFICIAL: dict[str, OfficialModel] = {
    "kws01": OfficialModel(
        "kws01", PROFILES["kws01"].upstream_path, PROFILES["kws01"].official_md5,
        "aeea436800704fce17b17292e4412630ad856e9d777c044c64ef748a880bd0ae", 53936),
    "vww01": OfficialModel(
        "vww01", PROFILES["vww01"].upstream_path, PROFILES["vww01"].official_md5,
        "597a384c8c2c8a1276f04702f25013b7838f2f814f1ca7c174d295b73e3d6b7b", 333288),
    "ic01": OfficialModel(
        "ic01", PROFILES["ic01"].upstream_path, PROFILES["ic01"].official_md5,
        "3c002613d1b2475eb51dd78dfb85a546c8ae658dee71cf6ade43b022fe205415", 98496),
    "ad01": OfficialModel(
        "ad01", PROFILES["ad01"].upstream_path, PROFILES["ad01"].official_md5,
        "87cf24194ef93d1d9b11a591d805526b98008e351655d29883c825c9c106ba24", 276976),
    # the streaming-wakeword model runs on its own firmware (emulator.dut.sww01), not
    # through an EEMBC I/O profile; the X-CUBE-AI report of that firmware names this md5
    "sww01": OfficialModel(
        "sww01", "benchmark/training/streaming_wakeword/trained_models/str_ww_ref_model.tflite",
        "9643512e0b8a0b6e643e70c2fec496ee",
        "3af8550895ba7d5c584277102b5075c52dcfa63ba9d2b2240f37c4e6abd5dd2b", 74520, SWW01_COMMIT),
}

FIX_HINT = f"run `tinytwin models download`, or pass --models-dir DIR (or set {ENV_DIR})"


def default_models_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache) if cache else Path.home() / ".cache"
    return base / "tinytwin" / "models"


def resolve_models_dir(explicit: str | os.PathLike | None = None) -> Path:
    """explicit argument > $TINYTWIN_MODELS_DIR > the user cache directory."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return default_models_dir()


def file_digests(path: Path) -> tuple[str, str]:
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


@dataclass(frozen=True)
class FileStatus:
    name: str
    path: Path
    status: str  # 'ok' | 'missing' | 'mismatch' | 'downloaded' | 'failed'
    md5: str | None = None
    sha256: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "downloaded")


def verify(directory: str | os.PathLike) -> list[FileStatus]:
    """Per official model: ok / missing / mismatch (md5 and sha256 against the pins)."""
    d = Path(directory).expanduser()
    out = []
    for name, om in OFFICIAL.items():
        p = d / f"{name}.tflite"
        if not p.is_file():
            out.append(FileStatus(name, p, "missing", detail="file not found"))
            continue
        md5, sha = file_digests(p)
        if md5 == om.md5 and sha == om.sha256:
            out.append(FileStatus(name, p, "ok", md5, sha))
        else:
            out.append(FileStatus(name, p, "mismatch", md5, sha, f"md5 {md5}, expected {om.md5}"))
    return out


def model_url(name: str, base_url: str | None = None) -> str:
    """Where ``name`` is fetched from: a mirror laid out like the repository
    (``base_url`` or ``$TINYTWIN_MODELS_URL``), else mlcommons/tiny at the model's pinned commit."""
    base = base_url or os.environ.get(ENV_URL) or f"{REPO_URL}{OFFICIAL[name].commit}/"
    if not base.endswith("/"):
        base += "/"
    return base + OFFICIAL[name].upstream_path


def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (http(s)/file by design)
        return r.read()


def download(
    dest: str | os.PathLike | None = None,
    *,
    base_url: str | None = None,
    names: list[str] | None = None,
    timeout: float = 60.0,
    force: bool = False,
) -> list[FileStatus]:
    """Fetch the official models into ``dest`` (resolved like the models dir).

    A file already present with the right digests is kept (status 'ok') unless
    ``force``. A fetched file is written only when its md5 and sha256 match
    (status 'downloaded'); otherwise nothing is written and the status is 'failed'
    with the reason. Raises ModelError only when ``dest`` cannot be created.
    """
    d = resolve_models_dir(dest)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the models directory {d}: {exc.strerror or exc}") from None
    wanted = names or list(OFFICIAL)
    out = []
    for name in wanted:
        if name not in OFFICIAL:
            raise ModelError(f"unknown model {name!r}; the official ones are {', '.join(OFFICIAL)}")
        om = OFFICIAL[name]
        target = d / f"{name}.tflite"
        if not force and target.is_file() and file_digests(target) == (om.md5, om.sha256):
            out.append(FileStatus(name, target, "ok", om.md5, om.sha256, "already present"))
            continue
        url = model_url(name, base_url)
        try:
            data = _fetch(url, timeout)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            out.append(FileStatus(name, target, "failed", detail=f"cannot fetch {url}: {reason}"))
            continue
        md5, sha = hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()
        if md5 != om.md5 or sha != om.sha256:
            out.append(FileStatus(name, target, "failed", md5, sha,
                                  f"{url} has md5 {md5}, expected {om.md5}; not saved"))
            continue
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        out.append(FileStatus(name, target, "downloaded", md5, sha, url))
    return out

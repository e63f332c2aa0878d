"""Where the official models live, how to fetch them, and how to check them.

This is the one model resolver: every command that needs a model asks it.
Where a model named ``kws01`` is looked for, in order:

1. an explicit directory (``--models-dir``, ``models_dir=``): only there;
2. ``$TINYTWIN_MODELS_DIR``: only there;
3. the download cache, where ``tinytwin models download`` puts them
   (``$XDG_CACHE_HOME/tinytwin/models``, by default ``~/.cache/tinytwin/models``);
4. a development checkout's ground-truth folder: ``$TINYTWIN_SHARED/models``,
   or, with ``TINYTWIN_SHARED`` unset, ``../shared/models`` beside the
   checkout (set ``TINYTWIN_SHARED`` to a directory that does not exist to
   leave it out).

``download()`` fetches the five files from mlcommons/tiny at pinned commits (for the
four v0.5 models the commit that moved them to ``benchmark/``, every blob there having
the md5 the reference firmware embeds; for sww01 the commit that added the streaming
wakeword benchmark) and keeps a file only if its md5 and sha256 match. The base URL can be
pointed elsewhere (``base_url=`` or ``$TINYTWIN_MODELS_URL``), e.g. a mirror or a
``file://`` directory laid out like the repository (``<base>/<upstream_path>``, see
:data:`OFFICIAL`). Downloads go to 1, 2 or 3, never to the ground-truth folder.
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
ENV_SHARED = "TINYTWIN_SHARED"

#: the checkout this package runs from, when it is one (not an installed wheel)
_CHECKOUT = Path(__file__).resolve().parents[2]

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
#: what the commands' --models-dir says
MODELS_DIR_HELP = (
    "directory with kws01.tflite, vww01.tflite, ic01.tflite, ad01.tflite (default: $TINYTWIN_MODELS_DIR, "
    "else where `tinytwin models download` puts them, ~/.cache/tinytwin/models, then ../shared/models "
    "of a development checkout)"
)


def default_models_dir() -> Path:
    """The download cache: ``$XDG_CACHE_HOME/tinytwin/models`` (``~/.cache/...``)."""
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache) if cache else Path.home() / ".cache"
    return base / "tinytwin" / "models"


def shared_dir() -> Path | None:
    """A development checkout's ground-truth folder (models, the reference
    board's logs, datasets): ``$TINYTWIN_SHARED``, or ``../shared`` beside the
    checkout when that variable is unset; ``None`` when it is not there."""
    env = os.environ.get(ENV_SHARED)
    if env:
        p = Path(env).expanduser()
    elif (_CHECKOUT / "pyproject.toml").is_file():
        p = _CHECKOUT.parent / "shared"
    else:
        return None
    return p if p.is_dir() else None


def download_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where ``download()`` writes: explicit > ``$TINYTWIN_MODELS_DIR`` > the cache."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return default_models_dir()


def search_dirs(explicit: str | os.PathLike | None = None) -> list[Path]:
    """The directories a model is looked for in, in order (see the module
    docstring): the explicit one or ``$TINYTWIN_MODELS_DIR`` alone, else the
    cache and then the ground-truth folder's ``models``."""
    if (explicit is not None and str(explicit) != "") or os.environ.get(ENV_DIR):
        return [download_dir(explicit)]
    dirs = [default_models_dir()]
    shared = shared_dir()
    if shared is not None:
        dirs.append(shared / "models")
    return dirs


def resolve_models_dir(explicit: str | os.PathLike | None = None, names=None) -> Path:
    """The models directory: the first of :func:`search_dirs` that holds all
    of ``names`` (default: any official model), else the first one (where
    ``tinytwin models download`` puts them)."""
    dirs = search_dirs(explicit)
    wanted = list(names) if names is not None else None
    for d in dirs:
        if wanted is None:
            if any((d / f"{n}.tflite").is_file() for n in OFFICIAL):
                return d
        elif all((d / f"{n}.tflite").is_file() for n in wanted):
            return d
    return dirs[0]


def resolve_model(name: str | os.PathLike, models_dir: str | os.PathLike | None = None) -> Path:
    """``kws01`` -> the first ``kws01.tflite`` in :func:`search_dirs`; any
    other name must be a path to a file (it is returned as it is). Raises :class:`ModelError` naming where it looked and
    the fix."""
    text = os.fspath(name)
    if text not in OFFICIAL:
        p = Path(text).expanduser()
        if not (os.sep in text or "/" in text or p.suffix == ".tflite" or p.exists()):
            raise ModelError(
                f"unknown model {text!r}: use {', '.join(OFFICIAL)}, or a path to your own int8 .tflite"
            )
        if not p.is_file():
            raise ModelError(f"model file {p} does not exist: check the path")
        return p
    dirs = search_dirs(models_dir)
    for d in dirs:
        f = d / f"{text}.tflite"
        if f.is_file():
            return f
    if len(dirs) == 1:
        if not dirs[0].is_dir():
            raise ModelError(f"models directory {dirs[0]} does not exist: {FIX_HINT}")
        raise ModelError(f"{dirs[0] / (text + '.tflite')} is missing: {FIX_HINT}")
    raise ModelError(f"no {text}.tflite in {', '.join(str(d) for d in dirs)}: {FIX_HINT}")


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
    """Fetch the official models into ``dest`` (default: :func:`download_dir`).

    A file already present with the right digests is kept (status 'ok') unless
    ``force``. A fetched file is written only when its md5 and sha256 match
    (status 'downloaded'); otherwise nothing is written and the status is 'failed'
    with the reason. Raises ModelError only when ``dest`` cannot be created.
    """
    d = download_dir(dest)
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

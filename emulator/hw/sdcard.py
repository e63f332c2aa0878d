"""The interface board's microSD card, as a directory the user names.

The STM32H573I-DK interface firmware reads its card through FileX (FAT). The
twin serves a host directory in its place (``--sd-card DIR``):

* ``ls`` lists the root directory's files by their long names; directories,
  hidden and system entries are left out (``FileSystem::IndirectListDirectory``
  with its defaults). A FAT card lists entries in the order they were written;
  a host directory has no such order, so the twin lists them sorted by name.
  Hidden = the name starts with ``.`` (the host's convention; FAT has an
  attribute bit instead).
* a file is opened by name as FileX opens it: FAT compares long names without
  regard to case, ``/`` and ``\\`` separate directories.

Nothing is ever written to the directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from ..errors import TinytwinError


class SdCardError(TinytwinError):
    """The directory given as the SD card cannot serve as one."""


class SdCard:
    """A read-only FAT card backed by directory ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise SdCardError(
                f"--sd-card {root}: no such directory; give the folder holding the WAV files the interface "
                f"board plays (e.g. mlcommons/tiny's benchmark/runner/sd_card)"
            )

    def __repr__(self) -> str:
        return f"SdCard({str(self.root)!r})"

    def listing(self) -> list[str]:
        try:
            entries = sorted(self.root.iterdir(), key=lambda p: p.name)
        except OSError:
            return []
        return [p.name for p in entries if p.is_file() and not p.name.startswith(".")]

    def _find(self, name: str) -> Path | None:
        parts = [p for p in name.replace("\\", "/").split("/") if p]
        at = self.root
        for part in parts:
            if part in (".", ".."):
                return None  # no way out of the card
            try:
                hits = [c for c in at.iterdir() if c.name == part] or [
                    c for c in at.iterdir() if c.name.casefold() == part.casefold()
                ]
            except OSError:
                return None
            if not hits:
                return None
            at = hits[0]
        return at if parts and at.is_file() else None

    def open(self, name: str) -> BinaryIO | None:
        """The file ``name`` opened for reading, or ``None`` (FileX: not found)."""
        path = self._find(name)
        if path is None:
            return None
        try:
            return open(path, "rb")
        except OSError:
            return None


"""A size-limited file system for disk-full tests: a tmpfs of a few megabytes, or a skip saying why not."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_filesystem(folder: Path, size: str = "8m") -> Iterator[Path]:
    """Mounts a tmpfs of ``size`` at ``folder`` for the block (needs root and mount rights), else skips."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a size-limited file system needs `mount -t tmpfs`, which needs root; the tests run as a user")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fills the file system of ``folder`` until at most ``leave`` bytes (rounded to 4 KiB) are free."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while True:
            stat = os.statvfs(folder)
            free = stat.f_bavail * stat.f_frsize
            if free <= leave:
                break
            try:
                os.write(fd, b"\0" * min(1 << 20, max(4096, free - leave)))
            except OSError:
                break
    finally:
        os.close(fd)
    return filler

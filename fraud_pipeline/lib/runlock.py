"""One writer at a time: an exclusive OS file lock (``flock``) beside the warehouse, held for a run's life.

Every command-line ``run``, ``ingest`` and ``rollback`` takes it before it touches the Dagster
instance, and every run (launched from the UI, the schedule or the sensor too) takes it when its
resources are set up, before its first step. The kernel releases it when the holding process ends,
however it ends (kill -9 included), so a dead holder never blocks anyone.

The lock is re-entrant within a process: the command line holds it and the run it executes in the
same process takes it again without waiting for itself.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: The lock file's name, in the data folder beside ``warehouse.duckdb``.
LOCK_NAME = "pipeline.lock"


class LockHeld(RuntimeError):
    """Another process holds the lock; the message is one line naming it."""


_held: dict[str, list] = {}  # resolved path -> [file descriptor, depth]
_guard = threading.Lock()


def holder(path: Path) -> str:
    """What the holder wrote into the lock file (its pid, host and command), or 'unknown'."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"
    return text or "unknown"


def _holder_of_held(path: Path, tries: int = 50, pause: float = 0.02) -> str:
    """The holder's line; a holder that has just taken the lock writes it a moment later, so read again briefly."""
    for _ in range(tries):
        found = holder(path)
        if found != "unknown":
            return found
        time.sleep(pause)
    return "unknown"


def _acquire(path: Path, wait: bool, on_wait: Callable[[str], None] | None, poll: float) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    raise LockHeld(
                        f"another run is in progress ({_holder_of_held(path)}); runs share one DuckDB file, "
                        f"so wait for it to finish (lock: {path})"
                    ) from None
                if on_wait is not None and not told:
                    on_wait(f"waiting for the pipeline lock {path}, held by {_holder_of_held(path)}")
                    told = True
                time.sleep(poll)
    except BaseException:
        os.close(fd)
        raise
    try:  # who holds it, for the refusal message; the lock holds without it (e.g. on a full disk)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)[:200]}".encode())
    except OSError:
        pass
    return fd


@contextmanager
def hold(
    path: Path, wait: bool = False, on_wait: Callable[[str], None] | None = None, poll: float = 0.2
) -> Iterator[Path]:
    """Holds the exclusive lock at ``path`` for the block.

    Args:
        path: The lock file (created when missing).
        wait: Wait for the holder to finish instead of raising :class:`LockHeld`.
        on_wait: Called once with a line saying who holds the lock, when waiting.
        poll: Seconds between attempts while waiting.
    """
    key = str(Path(path).resolve())
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        fd = _acquire(Path(key), wait, on_wait, poll)
        with _guard:
            _held[key] = entry = [fd, 1]
    try:
        yield Path(key)
    finally:
        with _guard:
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _held[key]
        if last:
            try:
                os.ftruncate(entry[0], 0)
            except OSError:
                pass
            fcntl.flock(entry[0], fcntl.LOCK_UN)
            os.close(entry[0])


def is_held_here(path: Path) -> bool:
    """Whether this process holds the lock at ``path``."""
    return str(Path(path).resolve()) in _held


def acquire(path: Path, wait: bool = False, on_wait: Callable[[str], None] | None = None):
    """Takes the lock without a block; returns the function that releases it (for resources' setup/teardown)."""
    context = hold(path, wait=wait, on_wait=on_wait)
    context.__enter__()
    return lambda: context.__exit__(None, None, None)

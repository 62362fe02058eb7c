"""The pipeline lock names its holder, even one that took the lock a moment before writing who it is."""

import subprocess
import sys

import pytest

from fraud_pipeline.lib.runlock import LockHeld, hold

# takes the lock, says so, and writes its line only a moment later, as a holder that has just started
SLOW_HOLDER = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "time.sleep(0.3)\n"
    "os.write(fd, b'pid 4242 on testhost: slow holder')\n"
    "sys.stdin.read()\n"
)


def test_a_refusal_names_a_holder_that_writes_its_line_just_after_taking_the_lock(tmp_path):
    path = tmp_path / "pipeline.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", SLOW_HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=r"another run is in progress \(pid 4242 on testhost: slow holder\)"):
            with hold(path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with hold(path):  # the kernel dropped the dead holder's lock
        assert "pid" in path.read_text()

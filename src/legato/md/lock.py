"""Exclusive use of a run folder by one process: an OS lock that dies with its holder."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from legato.errors import LegatoError
from legato.fileio import default_file_mode


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_pid(fd: int, wait_s: float = 0.5) -> int:
    """PID written into a held lock file (the holder writes it just after locking); 0 if none."""
    deadline = time.monotonic() + wait_s
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit() or time.monotonic() > deadline:
            return int(text) if text.isdigit() else 0
        time.sleep(0.01)


@contextmanager
def folder_lock(out: Path, name: str = ".tfail.lock") -> Iterator[None]:
    """Exclusive use of ``out`` by this process for the duration of the block.

    An OS lock (``flock``) on ``out/name``, held open until the block ends: the OS releases
    it when the process ends, however it ends, so there are no stale locks. The holder's PID
    is written into the file for the error message of a second process. The file is never
    deleted (deleting a locked file would let a third process lock a new one).
    """
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / name, os.O_RDWR | os.O_CREAT, default_file_mode())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = _holder_pid(fd)
        os.close(fd)
        who = f"process {pid}" if pid and _pid_alive(pid) else "another process"
        raise LegatoError(
            f"{out} is in use by {who}; wait for it to finish or choose another output folder"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.ftruncate(fd, 0)  # no PID of a finished process for the next reader
        os.close(fd)  # releases the lock

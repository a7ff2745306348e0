"""Writing files safely: the one atomic-write helper, output-folder checks, run-folder moves.

Every file legato writes for a user (models, checkpoints, tables, plots, trajectories
written whole) goes through :func:`atomic_write`: a temporary file in the same folder,
flushed and fsynced, given the permissions the user's umask asks for (``tempfile`` alone
would leave 0600, unreadable to colleagues on a shared file system), then renamed over the
target. A reader sees the old file or the new one, never half of one, and a crash leaves
the old file intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from legato.errors import LegatoError

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_save",
    "atomic_torch_save",
    "default_file_mode",
    "ensure_writable_dir",
    "ensure_writable_file",
    "move_aside",
]


def default_file_mode() -> int:
    """The mode a new regular file gets under the current umask (0o666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort; not all systems allow it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it onto ``path``.

    ``mode`` is ``"w"`` (text) or ``"wb"`` (binary). On an exception the temporary file is
    removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, default_file_mode())
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": encoding}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); returns the path.

    With ``overwrite=False`` an existing file is refused (one LegatoError line) and kept.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise LegatoError(f"{path} exists; refusing to overwrite it")
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def atomic_save(path: str | os.PathLike, writer: Callable[[IO], None], binary: bool = True) -> None:
    """Call ``writer(file_object)`` on a temporary file, then move it onto ``path`` atomically.

    For writers that take an open file: ``torch.save``, ``np.savetxt``, ``fig.savefig``,
    ``ase.io.write`` with an explicit format.
    """
    with atomic_write(path, "wb" if binary else "w") as fh:
        writer(fh)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    import torch

    atomic_save(path, lambda fh: torch.save(obj, fh))


def ensure_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` if needed and check that files can be created in it.

    Called before long work starts, so that a read-only or impossible output location is
    one clear :class:`LegatoError` line instead of an ``OSError`` after hours of compute.
    Folders created here that turn out unusable are not left behind.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise LegatoError(f"{what} {path} exists and is not a folder")
    created: list[Path] = []
    p = path
    while not p.exists():
        created.append(p)
        p = p.parent
    if not p.is_dir():
        raise LegatoError(f"cannot create {what} {path}: {p} is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".legato-write-check.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        for c in created:  # innermost first
            with contextlib.suppress(OSError):
                c.rmdir()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = "permission denied" if exc.errno != errno.EROFS else "read-only file system"
        raise LegatoError(f"cannot write to {what} {path}: {reason}") from None
    return path


def ensure_writable_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Check that ``path`` can be (re)written: its folder is writable and it is not a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise LegatoError(f"{what} {path} is a folder")
    ensure_writable_dir(path.parent if str(path.parent) else Path("."), what=f"folder of {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise LegatoError(f"cannot write to {what} {path}: permission denied")
    return path


def move_aside(path: str | os.PathLike, suffix: str = "incomplete") -> Path:
    """Rename a run folder to ``<name>.<suffix><k>`` (first free k >= 1); return the new path.

    Used for a folder left by a run killed before its first checkpoint: nothing in it can
    be resumed, but nothing in it is deleted either.
    """
    path = Path(path)
    k = 1
    while True:
        target = path.with_name(f"{path.name}.{suffix}{k}")
        if not target.exists():
            path.rename(target)
            return target
        k += 1

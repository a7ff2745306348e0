"""The one atomic-write helper: umask honoured, old file kept on failure, write checks."""

from __future__ import annotations

import os
import stat

import pytest

from legato.errors import LegatoError
from legato.fileio import (
    atomic_torch_save,
    atomic_write,
    atomic_write_text,
    ensure_writable_dir,
    ensure_writable_file,
    move_aside,
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_honours_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_torch_save({"a": 1}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o666 & ~umask
    assert _mode(tmp_path / "b.pt") == 0o666 & ~umask


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "t.txt"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError), atomic_write(p) as fh:
        fh.write("new, half")
        raise RuntimeError("crash")
    assert p.read_text() == "old"
    assert [q.name for q in tmp_path.iterdir()] == ["t.txt"]  # no temp file left


def test_readonly_dir_is_one_error(readonly_dir):
    with pytest.raises(LegatoError, match="cannot (write|create)"):
        ensure_writable_dir(readonly_dir / "run")
    assert not (readonly_dir / "run").exists()


def test_writable_checks(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(LegatoError, match="not a folder"):
        ensure_writable_dir(f / "sub")
    with pytest.raises(LegatoError, match="is a folder"):
        ensure_writable_file(tmp_path)
    assert ensure_writable_dir(tmp_path / "a" / "b").is_dir()


def test_move_aside_picks_free_name(tmp_path):
    for _ in range(2):
        d = tmp_path / "run"
        d.mkdir()
        (d / "log").write_text("kept")
        move_aside(d)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.incomplete1", "run.incomplete2"]
    assert (tmp_path / "run.incomplete2" / "log").read_text() == "kept"

import json
import math
import os
import stat

import pytest

from shared.atomic import (
    atomic_dir,
    atomic_open,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
)


def test_write_text_creates_parents(tmp_path):
    p = atomic_write_text(tmp_path / "a" / "b.txt", "hello")
    assert p.read_text() == "hello"
    assert [f.name for f in p.parent.iterdir()] == ["b.txt"]  # no temp file left behind


def test_failure_keeps_previous_version_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half written")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out.csv"]


def test_failure_creates_nothing_when_no_previous_version(tmp_path):
    with pytest.raises(ValueError), atomic_path(tmp_path / "new.bin") as tmp:
        tmp.write_bytes(b"x")
        raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_with_and_json(tmp_path):
    import numpy as np

    atomic_write_with(tmp_path / "x.txt", lambda p: p.write_text("via writer"))
    assert (tmp_path / "x.txt").read_text() == "via writer"
    atomic_write_json(tmp_path / "m.json", {"a": np.float64(0.5), "b": np.arange(3)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 0.5, "b": [0, 1, 2]}
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "bad.json", {"a": math.nan})
    assert not (tmp_path / "bad.json").exists()


def test_atomic_open_refuses_read_mode(tmp_path):
    with pytest.raises(ValueError), atomic_open(tmp_path / "x", "r"):
        pass


def test_written_files_get_normal_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "r.html", "x")
    finally:
        os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o644


def test_atomic_dir_publishes_with_umask_permissions_not_mkdtemp_0700(tmp_path):
    old_mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "run") as tmp:
            (tmp / "a.txt").write_text("new")
    finally:
        os.umask(old_mask)
    out = tmp_path / "run"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert (out / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temp or old folder left


def test_atomic_dir_replaces_previous_folder_whole(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with atomic_dir(out) as tmp:
        (tmp / "fresh.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["fresh.txt"]


def test_atomic_dir_failure_keeps_previous_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "kept.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("crash while filling")
    assert sorted(p.name for p in out.iterdir()) == ["kept.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]

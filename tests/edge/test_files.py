"""edge.files: the modes of what the daemon creates do not depend on the umask."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.files import DIR_MODE, FILE_MODE, make_dirs, open_append, open_replace
from tests.edge.conftest import mode


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_new_folders_and_files_get_0750_and_0640_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        make_dirs(tmp_path / "a" / "b" / "c")
        with open_append(tmp_path / "a" / "b" / "c" / "log") as f:
            f.write(b"x\n")
        with open_replace(tmp_path / "a" / "tmp") as f:
            f.write(b"y")
    finally:
        os.umask(old)
    for d in ("a", "a/b", "a/b/c"):
        assert mode(tmp_path / d) == DIR_MODE == 0o750, d
    assert mode(tmp_path / "a/b/c/log") == FILE_MODE == 0o640
    assert mode(tmp_path / "a/tmp") == 0o640


def test_existing_folders_and_files_keep_their_mode_and_content(tmp_path: Path, umask_000: None) -> None:
    (tmp_path / "d").mkdir(mode=0o700)
    (tmp_path / "d").chmod(0o700)
    log = tmp_path / "d" / "log"
    log.write_bytes(b"old\n")
    log.chmod(0o600)
    make_dirs(tmp_path / "d")
    with open_append(log) as f:
        f.write(b"new\n")
    assert mode(tmp_path / "d") == 0o700 and mode(log) == 0o600
    assert log.read_bytes() == b"old\nnew\n"


def test_a_stale_tmp_file_is_replaced_not_reused(tmp_path: Path, umask_000: None) -> None:
    tmp = tmp_path / "q.tmp"
    tmp.write_bytes(b"stale content")
    tmp.chmod(0o666)
    with open_replace(tmp) as f:
        f.write(b"fresh")
    assert tmp.read_bytes() == b"fresh" and mode(tmp) == 0o640


def test_a_file_in_the_way_of_a_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OSError):
        make_dirs(tmp_path / "f" / "sub")
    with pytest.raises(NotADirectoryError):
        make_dirs(tmp_path / "f")

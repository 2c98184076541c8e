"""Files and folders the daemon creates: 0640 and 0750, whatever the umask.

Events, the MQTT queue and captured frames say when someone is home. Under systemd the
unit's UMask=0027 already keeps them private, but `edge run` started by hand (or by a
service manager with umask 000) would create them 0666/0777: readable, even writable, by
every local user. So modes are set explicitly on creation instead of trusting the umask.
Files and folders that already exist keep the mode their owner gave them; a file rewritten
by tmp + rename (queue compaction, captured frames) is a new file and gets FILE_MODE.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

FILE_MODE = 0o640  # owner writes, the service's group (e.g. a backup job) reads
DIR_MODE = 0o750


def make_dirs(path: Path) -> None:
    """`mkdir -p` where every folder it creates gets DIR_MODE.

    Path.mkdir(parents=True) gives the parents the umask's default mode, and even the last
    folder's mode is masked by the umask; hence one chmod per folder actually created.
    """
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:  # created meanwhile by someone else: theirs, keep its mode
            continue
        os.chmod(d, DIR_MODE)
    if not path.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(path))


def _open_fd(path: Path, flags: int) -> int:
    """Open with O_CREAT; a file this call creates gets exactly FILE_MODE."""
    flags |= os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return os.open(path, flags)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have removed group read, keep it exact
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: Path) -> IO[bytes]:
    """Binary append (never truncates); creates the file with FILE_MODE."""
    return os.fdopen(_open_fd(path, os.O_WRONLY | os.O_APPEND), "ab")


def open_replace(path: Path) -> IO[bytes]:
    """A fresh file for the tmp half of a tmp + rename, always FILE_MODE: a stale tmp left
    by a crash (perhaps with another mode) is removed, not reused."""
    path.unlink(missing_ok=True)
    return os.fdopen(_open_fd(path, os.O_WRONLY | os.O_TRUNC), "wb")

"""Files and directories of the hub's data directory, with their modes set whatever the umask.

The data directory holds citizens' names and identity numbers (the SQLite store), private keys
and the token secret: what the hub creates there is the service account's alone. Modes left to
the umask are not: ``Path.mkdir(parents=True)`` makes the parents ``0777 & ~umask`` and SQLite
creates its files ``0644 & ~umask``, world-writable and world-readable under the umask 000 some
service managers and containers run with. So every creation here states its mode, and sets it
again with ``chmod`` (a umask such as 0o277 takes bits away from the owner too).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# Certificates, CSRs and pin lists: public content, but never writable by others.
PUBLIC_FILE = 0o644


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents with mode 0700. A directory that already exists
    is left as it is: it may be shared (``/tmp``, a mount point) and is not the hub's to
    change."""
    missing: list[Path] = []
    at = Path(path)
    while not at.exists():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue  # another process made it (with this same function)
        os.chmod(directory, PRIVATE_DIR)
    return path


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists; tighten an existing one owned by
    this user to 0600 (group and others lose every right)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        tighten(path)
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def tighten(path: Path, mode: int = PRIVATE_FILE) -> None:
    """Take group and other rights away from an existing file of this user (a file another
    user owns, or one that vanished meanwhile, is left alone)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & ~mode:
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a temporary file created with ``mode`` (never wider, not even for a
    moment), flush it to disk, and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)

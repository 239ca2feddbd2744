"""Reading files users hand us, safely: regular files only, bounded, one-line errors.

A scenario, trace or log file may come from anyone. `Path.read_bytes()` on
`/dev/zero` reads until memory runs out, on a FIFO it waits forever, and on a
200 MB file it reads all of it before any size check. `open_regular` refuses
anything but a regular file *before* reading, and `read_bounded` reads at most
`limit + 1` bytes, so the size check costs nothing however large the file is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


class FileRefused(Exception):
    """The file cannot be read as asked. The message is one line naming the file."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for binary reading, if it is a regular file.

    The file is opened with O_NONBLOCK (so opening a FIFO cannot hang) and checked
    with fstat on the open descriptor (so it cannot be swapped between check and
    read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise FileRefused(f"{path}: is a directory, not a file") from None
    except FileNotFoundError:
        raise FileRefused(f"{path}: cannot read: no such file") from None
    except PermissionError:
        raise FileRefused(f"{path}: cannot read: permission denied") from None
    except OSError as exc:
        raise FileRefused(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileRefused(f"{path}: is {_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, limit: int) -> bytes:
    """The whole of regular file `path`, refused if larger than `limit` bytes."""
    with open_regular(path) as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise FileRefused(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise FileRefused(f"{path}: larger than {limit} bytes")
    return data

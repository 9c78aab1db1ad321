"""Safe local files: atomic writes that never follow a planted symlink, and private directories.

Every file ccai writes goes through here, so three promises hold everywhere:

* **No predictable temporary names.** A temporary file is created beside its target with a random
  name and ``O_CREAT | O_EXCL | O_NOFOLLOW`` (``tempfile.mkstemp``), so a symlink or file planted at
  a guessable name is never written through, and two writers never share a temporary file.
* **Atomic replacement.** The temporary file is written, fsynced and renamed over the target
  (``os.replace`` replaces a symlink at the target instead of writing to where it points), then the
  directory is fsynced. A failed write leaves the old target intact and no temporary file behind.
* **Explicit modes.** Files get the mode asked for (0600 unless said otherwise) and directories
  0700, whatever the process umask is.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "open_private_exclusive", "private_dir"]

_EXCLUSIVE = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600, replace: bool = True
) -> Path:
    """Write ``data`` to ``path`` atomically with exactly ``mode``; the directory must exist.

    Args:
        path: The target file. A symlink there is replaced, never followed.
        data: The complete contents.
        mode: Permission bits of the new file, applied regardless of the umask.
        replace: Replace an existing target (default). ``False`` publishes the file only if
            nothing exists at ``path`` (a hard link of the finished temporary file), so two
            processes creating the same file cannot overwrite each other.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: ``replace=False`` and something exists at ``path``.
        OSError: the file cannot be written; the old target, if any, is untouched.
    """
    target = Path(path)
    directory = target.parent
    # A long name is cut so that the random part and the suffix still fit in NAME_MAX.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name[:100]}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            os.link(tmp, target, follow_symlinks=False)
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    return target


def open_private_exclusive(path: str | os.PathLike[str], *, mode: int = 0o600) -> int:
    """Create ``path`` for a streaming writer and return its descriptor (read/write).

    The file must not exist (``O_EXCL``; a symlink at ``path`` counts as existing and is not
    followed) and gets exactly ``mode``, regardless of the umask. The caller closes the descriptor.

    Raises:
        FileExistsError: something exists at ``path``.
        OSError: the file cannot be created.
    """
    fd = os.open(path, os.O_RDWR | _EXCLUSIVE, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, or make an existing one 0700.

    Args:
        path: The directory. An existing directory reached through a symlink is accepted (a
            user may point ``$CCAI_HOME`` elsewhere); its mode is checked and repaired.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        NotADirectoryError: ``path`` exists and is not a directory.
        OSError: it cannot be created, or its mode cannot be repaired (another user's directory).
    """
    directory = Path(path)
    missing: list[Path] = []
    probe = directory
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for new in reversed(missing):
        try:
            os.mkdir(new, 0o700)
        except FileExistsError:
            continue  # made meanwhile by another process: checked below if it is the leaf
        os.chmod(new, 0o700)  # the umask may have taken bits away
    info = os.stat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"not a directory: {directory}")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(directory, 0o700)
    return directory

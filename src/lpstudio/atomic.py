"""Outputs that appear whole or not at all: write beside the target, then move into place.

Every file lpstudio writes for a user (videos, images, PNG folders, motion templates,
benchmark reports) goes through here, so one policy holds everywhere:

* the data is written to a *partial* beside the target, in the same folder (so the final
  move is a rename on one file system): ``.NAME.partial-RANDOM.EXT`` for a file, keeping the
  extension so a muxer or Pillow still infers the format from the name, and
  ``.NAME.partial-RANDOM`` for a folder;
* on success the partial (a file: flushed to disk, given the old file's permissions) is moved
  over the target with :func:`os.replace` (atomic for a file);
  a folder is swapped in (the old folder is renamed aside, the new one renamed in, the old one
  deleted; if the second rename fails the old folder is put back);
* on any failure, ``KeyboardInterrupt`` included, only the partial is removed: an output that
  existed before the run is never touched until the new one is complete.

A hard kill (``SIGKILL``, power loss) can leave a hidden ``.*.partial-*`` beside the target;
it is never read by lpstudio and is safe to delete.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LPStudioError

PARTIAL_MARK: str = ".partial-"
"""Between the target's name and the random token in a partial's name."""

TOKEN_BYTES: int = 4
"""Random bytes in a partial's name (8 hex digits); a clash is retried, see :data:`RESERVE_TRIES`."""

RESERVE_TRIES: int = 16
"""Names tried before giving up; with 2**32 names a second try is already very unlikely."""

FILE_MODE: int = 0o666
"""Mode a partial file is created with, less the umask: what ``open(path, "w")`` would give the target."""

DIR_MODE: int = 0o777
"""Mode a partial folder is created with, less the umask (as ``mkdir``)."""

WRITABLE_HINT = "check that the folder exists and is writable"


def partial_name(target: Path, token: str, *, folder: bool = False) -> Path:
    """The partial beside ``target``: ``.NAME.partial-TOKEN.EXT`` (a folder: ``.NAME.partial-TOKEN``)."""
    if folder:
        return target.parent / f".{target.name}{PARTIAL_MARK}{token}"
    return target.parent / f".{target.stem}{PARTIAL_MARK}{token}{target.suffix}"


def reserve_partial(
    target: str | os.PathLike[str], *, folder: bool = False, error: type[LPStudioError] = LPStudioError
) -> Path:
    """Create an empty partial file (or folder) beside ``target``, exclusively, and return its path.

    Raises:
        error: the target is of the other kind (a folder where a file goes, or the reverse),
            or the folder cannot be written.
    """
    target = Path(target)
    if target.exists() and target.is_dir() != folder:
        kind, other = ("a folder", "a file") if folder else ("a file", "a folder")
        raise error(f"cannot write {kind} at {target}: {other} of that name exists", hint="choose another name")
    last: OSError | None = None
    for _ in range(RESERVE_TRIES):
        path = partial_name(target, secrets.token_hex(TOKEN_BYTES), folder=folder)
        try:
            if folder:
                os.mkdir(path, DIR_MODE)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
            return path
        except FileExistsError as exc:
            last = exc
        except OSError as exc:
            raise error(f"cannot write {target}: {exc.strerror or type(exc).__name__}", hint=WRITABLE_HINT) from None
    raise error(f"cannot write {target}: no free name for a partial file ({last})", hint=WRITABLE_HINT)


def discard(partial: Path) -> None:
    """Remove a partial file or folder (never raises: it runs while another error is on its way)."""
    try:
        if partial.is_dir() and not partial.is_symlink():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
    except OSError:
        pass


def commit(partial: Path, target: Path, *, error: type[LPStudioError] = LPStudioError) -> None:
    """Move a finished partial over ``target`` (a file atomically; a folder by a checked swap).

    On failure the partial is removed and the old target is left as it was.
    """
    try:
        if partial.is_dir():
            _swap_folder(partial, target)
        else:
            _keep_mode(partial, target)
            _sync(partial)
            os.replace(partial, target)
            _sync(target.parent)
    except OSError as exc:
        discard(partial)
        reason = exc.strerror or type(exc).__name__  # the OS's words, never a path or traceback
        raise error(f"cannot move the finished output into {target}: {reason}", hint=WRITABLE_HINT) from None
    except BaseException:
        discard(partial)
        raise


def _keep_mode(partial: Path, target: Path) -> None:
    """Give the new file the permissions of the file it replaces (as writing in place would)."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return
    os.chmod(partial, mode)


def _sync(path: Path) -> None:
    """Flush a file's data (or a folder's entries) to the disk, so a crash after the move finds it whole.

    Best effort for folders: some file systems refuse to open or sync one.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _swap_folder(partial: Path, target: Path) -> None:
    if not target.exists():
        os.rename(partial, target)
        return
    aside = partial_name(target, f"old-{secrets.token_hex(TOKEN_BYTES)}", folder=True)
    os.rename(target, aside)
    try:
        os.rename(partial, target)
    except BaseException:
        os.rename(aside, target)  # put the old folder back
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def atomic_output(
    target: str | os.PathLike[str], *, folder: bool = False, error: type[LPStudioError] = LPStudioError
) -> Iterator[Path]:
    """Yield a partial path to write; it replaces ``target`` when the block ends without an exception.

    Any exception (``KeyboardInterrupt`` too) removes the partial and leaves ``target`` untouched.
    """
    target = Path(target)
    partial = reserve_partial(target, folder=folder, error=error)
    try:
        yield partial
    except BaseException:
        discard(partial)
        raise
    commit(partial, target, error=error)

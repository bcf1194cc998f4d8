"""Publishing a run's digest files into `<out>` together, or not at all.

Owns how `digest.md`, `digest.html`, `digest.xml` and `digest.json` reach the directory the user
gave. It must not build or render a digest (tasks/publish.py and tasks/render.py do) and must
leave no temporary file inside `<out>`.

The guarantee, precisely:
- Every file is written in full and fsynced in a temporary directory beside `<out>` (on the same
  filesystem, so a rename moves it without copying) before any file in `<out>` changes. A failure
  while writing (disk full, permissions, a text that cannot be encoded) leaves `<out>` untouched.
- The new files then replace the old ones by one `rename(2)` each, `digest.json` last: a reader
  never sees half a file, and a reader that goes by `digest.json` sees the new one only when the
  other three are already in place.
- If a rename fails, the files already replaced are put back (the old ones were hard-linked
  aside first): the previous digest stays whole, and the error says why.
- Not guaranteed: a reader listing `<out>` during the microseconds of the four renames can see
  some new files next to some old ones, and a power cut in that instant can leave such a mix
  (the next run replaces it). One atomic rename for the whole set would need `<out>` to be a
  symlink to a versioned directory, and `<out>` stays the plain directory the user gave.
The temporary directory (`.digest-tmp-*` beside `<out>`, or inside `<out>` only when the parent
is not writable or on another filesystem) is always removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from core.errors import AMLError

ORDER = ("digest.md", "digest.html", "digest.xml", "digest.json")  # the contract file last


class DigestNotWritten(AMLError):
    """The digest files could not be published; the previous digest is unchanged."""


def write_digest(out_dir: str | os.PathLike[str], files: dict[str, str]) -> Path:
    """Publish the {name: text} files into `out_dir` together (see the module docstring for
    exactly what "together" guarantees); returns `out_dir`. Raises `DigestNotWritten`, with
    the reason, when they could not be published; the previous files are then unchanged."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = _temp_dir(out)
    except OSError as exc:
        raise DigestNotWritten(f"cannot write the digest to {out}: {_why(exc)}") from exc
    try:
        names = sorted(files, key=lambda n: (ORDER.index(n) if n in ORDER else -1, n))
        try:
            for name in names:
                _write_synced(tmp / name, files[name])
            _fsync_dir(tmp)
        except (OSError, UnicodeError) as exc:
            raise DigestNotWritten(
                f"cannot write the digest to {out}: {_why(exc)}; the previous digest is unchanged"
            ) from exc
        _swap_in(tmp, out, names)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _temp_dir(out: Path) -> Path:
    """A fresh directory on `out`'s filesystem: beside it when possible, else inside it."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".digest-tmp-{out.name}-", dir=out.resolve().parent))
        if os.stat(tmp).st_dev == os.stat(out).st_dev:
            return tmp
        shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix=".digest-tmp-", dir=out))


def _swap_in(tmp: Path, out: Path, names: list[str]) -> None:
    """Rename each new file over its old one; on a failure put back what was replaced."""
    backups: dict[str, Path | None] = {}
    try:
        for name in names:  # keep the old files reachable until every new one is in place
            old = out / name
            backup = tmp / f"{name}.previous"
            if old.is_file() and not old.is_symlink():
                os.link(old, backup)
                backups[name] = backup
            else:
                backups[name] = None
        done: list[str] = []
        try:
            for name in names:
                os.replace(tmp / name, out / name)
                done.append(name)
            _fsync_dir(out)
        except OSError as exc:
            for name in reversed(done):
                backup = backups[name]
                with contextlib.suppress(OSError):
                    if backup is not None:
                        os.replace(backup, out / name)
                    else:
                        os.unlink(out / name)
            raise DigestNotWritten(
                f"cannot publish the digest in {out}: {_why(exc)}; the previous digest is unchanged"
            ) from exc
    except OSError as exc:  # the old files could not be linked aside: nothing was replaced
        raise DigestNotWritten(
            f"cannot publish the digest in {out}: {_why(exc)}; the previous digest is unchanged"
        ) from exc


def _write_synced(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    """Make the directory's entries durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"

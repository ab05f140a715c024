"""Writing files safely.

- `atomic_write`: every write goes to a temporary file beside the target and is renamed into
  place, so a crash or a full disk never leaves a half-written file under the final name. The
  temporary file is named `.NAME.es-HOST-PID-RANDOM.tmp`: a later save into the same folder
  removes the ones whose process is gone (a SIGKILL's leftovers), and SIGTERM / SIGHUP remove
  the ones being written before the process ends.
- `guard_output`: an output path is refused when it is a source file, lies inside a source
  folder or contains one (symlinks resolved), so nothing is ever written over what was read.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import zlib
from pathlib import Path
from typing import Callable, Iterable

from .errors import ArgumentError

TMP_MARK = "es"                 # marks our temporary files: .NAME.es-HOST-PID-RANDOM.tmp
LEGACY_STALE_SECONDS = 600      # older-format leftovers (.NAME.XXXXXXXX.tmp) this old are removed
FOREIGN_STALE_SECONDS = 86400   # another host's leftovers (its PIDs cannot be checked from here)
_TMP = re.compile(rf"^\..+\.{TMP_MARK}-([0-9a-f]{{8}})-(\d+)-[0-9a-z]+\.tmp$")
_ACTIVE: set[str] = set()       # temporary files being written, by every thread
_LOCK = threading.RLock()      # re-entrant: the signal handler may run while it is held
_INSTALLED: dict[int, object] = {}   # signal -> the handler ours replaced


def atomic_write(path, write: Callable[[str], object]) -> Path:
    """Call write(tmp_path) on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    _install_signal_cleanup()
    tmp = str(path.parent / f".{path.name}.{TMP_MARK}-{_HOST}-{os.getpid()}-{_token()}.tmp")
    with _LOCK:
        _ACTIVE.add(tmp)
    try:
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # umask applies
        except OSError as e:  # name the file the user asked for, not our temporary one
            raise type(e)(e.errno, e.strerror, str(path)) from None
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        with _LOCK:
            _ACTIVE.discard(tmp)
    return path


def _token() -> str:
    return os.urandom(6).hex()


_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"


def remove_stale_temps(folder) -> list[Path]:
    """Remove our temporary files in `folder` whose writer is gone; return what was removed.

    A file of this host is stale when its process no longer exists; another host's after a day;
    an older-format one (`.NAME.XXXXXXXX.tmp`, made before the PID was in the name) when it
    has not changed for LEGACY_STALE_SECONDS.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        if not (e.name.startswith(".") and e.name.endswith(".tmp")) or not e.is_file(follow_symlinks=False):
            continue
        if _is_stale(e, now):
            try:
                os.unlink(e.path)
                removed.append(Path(e.path))
            except OSError:
                pass
    return removed


def _is_stale(entry, now: float) -> bool:
    m = _TMP.match(entry.name)
    try:
        age = now - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return False
    if m is None:  # older format from mkstemp: .NAME. + 8 random characters + .tmp
        legacy = re.fullmatch(r"\..+\.[A-Za-z0-9_]{8}\.tmp", entry.name)
        return bool(legacy) and age > LEGACY_STALE_SECONDS
    host, pid = m.group(1), int(m.group(2))
    if host != _HOST:
        return age > FOREIGN_STALE_SECONDS
    return entry.path not in _ACTIVE and not _alive(pid)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove_active() -> None:
    with _LOCK:
        paths = list(_ACTIVE)
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass


def _on_signal(signum, frame):
    """Remove the temporary files being written, then end as the previous handler would."""
    _remove_active()
    previous = _INSTALLED.get(signum, signal.SIG_DFL)
    if callable(previous):
        return previous(signum, frame)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_cleanup() -> None:
    """Install `_on_signal` for SIGTERM and SIGHUP once (main thread only; a handler that
    ignores the signal is left alone)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)):
        if sig is None or sig in _INSTALLED:
            continue
        try:
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN or current is None:
                continue
            signal.signal(sig, _on_signal)
            _INSTALLED[sig] = current
        except (ValueError, OSError):  # not the main interpreter
            return


def _real(p) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(p))))


def guard_output(out, protected: Iterable, *, option: str = "output") -> None:
    """Refuse to write `out` when it is a protected path, lies inside a protected folder, or
    contains a protected path (symlinks and `..` resolved on both sides); ArgumentError names
    the option and the source."""
    target = _real(out)
    for src in protected:
        src_real = _real(src)
        if target == src_real or _same_file(target, src_real):
            raise ArgumentError(f"{option}: {out} is the source {src}; refusing to write over it")
        if src_real.is_dir() and src_real in target.parents:
            raise ArgumentError(f"{option}: {out} lies inside the source folder {src}; "
                                "choose an output outside it")
        if target in src_real.parents:
            raise ArgumentError(f"{option}: {out} contains the source {src}; "
                                "choose an output that holds no source")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)   # hard links too
    except OSError:
        return False

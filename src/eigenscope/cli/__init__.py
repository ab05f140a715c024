"""The `eigenscope` command. Each sub-command lives in its own module and registers on `app`.

No user sees a raw traceback unless they ask for one (`--debug`): a user error (EigenscopeError,
OSError) is one line on stderr and exit code 2; anything unexpected is one line saying where
the traceback was saved, and exit code 1.
"""
from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings

from ..errors import EigenscopeError
from . import analyze_cmd, compress_cmd, report_cmd  # noqa: F401  (importing registers commands)
from . import activations_cmd  # noqa: F401
from ._app import app

__all__ = ["app", "main"]

DEBUG_FLAG = "--debug"


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2, unexpected errors one
    line (traceback saved to a file) and exit code 1; `--debug` shows tracebacks instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv[: argv.index("--")] if "--" in argv else DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG] if debug else argv
    if not debug:   # libraries' log lines (torch, transformers) are not ours to show
        logging.getLogger("torch").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _one_line_warning
            app(args=argv, prog_name="eigenscope", standalone_mode=True)
    except SystemExit as e:  # click's own ending: help, usage errors (2), typer.Exit
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except (EigenscopeError, OSError) as e:
        if debug:
            traceback.print_exc()
        print(f"eigenscope: error: {_user_line(e)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as e:  # a bug of ours, or a library's (a Rust panic is a BaseException)
        if debug:
            traceback.print_exc()
            return 1
        where = _save_traceback()
        print(f"eigenscope: internal error: {_first_line(e)}, details in {where}", file=sys.stderr)
        return 1
    return 0


def _user_line(e: BaseException) -> str:
    """One line for a user error; an OSError names its file and the system's reason."""
    if isinstance(e, OSError) and not isinstance(e, EigenscopeError):
        name = str(e.filename) if e.filename is not None else ""
        name = name if len(name) <= 200 else name[:100] + "..." + name[-60:]
        reason = e.strerror or type(e).__name__
        return f"{name}: {reason}" if name else _first_line(e)
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if not isinstance(e, EigenscopeError) and text \
        else (text[0][:500] if text else type(e).__name__)


def _save_traceback() -> str:
    """Write the current exception's traceback to a new file in the temporary folder."""
    import tempfile

    try:
        fd, path = tempfile.mkstemp(prefix="eigenscope-error-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"eigenscope {' '.join(sys.argv)}\n")
            traceback.print_exc(file=f)
        return path
    except OSError:
        return "(the traceback could not be saved; run again with --debug)"


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"eigenscope: warning: {str(message).strip().splitlines()[0] if str(message).strip() else category.__name__}",
          file=sys.stderr if file is None else file)


if __name__ == "__main__":
    sys.exit(main())

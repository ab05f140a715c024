"""The `eigenscope` command. Each sub-command lives in its own module and registers on `app`."""
from __future__ import annotations

import sys

from ..errors import EigenscopeError
from . import analyze_cmd, compress_cmd, report_cmd  # noqa: F401  (importing registers commands)
from . import activations_cmd  # noqa: F401
from ._app import app

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="eigenscope", standalone_mode=True)
    except SystemExit as e:  # click's own ending: help, usage errors (2), typer.Exit
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except EigenscopeError as e:
        print(f"eigenscope: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

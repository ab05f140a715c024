"""The `eigenscope` command. Each sub-command lives in its own module and registers on `app`."""
from __future__ import annotations

import sys

import typer

from ..errors import EigenscopeError

app = typer.Typer(
    name="eigenscope",
    help="Read the weight matrices of a neural network, diagnose them through their spectra, "
         "and act on what you see.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Importing a command module registers its command on `app`.
from . import analyze_cmd, compress_cmd, report_cmd  # noqa: E402,F401
from . import activations_cmd  # noqa: E402,F401


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       is_eager=True)):
    """Read the weight matrices of a neural network, diagnose them through their spectra, and act."""
    if version:
        from .. import __version__
        typer.echo(f"eigenscope {__version__}")
        raise typer.Exit()


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

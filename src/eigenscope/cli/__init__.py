"""The `eigenscope` command. Each sub-command lives in its own module and registers on `app`."""
from __future__ import annotations

import sys

import click
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2."""
    cmd = typer.main.get_command(app)
    try:
        cmd.main(args=argv, prog_name="eigenscope", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        print("eigenscope: aborted", file=sys.stderr)
        return 130
    except click.ClickException as e:
        e.show()
        return 2
    except EigenscopeError as e:
        print(f"eigenscope: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

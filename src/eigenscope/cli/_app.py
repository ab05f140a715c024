"""The typer application every command module registers on (kept apart from `main` so that the
command modules and the package entry point do not import each other)."""
from __future__ import annotations

import typer

app = typer.Typer(
    name="eigenscope",
    help="Read the weight matrices of a neural network, diagnose them through their spectra, "
         "and act on what you see.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       is_eager=True),
          debug: bool = typer.Option(False, "--debug",
                                     help="Show the full traceback of any error (anywhere on "
                                          "the command line).")):
    """Read the weight matrices of a neural network, diagnose them through their spectra, and act."""
    if version:
        from .. import __version__
        typer.echo(f"eigenscope {__version__}")
        raise typer.Exit()

"""``tunelab`` entry point: the typer app, global --debug, and one-line user errors (exit 2)."""

from __future__ import annotations

import sys
import traceback

import typer

from tunelab.errors import TunelabError

app = typer.Typer(
    name="tunelab", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Train neural networks better through their hyperparameters and training techniques.")
STATE = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    """tunelab: train one model with any combination of classic techniques, on real data."""
    STATE["debug"] = debug


def _register() -> None:
    from tunelab.cli import (
        compare, control, datasets, ensemble, fork, inspect, lr_find, report, resume, runs, studies, train, tune,
    )

    app.command("train")(train.train_command)
    app.command("tune")(tune.tune_command)
    app.command("compare")(compare.compare_command)
    app.command("inspect")(inspect.inspect_command)
    app.command("report")(report.report_command)
    app.command("ensemble")(ensemble.ensemble_command)
    app.command("lr-find")(lr_find.lr_find_command)
    app.command("resume")(resume.resume_command)
    app.command("fork")(fork.fork_command)
    app.command("control")(control.control_command)
    app.command("runs")(runs.runs_command)

    app.add_typer(datasets.app, name="datasets")
    app.add_typer(studies.app, name="studies")


# Usage errors (bad option values, unknown options, missing arguments) are click's exceptions;
# recent typer releases carry their own copy of click, so take the class from typer itself.
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
ClickExit = tuple({typer.Exit, *(c for c in typer.Exit.__mro__ if c.__name__ == "Exit")})


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line and exit 2, --debug adds the traceback."""
    _register()
    try:
        code = app(args=argv, standalone_mode=False)  # click returns typer.Exit codes here
    except TunelabError as e:
        if STATE["debug"] or "--debug" in (argv or sys.argv):
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ClickExit as e:
        return e.exit_code
    except ClickException as e:
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":
            e.show()  # the help text itself
        else:
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            print(f"error: {e.format_message()}{hint}", file=sys.stderr)
        return e.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())


def entry() -> None:
    """Console-script entry: exit with main()'s code."""
    sys.exit(main())

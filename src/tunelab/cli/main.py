"""``tunelab`` entry point: the typer app, global --debug and --version, one-line user errors
(exit 2), and SIGTERM handled like Ctrl-C.

Commands load on demand: ``tunelab --help`` lists them from ``COMMANDS`` without importing
any command module, and ``tunelab train ...`` imports only ``tunelab.cli.train``. Importing
them all pulls in torch, scipy and optuna (seconds) before a word of help is printed.
"""

from __future__ import annotations

import difflib
import importlib
import platform
import signal
import sys
import traceback
from importlib import metadata
from typing import Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from tunelab import __version__
from tunelab.errors import TunelabError

# Usage errors (bad option values, unknown options, missing arguments) are click's exceptions;
# recent typer releases carry their own copy of click, so take the classes from typer itself.
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
ClickExit = tuple({typer.Exit, *(c for c in typer.Exit.__mro__ if c.__name__ == "Exit")})

# command name -> (module, attribute: a command function or a typer sub-app, the one-line help
# that `tunelab --help` shows: the first paragraph of the command's own help, which a test checks)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("tunelab.cli.train", "train_command",
              "Train one model and write config.yaml, history.csv, result.json, curves.png, model.pt."),
    "tune": ("tunelab.cli.tune", "tune_command",
             "Search hyperparameters over real training runs; keeps every trial in storage."),
    "compare": ("tunelab.cli.compare", "compare_command",
                "Run every arm over the same seeds and say which changes help, by how much, and whether "
                "N seeds can tell."),
    "inspect": ("tunelab.cli.inspect", "inspect_command",
                "Look inside the network: activations and gradients per hidden layer, at init and trained."),
    "report": ("tunelab.cli.report", "report_command",
               "Build the HTML report (figures embedded, works offline) from storage or a run folder."),
    "ensemble": ("tunelab.cli.ensemble", "ensemble_command",
                 "Retrain the top K trials of a study (or runs of a folder) and score their ensemble."),
    "lr-find": ("tunelab.cli.lr_find", "lr_find_command",
                "Learning-rate range test: raise the lr exponentially, one step per batch, watch the loss."),
    "resume": ("tunelab.cli.resume", "resume_command",
               "Continue a run exactly where its checkpoint left it (after a stop, Ctrl-C or a crash)."),
    "fork": ("tunelab.cli.fork", "fork_command",
             "Branch off a run: the child starts from the parent's checkpoint with the changes given, "
             "records its parent and the epoch it branched at, and draws the parent beside its curves."),
    "control": ("tunelab.cli.control", "control_command",
                "Send commands to a running run: lr=3e-4, lr*=0.5, pause, resume, stop, checkpoint, "
                "early-stopping=on|off, fork. Each is applied between two steps and recorded in events.jsonl."),
    "runs": ("tunelab.cli.runs", "app",
             "List run folders (tunelab runs [DIR]) or overlay their curves (tunelab runs compare RUN_DIR...)."),
    "evaluate": ("tunelab.cli.evaluate", "evaluate_command",
                 "Loss, accuracy and per-class accuracy of a run's saved model on its test split (or another)."),
    "predict": ("tunelab.cli.predict", "predict_command",
                "Predict with a run's saved model: one row per input (a csv row, a npz example or an image file)."),
    "datasets": ("tunelab.cli.datasets", "app", "List, describe and download datasets."),
    "studies": ("tunelab.cli.studies", "app", "List, show, export and delete tuning studies."),
}


def _plain_flags(params: list) -> list:
    """Flags take no value, so they get no value label (typer writes ``<bool>`` beside each);
    an argument with a metavar is shown by it alone (typer adds its type: ``<path>``, ``<list[str]>``)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        elif param.param_type_name == "argument" and param.metavar and hasattr(param, "display_type_rich"):
            param.display_type_rich = lambda ctx: None
    return params


def _plain(command: Any) -> Any:
    """``_plain_flags`` for a command and every command under it, whatever class its module
    chose (the help option is made per context, so the params are relabelled when asked for)."""
    get_params = command.get_params
    command.get_params = lambda ctx: _plain_flags(get_params(ctx))
    for sub in getattr(command, "commands", {}).values():
        _plain(sub)
    return command


class _LazyGroup(TyperGroup):
    """The root group: commands from ``COMMANDS``, imported when one is used."""

    listing = False  # while the help lists the commands, their one-line help is enough

    def get_params(self, ctx: Any) -> list:
        return _plain_flags(super().get_params(ctx))

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in self.commands and name in COMMANDS:
            if self.listing:
                return TyperCommand(name=name, help=COMMANDS[name][2])
            self.commands[name] = _plain(load_command(name))
        return super().get_command(ctx, name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as e:
            # typer's own "did you mean" reads self.commands, which holds only the loaded ones
            matches = difflib.get_close_matches(args[0], list(COMMANDS)) if args else []
            if matches and "did you mean" not in e.message.lower():
                e.message = f"{e.message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise


def load_command(name: str) -> Any:
    """The click command (or group) of ``COMMANDS[name]``, built by typer as ``app.command`` would.

    Example:
        >>> load_command("datasets").name, sorted(load_command("datasets").commands)[:2]
        ('datasets', ['download', 'info'])
    """
    module, attribute, _ = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    holder.callback()(lambda: None)  # a callback makes typer build a group even around one command
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_command(holder).commands[name]


def version_line() -> str:
    """tunelab's version with torch's and Python's (read from the installed metadata, so
    ``--version`` does not import torch).

    Example:
        >>> version_line().startswith("tunelab ")
        True
    """
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return f"tunelab {__version__} (torch {torch_version}, Python {platform.python_version()})"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit(0)


app = typer.Typer(
    name="tunelab", cls=_LazyGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Train neural networks better through their hyperparameters and training techniques.")
STATE = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
          version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                       help="Print the versions of tunelab, torch and Python, and exit.")) -> None:
    """tunelab: train one model with any combination of classic techniques, on real data."""
    STATE["debug"] = debug



SIGTERM_EXIT = 128 + signal.SIGTERM  # 143: what a shell reports for a process SIGTERM ended


def _override_hint(message: str, argv: list[str]) -> str:
    """For Hydra-style ``key=value`` arguments click rejects as extra: how to pass them."""
    if "unexpected extra argument" not in message:  # click's wording, with or without "(s)"
        return ""
    options_with_values = {"--set", "-s"}
    loose = [a for i, a in enumerate(argv) if "=" in a and not a.startswith("-")
             and (i == 0 or argv[i - 1] not in options_with_values)]
    return f"; to override keys use {' '.join('--set ' + a for a in loose)}" if loose else ""


def _fault_line(error: BaseException) -> Optional[str]:
    """One line for a fault of the machine rather than of tunelab: a storage database that is
    corrupt, locked, read-only or full, or a file the system refused (None: not one of those)."""
    from tunelab.fileio import why

    if isinstance(error, OSError):
        where = f" {str(error.filename)!r}" if error.filename else ""
        return f"the file system refused{where}: {why(error)}"
    try:
        import optuna.exceptions
        import sqlalchemy.exc
    except ImportError:
        return None
    if isinstance(error, (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)):
        cause = error.__cause__ or error.__context__
        text = str(getattr(error, "orig", None) or cause or error).strip().splitlines()
        reason = text[0][:200] if text else type(error).__name__
        return (f"the study's storage failed: {reason}; check that it is a database, writable, not "
                f"locked and with free space, then rerun the same command (completed trials are kept)")
    return None


def _dispatch(argv: Optional[list[str]]) -> int:
    try:
        code = app(args=argv, standalone_mode=False)  # click returns typer.Exit codes here
    except TunelabError as e:
        if STATE["debug"] or "--debug" in (argv if argv is not None else sys.argv):
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
            hint = _override_hint(e.format_message(), list(argv if argv is not None else sys.argv[1:]))
            see = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            print(f"error: {e.format_message()}{hint}{see}", file=sys.stderr)
        return e.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - storage and file-system faults: one line, not a traceback
        line = _fault_line(e)
        if line is None:
            raise
        if STATE["debug"] or "--debug" in (argv if argv is not None else sys.argv):
            traceback.print_exc()
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        from tunelab.cli.common import say_interrupted

        say_interrupted(e)
        return 130
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code.

    User errors print one line and return 2 (``--debug`` adds the traceback); Ctrl-C returns 130.
    A second Ctrl-C does not cut the first one's clean-up short (a third does).
    SIGTERM, what batch schedulers and ``kill`` send, and SIGHUP (the terminal closed) are handled
    like Ctrl-C: a training run ends with status ``interrupted`` and a complete run folder, a tune
    marks its running trials for a retry. It then returns 143 or 129 (128 + the signal, what a
    shell reports for a process that signal ended), so a job script can tell a scheduler's kill
    from a user's Ctrl-C. A storage database that fails (corrupt, read-only, locked, full) or a
    file the system refuses is one line and 2, as a user error (``--debug``: the traceback).
    """
    from tunelab.execute.base import clear_interrupt, note_interrupt

    terminated: list[int] = []
    clear_interrupt()

    def on_sigterm(signum: int, frame: Any) -> None:
        if terminated:
            return  # a second SIGTERM must not cut short the clean-up the first one started
        terminated.append(signum)
        note_interrupt()  # kept even if the raise lands in a finalizer, where Python drops it
        raise KeyboardInterrupt

    interrupts: list[int] = []

    def on_sigint(signum: int, frame: Any) -> None:
        note_interrupt()
        interrupts.append(signum)
        if len(interrupts) == 2:  # the first one's clean-up (the run folder, the study) goes on
            print("interrupted again: still writing what was done (Ctrl-C once more abandons it)",
                  file=sys.stderr)
            return
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_sigterm)
        previous_int = signal.signal(signal.SIGINT, on_sigint)
        previous_hup = signal.signal(signal.SIGHUP, on_sigterm)  # a closed terminal: the same
    except ValueError:  # not the main thread (an embedding program): leave signals to it
        previous = previous_int = previous_hup = None
    import logging

    # SQLAlchemy logs "Error closing cursor" with a traceback when a Ctrl-C cuts a query short (it
    # drops the connection first); the interrupt itself is handled, storage errors still surface as
    # exceptions, so its log records are not shown on the console
    sa_log = logging.getLogger("sqlalchemy")
    if not any(isinstance(h, logging.NullHandler) for h in sa_log.handlers):
        sa_log.addHandler(logging.NullHandler())
    default_hook = sys.unraisablehook

    def quiet(unraisable: Any) -> None:  # a Ctrl-C raised inside a finalizer: noted, acted on later
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            default_hook(unraisable)

    sys.unraisablehook = quiet
    try:
        code = _dispatch(argv)
    finally:
        sys.unraisablehook = default_hook
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGHUP, previous_hup)
    return 128 + terminated[0] if terminated and code == 130 else code


def entry() -> None:
    """Console-script entry (``tunelab``, ``python -m tunelab``): exit with main()'s code."""
    sys.exit(main())


if __name__ == "__main__":
    entry()

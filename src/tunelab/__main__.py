"""``python -m tunelab``: the same command line as ``tunelab``."""

from __future__ import annotations

if __name__ == "__main__":  # the doctest sweep imports every module; only running it starts the CLI
    from tunelab.cli.main import entry

    entry()

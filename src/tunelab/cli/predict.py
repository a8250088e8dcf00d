"""``tunelab predict RUN_DIR INPUT...``: the class a run's saved model predicts for each input."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

HELP = "Predict with a run's saved model: one row per input (a csv row, a npz example or an image file)."


def predict_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="Run folder (tunelab train --out RUN_DIR)."),
    inputs: list[Path] = typer.Argument(..., metavar="INPUT", help="One .csv (the training feature "
                                        "columns; the label column optional), one .npz (array x, optional "
                                        "y), or image files / a folder of images (PNG, JPEG, ...)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="FILE", help="Write the rows to this csv file "
                                       "instead of printing them."),
    invert: bool = typer.Option(False, "--invert", help="Images: dark strokes on a light background "
                                "(MNIST and digits are light on dark)."),
) -> None:
    """Predict with a run's saved model: one row per input (a csv row, a npz example or an image file).

    Values are raw, in the units of the run's data (digits 0..16, MNIST 0..255), scaled as in training.

    Images are read in gray and resized to the model's input size (--invert: dark on light).

    Rows: input (row index or file), class, class_name, probability, and true_class for labelled input.
    """
    from tunelab.analysis.predict import predict_files
    from tunelab.trainer.load import load_run
    from tunelab.trainer.threads import set_threads
    from tunelab.trainer.runfolder import check_writable

    if out is not None:
        check_writable(out, "--out", kind="file")
    run = load_run(run_dir)
    set_threads(run.cfg.training.threads)
    preds = predict_files(run, inputs, invert=invert)
    if out is not None:
        preds.write_csv(out)
        print(f"wrote {len(preds.names)} predictions to {out}")
    else:
        preds.write_csv(sys.stdout)
    if preds.accuracy is not None:  # beside the rows, not among them: stdout stays one csv table
        print(f"accuracy {preds.accuracy:.4f} on {len(preds.names)} labelled inputs",
              file=sys.stderr if out is None else sys.stdout)

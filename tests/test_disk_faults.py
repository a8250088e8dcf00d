"""Full and read-only disks: every file tunelab writes is whole or absent, a run folder never
claims success beside a broken model, and the failure is one line naming the path and the reason.
The small file systems are tmpfs mounts made by the test (skipped where mounting is not allowed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.errors import WriteError
from tunelab.fileio import atomic_open, torch_save, write_text


def _mount(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({out.stderr.strip()[:80]})")


@pytest.fixture
def disk(tmp_path):
    """A factory of small tmpfs mounts: disk(size="16k") or disk(read_only=True); unmounted after."""
    mounts: list[Path] = []

    def make(size: str = "64k", read_only: bool = False) -> Path:
        where = tmp_path / f"fs{len(mounts)}"
        _mount(where, f"size={size}" + (",ro" if read_only else ""))
        mounts.append(where)
        return where

    yield make
    for where in mounts:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_disk_leaves_the_old_file_whole_and_no_temporary(disk):
    fs = disk("16k")
    write_text(fs / "a.txt", "old")
    with pytest.raises(WriteError, match=r"cannot write '.*a.txt': no space left on the device"):
        write_text(fs / "a.txt", "x" * 100_000)
    assert (fs / "a.txt").read_text() == "old" and sorted(p.name for p in fs.iterdir()) == ["a.txt"]
    with pytest.raises(WriteError, match="no space left"):
        torch_save({"w": __import__("torch").zeros(50_000)}, fs / "model.pt")
    assert not (fs / "model.pt").exists()


def test_a_read_only_disk_is_one_line(disk):
    fs = disk(read_only=True)
    with pytest.raises(WriteError, match=r"cannot write '.*r.json': the file system is read-only"):
        with atomic_open(fs / "r.json") as f:
            f.write("{}")


def _tunelab(args: list[str], cwd: Path) -> tuple[int, list[str]]:
    out = subprocess.run([sys.executable, "-m", "tunelab", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=300)
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    return out.returncode, [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]


def test_train_on_a_full_disk_fails_in_one_line_and_claims_nothing(disk, tmp_path):
    fs = disk("24k")  # room for the small files, not for the model
    code, lines = _tunelab(["train", "--out", str(fs / "run"), "--set", "data.name=digits",
                            "--set", "model.hidden=[512]", "--set", "training.epochs=1"], tmp_path)
    # the first file too big for it (a checkpoint while it trains, or the model) stops the run
    assert code == 2 and lines[-1].startswith("error: cannot write") and "no space left on the device" in lines[-1]
    left = sorted(p.name for p in (fs / "run").iterdir()) if (fs / "run").exists() else []
    assert "result.json" not in left and "model.pt" not in left and not [n for n in left if n.endswith(".tmp")], left


def test_train_in_a_read_only_folder_fails_in_one_line(disk, tmp_path):
    fs = disk(read_only=True)
    code, lines = _tunelab(["train", "--out", str(fs / "run"), "--set", "data.name=digits",
                            "--set", "training.epochs=1"], tmp_path)
    assert code == 2 and "cannot be created: the file system is read-only" in lines[-1], lines[-3:]


# ------------------------------------------------------------------ the study's storage

SPACE = "base:\n  data: {name: digits}\n  model: {hidden: [8]}\n  training: {epochs: 2, threads: 1}\nspace:\n  optimizer.lr: {log_uniform: [0.001, 0.1]}\n"


def test_a_corrupt_storage_file_is_one_line(tmp_path):
    (tmp_path / "s.yaml").write_text(SPACE)
    (tmp_path / "bad.db").write_text("not a database\n" * 300)
    code, lines = _tunelab(["tune", "s.yaml", "--storage", "sqlite:///bad.db", "--trials", "1"], tmp_path)
    assert code == 2 and lines == [lines[-1]] and "storage failed: file is not a database" in lines[-1], lines


def _tune(fs: Path, trials: int, cwd: Path) -> tuple[int, list[str]]:
    """``tunelab tune`` of SPACE with its study in ``fs``/st.db."""
    (cwd / "s.yaml").write_text(SPACE)
    return _tunelab(["tune", "s.yaml", "--storage", f"sqlite:///{fs}/st.db", "--study", "s",
                     "--trials", str(trials)], cwd)


def test_a_read_only_storage_is_one_line(disk, tmp_path):
    fs = disk("1m")
    assert _tune(fs, 1, tmp_path)[0] == 0
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    code, lines = _tune(fs, 2, tmp_path)
    assert code == 2 and "read-only" in lines[-1], lines[-3:]


def test_a_storage_that_fills_up_mid_study_is_one_line_and_keeps_what_was_told(disk, tmp_path):
    import shutil

    import optuna

    fs = disk("400k")
    assert _tune(fs, 1, tmp_path)[0] == 0
    free = shutil.disk_usage(fs).free
    (fs / "filler").write_bytes(b"\0" * max(0, free - 24 * 1024))  # leave room for a few trials only
    code, lines = _tune(fs, 200, tmp_path)
    assert code == 2 and ("storage failed" in lines[-1] or "no space left" in lines[-1]), lines[-3:]
    (fs / "filler").unlink()
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{fs}/st.db").get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all("history" in t.user_attrs for t in done)  # readable, nothing half-told

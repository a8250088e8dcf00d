"""Default output folders: unique, stamped, and safe as file names."""

from tunelab.trainer.runfolder import default_run_dir, fresh_dir


def test_fresh_dir_never_returns_an_existing_folder(tmp_path):
    first = fresh_dir(tmp_path, "inspect-{stamp}")
    assert first.parent == tmp_path and first.name.startswith("inspect-20") and not first.exists()
    first.mkdir()
    second = fresh_dir(tmp_path, first.name)  # same name taken: a suffix is added
    assert second.name == first.name + "-1"
    second.mkdir()
    assert fresh_dir(tmp_path, first.name).name == first.name + "-2"


def test_fresh_dir_makes_study_names_safe_file_names(tmp_path):
    path = fresh_dir(tmp_path, "ensemble-compare:mnist/{x}-{stamp}")
    assert path.parent == tmp_path
    assert path.name.startswith("ensemble-compare_mnist__x_-20")


def test_default_run_dir_names_data_and_model(tmp_path):
    path = default_run_dir(tmp_path, "digits", "mlp")
    assert path.parent == tmp_path and path.name.endswith("-digits-mlp")

"""Prediction inputs read from files: labels by value, csv columns by name, images resized."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tunelab.data.inputs import label_codes, read_csv_inputs, read_images, read_npz_inputs
from tunelab.errors import DataError


def test_labels_map_by_value_not_by_position() -> None:
    names = ["1", "3", "10"]  # a run's classes: numbers sorted as numbers
    assert label_codes(["10", 3, 1.0, "3.0"], names, "f").tolist() == [2, 1, 0, 1]
    assert label_codes(np.array(["dog", "fox"]), ["cat", "dog", "fox"], "f").tolist() == [1, 2]
    with pytest.raises(DataError, match=r"label '7' of f.csv is not a class of the run; its classes are \['1', '3', '10'\]"):
        label_codes(["7"], names, "f.csv")


def test_csv_columns_by_name_and_count(tmp_path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("b,label,a\n2,x,1\n4,y,3\n")
    got = read_csv_inputs(path, (2,), "label", features=["a", "b"])
    assert got.x.tolist() == [[1, 2], [3, 4]] and got.labels.tolist() == ["x", "y"] and got.names == ["0", "1"]
    flat = read_csv_inputs(path, (1, 1, 2), "label")  # no names known: file order, reshaped
    assert flat.x.shape == (2, 1, 1, 2) and flat.x[0].ravel().tolist() == [2, 1]
    with pytest.raises(DataError, match=r"has 2 feature columns \(besides 'label'\); the model takes 3 values"):
        read_csv_inputs(path, (3,), "label")


def test_npz_shapes(tmp_path) -> None:
    np.savez(tmp_path / "a.npz", x=np.arange(8.0).reshape(2, 4))
    assert read_npz_inputs(tmp_path / "a.npz", (1, 2, 2)).x.shape == (2, 1, 2, 2)
    with pytest.raises(DataError, match=r"has examples of shape \(4,\); the model takes \(3,\)"):
        read_npz_inputs(tmp_path / "a.npz", (3,))


def test_images_shrink_by_area_averages_in_source_units(tmp_path) -> None:
    img = np.random.default_rng(0).integers(0, 256, size=(24, 24)).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")  # exact gray levels (a colormap rounds)
    got = read_images([tmp_path / "a.png"], (1, 8, 8), pixel_max=16.0)
    expected = img.astype(np.float64).reshape(8, 3, 8, 3).mean((1, 3)) * 16 / 255  # 3 x 3 block means
    np.testing.assert_allclose(got.x[0, 0], expected, atol=1e-4)
    inverted = read_images([tmp_path / "a.png"], (1, 8, 8), pixel_max=16.0, invert=True)
    np.testing.assert_allclose(inverted.x[0, 0], 16 - expected, atol=1e-4)
    (tmp_path / "b.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"image '.*b.png' cannot be read"):
        read_images([tmp_path / "b.png"], (1, 8, 8), pixel_max=16.0)

"""Write scikit-learn's digits (1797 8x8 images) as PNG files: FOLDER/train/<digit>/ and FOLDER/test/<digit>/.

A seeded fifth of each digit's images goes to test/; pixels 0..16 become gray levels 0..255.
The folder is what `data.name: images` reads (see config.yaml beside this file).

    python examples/images/make_folder.py digits-images
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python make_folder.py FOLDER   (writes FOLDER/train/<digit>/*.png and FOLDER/test/<digit>/*.png)",
              file=sys.stderr)
        return 2
    root = Path(argv[0])
    if root.exists() and any(root.iterdir()):
        print(f"error: folder {str(root)!r} is not empty; give a new or empty folder", file=sys.stderr)
        return 2
    d = load_digits()
    pixels = np.rint(d.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8), light strokes on dark
    rng = np.random.default_rng(0)
    counts = {"train": 0, "test": 0}
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(d.target == digit))
        n_test = len(idx) // 5
        for part, chosen in (("test", idx[:n_test]), ("train", idx[n_test:])):
            folder = root / part / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(pixels[i]).save(folder / f"{i:04d}.png")
            counts[part] += len(chosen)
    print(f"wrote {counts['train']} training and {counts['test']} test images to {root}/train and {root}/test")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

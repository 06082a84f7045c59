"""Writes a small MedMNIST-shaped npz file whose classes can be learned in an epoch or two.

Usage: python synthetic_npz.py OUT.npz [--classes 8] [--size 28]

Each class is a coloured square at its own place over noise; the arrays and dtypes are
those of the official files (train/val/test images uint8 (N, H, W, 3), labels uint8 (N, 1)).
"""

import argparse
from pathlib import Path

import numpy as np


def split(rng, rows, classes, size):
    labels = np.arange(rows) % classes
    images = rng.integers(0, 90, size=(rows, size, size, 3), dtype=np.uint8)
    side = size // 4
    for row, label in enumerate(labels):
        top, left = divmod(int(label), 4)
        y, x = (top * side) % (size - side), left * side
        images[row, y : y + side, x : x + side, label % 3] = 230
    return images, labels.reshape(-1, 1).astype(np.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--size", type=int, default=28)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    arrays = {}
    for name, rows in (("train", 480), ("val", 80), ("test", 160)):
        images, labels = split(rng, rows, args.classes, args.size)
        arrays[f"{name}_images"], arrays[f"{name}_labels"] = images, labels
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)


if __name__ == "__main__":
    main()

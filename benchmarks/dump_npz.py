"""Dump a data set's cached features to one .npz (the format of bench_heads.load_npz).

    python benchmarks/dump_npz.py results/<ds> out.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_heads import load_real  # noqa: E402

if __name__ == "__main__":
    res, out = Path(sys.argv[1]), sys.argv[2]
    d = load_real(res / "features", res / "manifest.parquet")
    arrays = {f"X_{s}_{m}": X[m] for s, X in (("train", d.X_train), ("val", d.X_val), ("test", d.X_test))
              for m in X}
    np.savez(out, y_train=d.y_train, y_val=d.y_val, classes=np.array(d.classes),
             guids_test=np.array(d.guids_test), **arrays)
    print(out, {k: v.shape for k, v in arrays.items()})

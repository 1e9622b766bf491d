#!/usr/bin/env python3
"""Writes the ADMM golden vectors (admm.txt + admm_<name>.{w,h,out,mask}.bin, float64 / uint8) from
the independent numpy reference admm_reference.py. Usage: generate_admm.py Tests/vectors"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admm_reference as ref  # noqa: E402

CASES = [  # name, rows, cols, options
    ("layer_12x16", 12, 16, dict(scope="layer", sparsity=0.5, iterations=12, ramp=8, refine=5)),
    ("row_10x24", 10, 24, dict(scope="row", sparsity=0.6, iterations=10, ramp=10, refine=3)),
    ("nm24_8x32", 8, 32, dict(scope="nm", n=2, m=4, iterations=12, ramp=6, refine=4)),
    ("rho_9x12", 9, 12, dict(scope="layer", sparsity=0.7, iterations=9, ramp=0, rho=0.2, rho_growth=2.0,
                             rho_interval=3, refine=0, dampening=0.02)),
]


def main(folder):
    lines = []
    for i, (name, rows, cols, options) in enumerate(CASES):
        rng = np.random.default_rng(1000 + i)
        mix = rng.standard_normal((cols, cols)) / np.sqrt(cols) + np.eye(cols)
        x = rng.standard_normal((4 * cols, cols)) @ mix * rng.uniform(0.2, 2.0, cols)
        x[:, cols // 3] = 0  # an input that never fires
        w = rng.standard_normal((rows, cols))
        h = x.T @ x
        keep, out = ref.admm(w, h, **options)
        base = os.path.join(folder, f"admm_{name}")
        w.astype(np.float64).tofile(base + ".w.bin")
        h.astype(np.float64).tofile(base + ".h.bin")
        out.astype(np.float64).tofile(base + ".out.bin")
        keep.astype(np.uint8).tofile(base + ".mask.bin")
        o = dict(dict(scope="layer", sparsity=0.5, n=2, m=4, rho=1.0, rho_growth=1.0, rho_interval=1, dampening=0.1),
                 **options)
        lines.append(f"name={name} rows={rows} cols={cols} scope={o['scope']} sparsity={o['sparsity']} n={o['n']} "
                     f"m={o['m']} iterations={o['iterations']} ramp={o['ramp']} rho={o['rho']} "
                     f"rho_growth={o['rho_growth']} rho_interval={o['rho_interval']} refine={o['refine']} "
                     f"dampening={o['dampening']}")
    with open(os.path.join(folder, "admm.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(lines)} ADMM cases written to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))

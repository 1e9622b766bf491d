"""Golden vectors of the N:M channel-permutation search, from the independent numpy reference
(permutation_reference.py): Tests/vectors/permutation.txt lists the cases; per case the float32
weights (.w.bin), float32 Wanda feature values (.f.bin) and the int64 permutation (.perm.bin).
The Swift, C and Python tests check the core against them."""
import os

import numpy as np

import permutation_reference as ref

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [("perm_8x32_24", 8, 32, 2, 4, 0, 1 << 20), ("perm_6x48_14_seg16", 6, 48, 1, 4, 16, 1 << 20),
         ("perm_5x32_28", 5, 32, 2, 8, 0, 1 << 20), ("perm_7x64_24_seg32_budget5", 7, 64, 2, 4, 32, 5)]


def main(out_dir=HERE):
    lines = []
    for i, (name, rows, cols, n, m, segment, budget) in enumerate(CASES):
        rng = np.random.default_rng(500 + i)
        w = rng.standard_normal((rows, cols)).astype(np.float32)
        f = rng.uniform(0.1, 3.0, cols).astype(np.float32)
        perm, before, after = ref.channel_permutation(np.abs(w) * f, n, m, segment, budget)
        w.tofile(os.path.join(out_dir, f"{name}.w.bin"))
        f.tofile(os.path.join(out_dir, f"{name}.f.bin"))
        perm.astype(np.int64).tofile(os.path.join(out_dir, f"{name}.perm.bin"))
        lines.append(f"name={name} rows={rows} cols={cols} n={n} m={m} segment={segment} max_swaps={budget} "
                     f"before={before!r} after={after!r}")
    with open(os.path.join(out_dir, "permutation.txt"), "w") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

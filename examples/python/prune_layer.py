"""Prune one linear layer with Wanda from Python: calibrate, mask, apply, report."""
import numpy as np

import prunekit

rng = np.random.default_rng(0)
rows, cols = 512, 2048
w = rng.standard_normal((rows, cols)).astype(np.float32) * 0.02
scale = (0.1 * 100 ** rng.random(cols)).astype(np.float32)

stats = prunekit.Stats(cols)
for _ in range(4):  # stream calibration batches [tokens, features]
    stats.update(rng.standard_normal((256, cols)).astype(np.float32) * scale)

held_out = rng.standard_normal((128, cols)).astype(np.float32) * scale
for name, kwargs in [("magnitude 50%", dict(sparsity=0.5)),
                     ("wanda 50%", dict(sparsity=0.5, criterion="wanda", features=stats)),
                     ("wanda 2:4", dict(pattern="2:4", criterion="wanda", features=stats))]:
    mask = prunekit.mask(w, **kwargs)
    pruned = w.copy()
    prunekit.apply_mask(pruned, mask)
    error = np.linalg.norm((w - pruned) @ held_out.T) / np.linalg.norm(w @ held_out.T)
    overall, _ = prunekit.sparsity(mask)
    print(f"{name:14s} sparsity {overall:.2f}  output error {error:.4f}")

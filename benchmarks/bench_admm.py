#!/usr/bin/env python3
"""ADMM speed on one layer, one run, printed ratios:

- PruneKit's pk_admm (float32) against SparseGPT on the same layer;
- against the sgemm time of its own iterations: the same number of rows x cols x cols float32 GEMMs
  (iterations + refinement steps + 2), timed here through torch (same OpenBLAS-class kernels; CPU);
- against a torch port of the reference ADMM (fmfi-compbio/admm-pruning's update, written here
  from the paper: explicit inverse of (H + rho I), one matmul per iteration, top-k projection with
  the cubic ramp), same iteration count, float32, CPU.
And the layer error ||(W - W') X||^2 / ||W X||^2 of each, so speed is not bought with quality.

    python3 benchmarks/bench_admm.py [--size 4096 --tokens 8192]
"""
import argparse
import time

import numpy as np

import prunekit


def reference_port(torch, w, h, sparsity, iterations, ramp, rho=1.0, damp=0.1):
    """The reference's algorithm in torch (W transposed to cols x rows, as there)."""
    XX = torch.from_numpy(h.astype(np.float32))
    norm = torch.diag(XX).sqrt() + 1e-8
    XX = XX / norm
    XX = (XX.T / norm).T
    W = (torch.from_numpy(w) * norm).T.contiguous()
    idx = torch.arange(XX.shape[0])
    XX[idx, idx] += damp * torch.diag(XX).mean()
    XY = XX.matmul(W)
    XX[idx, idx] += rho
    XXinv = torch.inverse(XX)
    U = torch.zeros_like(W)
    mask = None
    for t in range(iterations):
        if t < ramp:
            cur = sparsity - sparsity * (1 - (t + 1) / ramp) ** 3
            k = int(W.numel() * cur)
            mask = torch.ones(W.numel(), dtype=torch.bool)
            if k:
                mask[torch.topk((W + U).abs().flatten(), k=k, largest=False).indices] = False
            mask = mask.reshape(W.shape)
        Z = (W + U) * mask
        U = U + (W - Z)
        W = XXinv.matmul(XY + rho * (Z - U))
    Z = (W + U) * mask
    return (Z.T / norm).numpy()


def relative_error(w, pruned, h):
    d = (w - pruned).astype(np.float64)
    return float(np.einsum("ij,jk,ik->", d, h, d) / np.einsum("ij,jk,ik->", w.astype(np.float64), h, w.astype(np.float64)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--ramp", type=int, default=20)
    parser.add_argument("--refine", type=int, default=10)
    args = parser.parse_args()
    import torch

    n = args.size
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.tokens, n)).astype(np.float32)
    x[:, 1:] += 0.5 * x[:, :-1]
    x *= rng.uniform(0.2, 3.0, n).astype(np.float32)
    w = rng.standard_normal((n, n)).astype(np.float32)
    h = x.astype(np.float64).T @ x.astype(np.float64)

    t0 = time.perf_counter()
    _, admm_out = prunekit.admm(w, h, 0.5, iterations=args.iterations, ramp_iterations=args.ramp,
                                refine_iterations=args.refine)
    admm_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, sgpt_out = prunekit.sparsegpt(w, h, 0.5)
    sgpt_time = time.perf_counter() - t0

    # The GEMMs ADMM's iterations need: one per iteration and refinement step, XY and the CG start.
    gemms = args.iterations + args.refine + 2
    a = torch.from_numpy(w)
    b = torch.from_numpy(h.astype(np.float32))
    a.matmul(b)
    t0 = time.perf_counter()
    for _ in range(gemms):
        a.matmul(b)
    gemm_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    port_out = reference_port(torch, w, h, 0.5, args.iterations, args.ramp)
    port_time = time.perf_counter() - t0

    gflop = gemms * 2 * n * n * n / 1e9
    print(f"PruneKit ADMM benchmark: {n} x {n} float32 layer, Hessian of {args.tokens} tokens, "
          f"{args.iterations} iterations ({args.ramp} ramp) + {args.refine} refinement steps, 50% per layer")
    print(f"  pk_admm                        {admm_time:8.2f} s   layer error {relative_error(w, admm_out, h):.5f}")
    print(f"  pk_sparsegpt                   {sgpt_time:8.2f} s   layer error {relative_error(w, sgpt_out, h):.5f}"
          f"   ADMM / SparseGPT time {admm_time / sgpt_time:.1f}x")
    print(f"  sgemm bound: {gemms} GEMMs, {gflop:.0f} GFLOP {gemm_time:8.2f} s   ({gflop / gemm_time:.0f} GFLOP/s)"
          f"   ADMM / bound {admm_time / gemm_time:.2f}x")
    print(f"  torch port of the reference    {port_time:8.2f} s   layer error {relative_error(w, port_out, h):.5f}"
          f"   PruneKit {port_time / admm_time:.2f}x faster")
    print("  targets: within 1.5x of the sgemm bound; >= 10x faster than the reference port")


if __name__ == "__main__":
    main()

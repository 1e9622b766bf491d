"""An independent numpy implementation of the data-free compensation (UDFC) closed form that
prunekit.h documents, for the tests (test_data_free.py) and the C golden vectors
(Tests/vectors/generate_udfc.py)."""
import math

import numpy as np


def reference_moments(gamma, beta, var, eps, activation):
    sd = np.abs(gamma) * np.sqrt(var / (var + eps))
    sign = np.where(gamma < 0, -1.0, 1.0)
    if activation == "identity":
        return beta.copy(), sd ** 2, sign * sd
    mean, variance, factor = np.empty_like(sd), np.empty_like(sd), np.empty_like(sd)
    for c, (m, s) in enumerate(zip(beta, sd)):
        if s == 0:
            mean[c], variance[c], factor[c] = max(m, 0.0), 0.0, 0.0
            continue
        z = m / s
        cdf = 0.5 * math.erfc(-z / math.sqrt(2))
        pdf = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        first = m * cdf + s * pdf
        second = (m * m + s * s) * cdf + m * s * pdf
        mean[c] = first
        variance[c] = max(second - first ** 2, (cdf * s) ** 2)
        factor[c] = sign[c] * cdf * s
    return mean, variance, factor


def reference_udfc(producer, gamma, beta, var, next_w, keep, span, eps=1e-5, dampening=0.01, activation="relu"):
    """(compensated and compacted next weight, bias shift, S, t) for a producer [n, ...] and a next
    weight [rows, n * span]."""
    n = len(gamma)
    f = producer.reshape(n, -1).astype(np.float64)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    f = np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)
    mean, variance, factor = reference_moments(gamma.astype(np.float64), beta.astype(np.float64),
                                               var.astype(np.float64), eps, activation)
    cov = np.outer(factor, factor) * (f @ f.T)
    cov[np.diag_indices(n)] = variance
    k, p = np.flatnonzero(keep), np.flatnonzero(~keep)
    g = cov[np.ix_(k, k)].copy()
    trace = np.trace(g)
    s = np.zeros((len(k), len(p)))
    if trace > 0 and len(p):
        g[np.diag_indices(len(k))] += dampening * trace / len(k)
        s = np.linalg.solve(g, cov[np.ix_(k, p)])
    t = mean[p] - s.T @ mean[k]
    w = next_w.astype(np.float64).reshape(next_w.shape[0], n, span)
    shift = np.einsum("p,rpe->r", t, w[:, p])
    out = w[:, k] + np.einsum("kp,rpe->rke", s, w[:, p])
    return out.reshape(next_w.shape[0], -1), shift, s, t

"""Structured pruning from Python: golden selections, compaction equals masking on small models,
invariants, and bad input (an exception, nothing written)."""
import os

import numpy as np
import pytest

import prunekit as pk
from conftest import results_per_environment

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "vectors", "structures")
AXES = {0: "rows", 1: "cols", 2: "blocks"}
CRITERIA = {0: "l1", 1: "l2"}
REDUCTIONS = {0: "sum", 1: "mean", 2: "max"}
NORMALIZATIONS = {0: None, 1: "mean", 2: "max", 3: "sum", 4: "standard"}
MODES = {0: "per_group", 1: "global", 2: "uniform", 3: "threshold"}


def load_cases():
    cases = []
    with open(os.path.join(VECTORS, "cases.txt")) as f:
        for line in f:
            tokens = [t.split("=", 1) for t in line.split()]
            head = dict(tokens[:9])
            groups, current = [], None
            for key, value in tokens[9:]:
                if key == "group":
                    min_keep, stage, _ = (int(v) for v in value.split(","))
                    current = dict(min_keep=min_keep, stage=stage, members=[])
                    groups.append(current)
                else:
                    rows, cols, axis, span, block_cols, scored = (int(v) for v in value.split(","))
                    current["members"].append((rows, cols, axis, span, block_cols, scored))
            cases.append((head, groups))
    return cases


def build(head, groups):
    name = head["name"]
    out = []
    for i, g in enumerate(groups):
        members = []
        for j, (rows, cols, axis, span, block_cols, scored) in enumerate(g["members"]):
            t = np.fromfile(os.path.join(VECTORS, f"{name}.g{i}.m{j}.bin"), dtype=np.float32).reshape(rows, cols)
            if axis == 2:
                members.append(pk.Member(t, "blocks", block=(span, block_cols), scored=bool(scored)))
            else:
                members.append(pk.Member(t, AXES[axis], span, scored=bool(scored)))
        out.append(pk.Group(members, min_keep=g["min_keep"], stage=g["stage"]))
    return out


CASES = load_cases()


@pytest.mark.parametrize("head,groups", CASES, ids=[h["name"] for h, _ in CASES])
@pytest.mark.parametrize("threads", [1, 3])
def test_golden_selection(head, groups, threads):
    name = head["name"]
    built = build(head, groups)
    stages = None if head["stages"] == "-" else [float(v) for v in head["stages"].split(",")]
    keep = pk.select(built, float(head["ratio"]), mode=MODES[int(head["mode"])], criterion=CRITERIA[int(head["criterion"])],
                     reduction=REDUCTIONS[int(head["reduction"])], normalize=NORMALIZATIONS[int(head["normalization"])],
                     stage_values=stages, multiple=int(head["multiple"]), threads=threads)
    expected = np.fromfile(os.path.join(VECTORS, f"{name}.keep.bin"), dtype=np.uint8).astype(bool)
    np.testing.assert_array_equal(np.concatenate(keep), expected)
    scores = pk.structure_scores(built, criterion=CRITERIA[int(head["criterion"])],
                                 reduction=REDUCTIONS[int(head["reduction"])],
                                 normalize=NORMALIZATIONS[int(head["normalization"])], threads=threads)
    np.testing.assert_array_equal(np.concatenate(scores),
                                  np.fromfile(os.path.join(VECTORS, f"{name}.scores.bin"), dtype=np.float64))


def test_reference_reproduces_committed_vectors(tmp_path):
    import subprocess
    import sys
    subprocess.run([sys.executable, os.path.join(HERE, "..", "vectors", "structures_reference.py"), str(tmp_path)], check=True)
    for file in sorted(os.listdir(VECTORS)):
        with open(os.path.join(VECTORS, file), "rb") as a, open(tmp_path / file, "rb") as b:
            assert a.read() == b.read(), file


# ------------------------------------------------------------------------------------------
# Compacting equals masking, on small models written here.

rng = np.random.default_rng(7)


def test_mlp_compaction_equals_masking():
    w1, b1 = rng.standard_normal((32, 16)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    w2, b2 = rng.standard_normal((8, 32)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    x = rng.standard_normal((20, 16)).astype(np.float32)
    stats = pk.Stats(16)
    stats.update(x)
    g = pk.Group([pk.Member(w1, "rows", criterion="wanda", features=stats), pk.Member(b1, scored=False),
                  pk.Member(w2, "cols")])
    keep, = pk.select([g], 0.375)
    assert keep.sum() == 32 - int(32 * 0.375)
    (w1c, b1c, w2c), kept = pk.compact(g, keep)
    assert w1c.shape == (20, 16) and b1c.shape == (20,) and w2c.shape == (8, 20)
    np.testing.assert_array_equal(kept, np.flatnonzero(keep))

    def forward(a, b, c, d):
        return np.maximum(x @ a.T + b, 0) @ c.T + d

    masked = forward(w1 * keep[:, None], b1 * keep, w2 * keep[None, :], b2)
    np.testing.assert_allclose(forward(w1c, b1c, w2c, b2), masked, rtol=1e-5, atol=1e-5)
    # apply_structures gives the masked weights in place.
    a, b, c = w1.copy(), b1.copy(), w2.copy()
    pk.apply_structures(pk.Group([pk.Member(a, "rows"), pk.Member(b), pk.Member(c, "cols")]), keep)
    np.testing.assert_array_equal(a, w1 * keep[:, None])
    np.testing.assert_array_equal(c, w2 * keep[None, :])


def conv2d(x, w, b):
    """x [N, C, H, W], w [O, C, 3, 3], padding 1."""
    n, c, h, wd = x.shape
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([p[:, :, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=2)  # N C 9 H W
    cols = cols.reshape(n, c * 9, h * wd)
    out = np.einsum("ok,nkp->nop", w.reshape(w.shape[0], -1), cols)
    return out.reshape(n, w.shape[0], h, wd) + b[None, :, None, None]


def test_conv_bn_compaction_equals_masking():
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    c1, b1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    gamma, beta = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    mean, var = rng.standard_normal(8).astype(np.float32), (rng.random(8) + 0.5).astype(np.float32)
    c2, b2 = rng.standard_normal((4, 8, 3, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)

    def forward(c1, b1, gamma, beta, mean, var, c2, b2):
        y = conv2d(x, c1, b1)
        y = (y - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5) * gamma[None, :, None, None] \
            + beta[None, :, None, None]
        return conv2d(np.maximum(y, 0), c2, b2)

    members = [pk.Member(c1, "rows", scored=False), pk.Member(b1, scored=False), pk.Member(gamma),
               pk.Member(beta, scored=False), pk.Member(mean, scored=False), pk.Member(var, scored=False),
               pk.Member(c2, "cols", scored=False)]
    g = pk.Group(members)
    keep, = pk.select([g], 0.5, criterion="l1")   # network slimming: |gamma|
    np.testing.assert_array_equal(keep, np.abs(gamma) >= np.sort(np.abs(gamma))[4])
    outs, kept = pk.compact(g, keep)
    assert outs[0].shape == (4, 3, 3, 3) and outs[6].shape == (4, 4, 3, 3) and outs[2].shape == (4,)
    k = keep.astype(np.float32)
    # Masking a BN channel: the pruned channel's output is zero, so zero gamma and beta.
    masked = forward(c1 * k[:, None, None, None], b1 * k, gamma * k, beta * k, mean, var, c2 * k[None, :, None, None], b2)
    np.testing.assert_allclose(forward(*outs, b2), masked, rtol=1e-4, atol=1e-4)


def test_attention_heads_compaction_equals_masking():
    heads, d, model, t = 4, 8, 32, 6
    x = rng.standard_normal((t, model)).astype(np.float32)
    q, k, v = (rng.standard_normal((heads * d, model)).astype(np.float32) for _ in range(3))
    o = rng.standard_normal((model, heads * d)).astype(np.float32)

    def attention(q, k, v, o):
        h = q.shape[0] // d
        Q, K, V = (x @ w.T for w in (q, k, v))
        outs = []
        for i in range(h):
            s = Q[:, i * d:(i + 1) * d] @ K[:, i * d:(i + 1) * d].T / np.sqrt(d)
            p = np.exp(s - s.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            outs.append(p @ V[:, i * d:(i + 1) * d])
        return np.concatenate(outs, 1) @ o.T

    g = pk.Group([pk.Member(q, "rows", d), pk.Member(k, "rows", d), pk.Member(v, "rows", d), pk.Member(o, "cols", d)])
    keep, = pk.select([g], 0.5)
    assert keep.sum() == 2
    (qc, kc, vc, oc), kept = pk.compact(g, keep)
    assert qc.shape == (2 * d, model) and oc.shape == (model, 2 * d)
    rows = np.repeat(keep, d).astype(np.float32)
    masked = attention(q, k, v * rows[:, None], o * rows[None, :])
    np.testing.assert_allclose(attention(qc, kc, vc, oc), masked, rtol=1e-4, atol=1e-5)


def test_compensation_reduces_output_error():
    w1 = rng.standard_normal((24, 12)).astype(np.float32)
    w2 = rng.standard_normal((6, 24)).astype(np.float32)
    x = rng.standard_normal((200, 12)).astype(np.float32)
    h = np.maximum(x @ w1.T, 0)
    h[:, :12] += 0.5 * h[:, 12:]           # correlated channels, so the kept ones can stand in
    hs = pk.Stats(24, gram=True)
    hs.update(h)
    g = pk.Group([pk.Member(w1, "rows"), pk.Member(w2, "cols")])
    keep, = pk.select([g], 0.5)
    (_, plain), _ = pk.compact(g, keep)
    (_, comp), _ = pk.compact(g, keep, compensate={"member": 1, "hessian": hs, "precision": "float64"})
    ref = h @ w2.T
    err_plain = np.linalg.norm(h[:, keep] @ plain.T - ref)
    err_comp = np.linalg.norm(h[:, keep] @ comp.T - ref)
    assert err_comp < 0.9 * err_plain
    # It is the least-squares solution over the kept inputs (up to the 1% dampening).
    best = np.linalg.lstsq(h[:, keep].astype(np.float64), ref, rcond=None)[0].T
    assert err_comp <= np.linalg.norm(h[:, keep] @ best.T - ref) * 1.05


def test_torch_members_compact_to_torch():
    torch = pytest.importorskip("torch")
    w1 = torch.randn(16, 8)
    w2 = torch.randn(4, 16, dtype=torch.bfloat16)
    g = pk.Group([pk.Member(w1, "rows"), pk.Member(w2, "cols")])
    keep, = pk.select([g], 0.5)
    (a, b), _ = pk.compact(g, keep)
    assert isinstance(a, torch.Tensor) and a.shape == (8, 8) and b.dtype == torch.bfloat16 and b.shape == (4, 8)
    assert torch.equal(b, w2[:, torch.from_numpy(keep)])


# ------------------------------------------------------------------------------------------
# Invariants

def random_groups(sizes, min_keep=0, stages=None):
    return [pk.Group([pk.Member(rng.standard_normal((n, 5)).astype(np.float32), "rows")], min_keep=min_keep,
                     stage=0 if stages is None else stages[i]) for i, n in enumerate(sizes)]


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.7, 0.775])
def test_global_ranking_is_global_and_respects_minimum(ratio):
    groups = random_groups([7, 20, 13], min_keep=3)
    keep = pk.select(groups, ratio, mode="global")
    scores = pk.structure_scores(groups)
    assert sum(int((~k).sum()) for k in keep) == int(40 * ratio)
    assert all(int(k.sum()) >= 3 for k in keep)
    # Global: every pruned structure scores at most every kept one of a group above its minimum.
    pruned_max = max((s[~k].max() for s, k in zip(scores, keep) if (~k).any()), default=-np.inf)
    for s, k in zip(scores, keep):
        if k.sum() > 3:
            assert s[k].min() >= pruned_max


def test_uniform_counts_are_uniform_and_multiples_hold():
    groups = random_groups([40, 33, 57])
    keep = pk.select(groups, 0.6, mode="uniform", multiple=8)
    counts = {int(k.sum()) for k in keep}
    assert len(counts) == 1 and counts.pop() % 8 == 0
    keep = pk.select(random_groups([40, 33, 57]), 0.3, multiple=16)
    for k, n in zip(keep, (40, 33, 57)):
        assert int(k.sum()) % 16 == 0 or int(k.sum()) == n


def test_results_do_not_depend_on_threads():
    groups = [pk.Group([pk.Member(rng.standard_normal((300, 70)).astype(np.float32), "rows"),
                        pk.Member(rng.standard_normal((50, 300)).astype(np.float32), "cols")])]
    a = pk.structure_scores(groups, threads=1)[0]
    for threads in (2, 3, 8):
        np.testing.assert_array_equal(pk.structure_scores(groups, threads=threads)[0], a)


def test_activation_criteria():
    acts = np.maximum(rng.standard_normal((100, 12)), 0).astype(np.float32)
    acts[:, 3] = 0
    stats = pk.Stats(12)
    stats.update(acts)
    np.testing.assert_allclose(stats.mean_abs(), np.abs(acts.astype(np.float64)).mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.zero_fraction(), (acts == 0).mean(0))
    g = pk.Group([pk.Member(rng.standard_normal((12, 4)).astype(np.float32), "rows")], activations=stats)
    s, = pk.structure_scores([g], criterion="nonzero_fraction")
    np.testing.assert_allclose(s, 1 - (acts == 0).mean(0))
    keep, = pk.select([g], 1 / 12, criterion="mean_abs_activation")
    assert not keep[3] and keep.sum() == 11
    restored = pk.Stats.from_bytes(stats.to_bytes())
    np.testing.assert_array_equal(restored.mean_abs(), stats.mean_abs())


def test_key_channels_match_numpy():
    q = rng.standard_normal((30, 4 * 16)).astype(np.float32)   # 4 query heads
    k = rng.standard_normal((50, 2 * 16)).astype(np.float32)   # 2 KV heads (GQA)
    keep, scores = pk.key_channels(q, k, heads=2, ratio=0.25)
    qn = (q.astype(np.float64) ** 2).sum(0).reshape(2, 2, 16).sum(1)
    kn = (k.astype(np.float64) ** 2).sum(0).reshape(2, 16)
    np.testing.assert_allclose(scores, (np.sqrt(qn) * np.sqrt(kn)).reshape(-1), rtol=1e-12)
    for h in range(2):
        s = scores[h * 16:(h + 1) * 16]
        expected = np.ones(16, bool)
        expected[np.argsort(s, kind="stable")[:4]] = False
        np.testing.assert_array_equal(keep[h * 16:(h + 1) * 16], expected)


def test_block_masks():
    w = rng.standard_normal((64, 48)).astype(np.float32)
    m, = pk.block_masks([w], (16, 16), 0.5)
    blocks = m.reshape(4, 16, 3, 16).transpose(0, 2, 1, 3).reshape(12, -1)
    assert (blocks.all(1) | ~blocks.any(1)).all() and int((~blocks.all(1)).sum()) == 6


# ------------------------------------------------------------------------------------------
# Bad input: an exception, nothing written

def test_bad_input():
    w1 = rng.standard_normal((12, 6)).astype(np.float32)
    w2 = rng.standard_normal((4, 10)).astype(np.float32)
    with pytest.raises(ValueError, match="disagree"):
        pk.select([pk.Group([pk.Member(w1, "rows"), pk.Member(w2, "cols")])])
    with pytest.raises(ValueError, match="whole number"):
        pk.select([pk.Group([pk.Member(w1, "rows", 5)])])
    with pytest.raises(ValueError, match="axis"):
        pk.Member(w1, "depth")
    with pytest.raises(ValueError, match="impossible"):
        pk.select([pk.Group([pk.Member(w1, "rows")], min_keep=10)], 0.5)
    with pytest.raises(ValueError, match="impossible"):
        pk.select([pk.Group([pk.Member(w1, "rows")], min_keep=10), pk.Group([pk.Member(w1, "rows")], min_keep=10)],
                  0.5, mode="global")
    with pytest.raises(ValueError, match="min_keep"):
        pk.select([pk.Group([pk.Member(w1, "rows")], min_keep=13)], 0.5)
    with pytest.raises(ValueError, match="stage"):
        pk.select([pk.Group([pk.Member(w1, "rows")], stage=2)], stage_values=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pk.select([pk.Group([pk.Member(w1, "rows")])], 1.5)
    bad = w1.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="row 3, column 2"):
        pk.select([pk.Group([pk.Member(bad, "rows")])])
    # Compaction into buffers that are too small, or overlapping, writes nothing.
    g = pk.Group([pk.Member(w1, "rows"), pk.Member(rng.standard_normal((3, 12)).astype(np.float32), "cols")])
    keep, = pk.select([g], 0.5)
    args, alive = g._args()
    small = np.full((5, 6), 7, np.float32)
    fine = np.full((3, 6), 7, np.float32)
    indices = np.full(6, -1, np.int64)
    with pytest.raises(ValueError, match="BUFFER_TOO_SMALL"):
        pk._prunekit.compact_group(args, keep.astype(np.uint8), [small, fine], indices)
    assert (small == 7).all() and (fine == 7).all() and (indices == -1).all()
    with pytest.raises(ValueError, match="overlaps"):
        pk._prunekit.compact_group(args, keep.astype(np.uint8), [w1[:6], fine], indices)
    with pytest.raises(ValueError, match="0 or 1|0/1"):
        pk.compact(g, np.full(12, 2))
    with pytest.raises(ValueError, match="impossible"):
        pk.select(random_groups([7, 20, 13], min_keep=3), 0.8, mode="global")   # 32 to prune, 31 can go
    with pytest.raises(ValueError, match="keeps no structure"):
        pk.compact(g, np.zeros(12, bool))
    blocks = pk.Group([pk.Member(w1, "blocks", block=(4, 3))])
    with pytest.raises(ValueError, match="block"):
        pk.compact(blocks, np.ones(6, bool))
    ro = w1.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        pk.apply_structures(pk.Group([pk.Member(ro, "rows")]), keep)
    with pytest.raises(ValueError, match="activation statistics|activations"):
        pk.select([pk.Group([pk.Member(w1, "rows")])], criterion="mean_abs_activation")
    with pytest.raises(ValueError, match="heads"):
        pk.key_channels(w1, w2, heads=3, ratio=0.5)


def test_taylor_and_wanda_structure_scores_sum_entry_scores():
    w = rng.standard_normal((10, 7)).astype(np.float32)
    g = rng.standard_normal((10, 7)).astype(np.float32)
    norms = (rng.random(7) + 0.5).astype(np.float32)
    taylor, = pk.structure_scores([pk.Group([pk.Member(w, "rows", criterion="taylor", gradient=g)])], criterion="l1")
    np.testing.assert_allclose(taylor, np.abs(w * g).astype(np.float64).sum(1), rtol=1e-12)
    wanda, = pk.structure_scores([pk.Group([pk.Member(w, "cols", criterion="wanda", features=norms)])], criterion="l2")
    entry = (np.abs(w) * norms).astype(np.float64)
    np.testing.assert_allclose(wanda, np.sqrt((entry ** 2).sum(0)), rtol=1e-12)
    # Reductions across members and per-group normalisation.
    a = pk.Group([pk.Member(w, "rows"), pk.Member(w.T.copy(), "cols")])
    s_sum, = pk.structure_scores([a], criterion="l1")
    s_max, = pk.structure_scores([a], criterion="l1", reduction="max")
    s_norm, = pk.structure_scores([a], criterion="l1", normalize="max")
    np.testing.assert_allclose(s_sum, 2 * s_max, rtol=1e-15)
    assert s_norm.max() == 1.0


def test_wide_and_baseline_kernels_give_the_same_scores(tmp_path):
    """Where the CPU has AVX2, structure sums use wide kernels; PRUNEKIT_SIMD=baseline forces
    the baseline loops. Scores (float64) must be the same bit for bit, so that selections do
    not depend on the machine. Each setting runs in its own process (it is read once)."""
    script = (
        "import numpy as np, prunekit as pk, sys\n"
        "rng = np.random.default_rng(5)\n"
        "out = {}\n"
        "for rows, cols in [(67, 300), (130, 33), (9, 1031)]:\n"
        "    a = (rng.standard_normal((rows, cols)) * 1e3).astype(np.float32)\n"
        "    b = (rng.standard_normal((cols, rows)) * 1e-3).astype(np.float32)\n"
        "    f = np.abs(rng.standard_normal(cols)).astype(np.float32)\n"
        "    for crit in ('l1', 'l2'):\n"
        "        g = [pk.Group([pk.Member(a, 'rows'), pk.Member(b, 'cols')]),\n"
        "             pk.Group([pk.Member(a, 'rows', criterion='wanda', features=f)]),\n"
        "             pk.Group([pk.Member(a, 'blocks', block=(4, 8))])]\n"
        "        for i, s in enumerate(pk.structure_scores(g, criterion=crit, threads=2)):\n"
        "            out[f'{rows}x{cols}-{crit}-{i}'] = s\n"
        "np.savez(sys.argv[1], **out)\n"
    )
    baseline, default = results_per_environment(script, tmp_path, "PRUNEKIT_SIMD", ("baseline", "default"))
    assert sorted(baseline.files) == sorted(default.files) and len(baseline.files) == 18
    for key in baseline.files:
        assert baseline[key].tobytes() == default[key].tobytes(), key

"""N:M channel permutations: the search against an independent numpy reference, applying a
permutation to a structured group, and the model-level option of prunekit.torch."""
import numpy as np
import pytest

import prunekit
import permutation_reference as ref


def _scores(w, features=None):
    s = np.abs(w.astype(np.float32))
    return s if features is None else s * np.asarray(features, dtype=np.float32)


@pytest.mark.parametrize("rows,cols,pattern,segment,budget", [
    (8, 32, (2, 4), 0, None), (6, 48, (1, 4), 16, None), (5, 32, (2, 8), 0, None), (8, 32, (2, 4), 0, 3),
    (7, 64, (2, 4), 32, 5), (4, 24, (3, 4), 0, None)])
def test_search_matches_the_reference(rows, cols, pattern, segment, budget):
    for seed in range(2):
        rng = np.random.default_rng(100 + seed)
        w = rng.standard_normal((rows, cols)).astype(np.float32)
        features = rng.uniform(0.1, 3.0, cols).astype(np.float32)
        kwargs = {} if budget is None else dict(max_swaps=budget)
        found = prunekit.channel_permutation(w, pattern, criterion="wanda", features=features, segment=segment, **kwargs)
        expected, before, after = ref.channel_permutation(_scores(w, features), *pattern, segment=segment,
                                                          **kwargs)
        np.testing.assert_array_equal(found.permutation, expected)
        assert found.kept_before == pytest.approx(before, rel=1e-12)
        assert found.kept_after == pytest.approx(after, rel=1e-12)


def test_a_permutation_that_keeps_at_least_as_much():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 128)).astype(np.float32)
    for segment in (0, 32):
        found = prunekit.channel_permutation(w, "2:4", segment=segment)
        p = found.permutation
        assert p.dtype == np.int64 and np.array_equal(np.sort(p), np.arange(128))
        if segment:   # columns stay inside their segment
            assert (p // segment == np.arange(128) // segment).all()
        assert found.kept_after > found.kept_before
        # What the N:M mask of the permuted weight keeps, computed from the mask itself.
        permuted = w[:, p]
        kept = np.abs(permuted)[prunekit.mask(permuted, pattern="2:4")].astype(np.float64).sum()
        unpermuted = np.abs(w)[prunekit.mask(w, pattern="2:4")].astype(np.float64).sum()
        assert kept == pytest.approx(found.kept_after, rel=1e-9)
        assert unpermuted == pytest.approx(found.kept_before, rel=1e-9)


def test_deterministic_across_runs_and_threads():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((24, 96)).astype(np.float32)
    results = [prunekit.channel_permutation(w, "2:4", threads=t) for t in (1, 2, 3, 1)]
    for r in results[1:]:
        np.testing.assert_array_equal(r.permutation, results[0].permutation)
        assert r.kept_after == results[0].kept_after
    seg = [prunekit.channel_permutation(w, "2:4", segment=16, threads=t).permutation for t in (1, 2, 3)]
    for r in seg[1:]:
        np.testing.assert_array_equal(r, seg[0])


def test_budget_limits_the_swaps():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((16, 64)).astype(np.float32)
    one = prunekit.channel_permutation(w, "2:4", max_swaps=1)
    assert (one.permutation != np.arange(64)).sum() == 2      # exactly one exchange
    full = prunekit.channel_permutation(w, "2:4")
    assert full.kept_after >= one.kept_after > one.kept_before


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_swaps=0), "budget"), (dict(max_swaps=-1), "max_swaps"), (dict(time_limit=-1.0), "time limit"),
    (dict(time_limit=float("nan")), "time limit"), (dict(segment=6), "segment"), (dict(segment=-4), "segment"),
    (dict(pattern="4:4"), "N:M"), (dict(pattern="2:3"), "divide"), (dict(pattern=(2, 128)), "64"),
    (dict(threads=-1), "thread")])
def test_bad_input_is_a_clear_error(kwargs, message):
    w = np.random.default_rng(0).standard_normal((4, 40)).astype(np.float32)
    before = w.copy()
    kwargs = dict(kwargs)
    pattern = kwargs.pop("pattern", "2:4")
    with pytest.raises(ValueError, match=message):
        prunekit.channel_permutation(w, pattern, **kwargs)
    assert w.tobytes() == before.tobytes()


def test_non_finite_scores_are_an_error():
    w = np.ones((4, 8), dtype=np.float32)
    w[1, 3] = np.nan
    with pytest.raises(ValueError):
        prunekit.channel_permutation(w, "2:4")


def test_permute_group_preserves_the_function():
    rng = np.random.default_rng(8)
    w1 = rng.standard_normal((16, 6)).astype(np.float32)      # producer [hidden, in]
    b1 = rng.standard_normal(16).astype(np.float32)
    w2 = rng.standard_normal((5, 16)).astype(np.float32)      # consumer [out, hidden]
    x = rng.standard_normal((10, 6)).astype(np.float32)
    y = np.maximum(x @ w1.T + b1, 0) @ w2.T
    found = prunekit.channel_permutation(w2, "2:4")
    p = found.permutation
    originals = (w1.copy(), b1.copy(), w2.copy())
    prunekit.permute(prunekit.Group([prunekit.Member(w1, "rows"), prunekit.Member(b1), prunekit.Member(w2, "cols")]), p)
    np.testing.assert_array_equal(w1, originals[0][p])
    np.testing.assert_array_equal(b1, originals[1][p])
    np.testing.assert_array_equal(w2, originals[2][:, p])
    np.testing.assert_allclose(np.maximum(x @ w1.T + b1, 0) @ w2.T, y, rtol=1e-5, atol=1e-5)


def test_permute_group_spans_and_dtypes():
    q = np.arange(8 * 3, dtype=np.float16).reshape(8, 3)       # 4 structures of 2 rows
    o = np.arange(3 * 8, dtype=np.float64).reshape(3, 8)       # 4 structures of 2 columns
    q0, o0 = q.copy(), o.copy()
    p = np.array([2, 0, 3, 1])
    prunekit.permute(prunekit.Group([prunekit.Member(q, "rows", span=2), prunekit.Member(o, "cols", span=2)]), p)
    rows = np.concatenate([np.arange(2 * i, 2 * i + 2) for i in p])
    np.testing.assert_array_equal(q, q0[rows])
    np.testing.assert_array_equal(o, o0[:, rows])


@pytest.mark.parametrize("permutation,error", [([0, 1, 1, 2], "repeats"), ([0, 1, 2, 4], "outside"),
                                               ([0, 1, 2], "entries"), ([[0, 1, 2, 3]], "1-D")])
def test_permute_group_rejects_bad_permutations_and_writes_nothing(permutation, error):
    w1 = np.arange(16, dtype=np.float32).reshape(4, 4)
    w2 = np.arange(12, dtype=np.float32).reshape(3, 4)
    before = (w1.copy(), w2.copy())
    group = prunekit.Group([prunekit.Member(w1, "rows"), prunekit.Member(w2, "cols")])
    with pytest.raises(ValueError, match=error):
        prunekit.permute(group, np.array(permutation))
    assert w1.tobytes() == before[0].tobytes() and w2.tobytes() == before[1].tobytes()


def test_permute_rejects_blocks():
    w = np.zeros((4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="blocks"):
        prunekit.permute(prunekit.Group([prunekit.Member(w, "blocks", block=(2, 2))]), np.arange(4))


def test_permuted_stats():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((50, 8)) * np.arange(1, 9)
    stats = prunekit.Stats(8, gram=True)
    stats.update(x)
    p = np.array([3, 1, 7, 0, 2, 6, 5, 4])
    direct = prunekit.Stats(8, gram=True)
    direct.update(x[:, p])
    view = prunekit.permute_stats(stats, p)
    assert isinstance(view, prunekit.Stats) and view.count == 50 and view.features == 8
    np.testing.assert_allclose(view.l2_norm(), direct.l2_norm(), rtol=1e-12)
    np.testing.assert_allclose(view.mean(), direct.mean(), rtol=1e-12)
    np.testing.assert_allclose(view.gram(), direct.gram(), rtol=1e-12)
    np.testing.assert_allclose(view.gram(centered=True), direct.gram(centered=True), rtol=1e-9, atol=1e-9)
    with pytest.raises(TypeError):
        view.update(x)
    with pytest.raises(ValueError):
        prunekit.permute_stats(stats, [0, 1, 2])


# ------------------------------------------------------------------------------------------
# prunekit.torch

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _small_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=32)
    model = transformers.BertModel(config).eval()
    with torch.no_grad():       # non-trivial biases, so that a permutation that forgot them would show
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.bias.normal_(0, 0.5)
    gen = torch.Generator().manual_seed(1)
    batches = [dict(input_ids=torch.randint(0, 50, (4, 12), generator=gen),
                    attention_mask=torch.ones(4, 12, dtype=torch.long)) for _ in range(2)]
    return model, batches


def test_permuting_a_bert_keeps_its_function_and_the_mask_keeps_more():
    import copy

    import prunekit.torch as pkt

    model, batches = _small_bert()
    with torch.no_grad():
        dense = [model(**b).last_hidden_state for b in batches]
    couplings = pkt._couplings(model)
    assert sorted(couplings) == [f"encoder.layer.{i}.{t}" for i in range(2)
                                 for t in ("attention.output.dense", "output.dense")]
    assert couplings["encoder.layer.0.attention.output.dense"].segment == 8
    # Permute without pruning: the same function.
    permuted = copy.deepcopy(model)
    stats = pkt.calibrate(permuted, batches)
    targets = {n: pkt._Target(n, permuted.get_submodule(n)) for n in couplings}
    plans = pkt._plans(targets, "wanda", None, "2:4", None, None, dict(permute=True))
    kept = pkt._permute_inputs(permuted, list(targets), targets, plans, stats, pkt._couplings(permuted))
    assert set(kept) == set(couplings)
    assert all(after >= before for before, after, _ in kept.values()) and any(a > b for b, a, _ in kept.values())
    moved = permuted.get_submodule("encoder.layer.0.output.dense").weight
    assert not torch.equal(moved, model.get_submodule("encoder.layer.0.output.dense").weight)
    with torch.no_grad():
        for b, d in zip(batches, dense):
            torch.testing.assert_close(permuted(**b).last_hidden_state, d, rtol=1e-5, atol=1e-5)
    # Pruning with permute=True: the same masks' structure, more importance kept, layers reported.
    pruned = copy.deepcopy(model)
    report = pkt.prune(pruned, batches, method="wanda", pattern="2:4", permute=True, progress=False)
    reported = {layer.name: layer.permutation for layer in report if layer.permutation is not None}
    assert set(reported) == set(couplings)
    for name in reported:
        w = pruned.get_submodule(name).weight.detach().numpy()
        assert ((w.reshape(w.shape[0], -1, 4) != 0).sum(2) <= 2).all()
    plain = copy.deepcopy(model)
    pkt.prune(plain, batches, method="wanda", pattern="2:4", progress=False)
    with torch.no_grad():
        assert not torch.equal(pruned(**batches[0]).last_hidden_state, plain(**batches[0]).last_hidden_state)


def test_permute_option_errors():
    import prunekit.torch as pkt

    model, batches = _small_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="N:M"):
        pkt.prune(model, batches, method="wanda", sparsity=0.5, permute=True, progress=False)
    with pytest.raises(ValueError, match="budget"):
        pkt.prune(model, batches, method="wanda", pattern="2:4", permute=dict(max_swaps=0), progress=False)
    with pytest.raises(ValueError, match="permute takes no option"):
        pkt.prune(model, batches, method="wanda", pattern="2:4", permute=dict(swaps=3), progress=False)
    with pytest.raises(ValueError, match="no pruned module"):
        pkt.prune(model, batches, method="wanda", pattern="2:4", permute=True, targets=r"query", progress=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_compensate_bias_folds_the_mean_shift():
    import copy

    import prunekit.torch as pkt

    model, batches = _small_bert()
    for method in ("wanda", "sparsegpt"):
        pruned = copy.deepcopy(model)
        stats = pkt.calibrate(model, batches, targets=r"^encoder\.")
        pkt.prune(pruned, batches, method=method, sparsity=0.5, compensate_bias=True, sequential=False,
                  targets=r"^encoder\.", progress=False)
        for name, s in stats.items():
            dense_m, pruned_m = model.get_submodule(name), pruned.get_submodule(name)
            shift = (dense_m.weight - pruned_m.weight).detach().double() @ torch.from_numpy(s.mean())
            torch.testing.assert_close((pruned_m.bias - dense_m.bias).detach().double(), shift, rtol=1e-4, atol=1e-5)
            assert (pruned_m.weight == 0).float().mean() >= 0.5 - 1e-9
    with pytest.raises(ValueError, match="compensate_bias"):
        pkt.prune(copy.deepcopy(model), batches, method="magnitude", compensate_bias=True, progress=False)

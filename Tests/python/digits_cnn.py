"""A small CNN (conv -> BN -> ReLU, three times, then a linear classifier) trained on scikit-learn's
handwritten digits (8x8, shipped with scikit-learn: no download), and channel pruning of every conv
through PruneKit's structured groups, uncompensated, with data-free compensation (UDFC) or with
the data-driven prune_columns compensation. Used by test_data_free.py and by
examples/python/digits_udfc.py."""
import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits

import prunekit


class DigitsCNN(nn.Module):
    def __init__(self, widths=(16, 32, 32)):
        super().__init__()
        a, b, c = widths
        self.conv1, self.bn1 = nn.Conv2d(1, a, 3, padding=1), nn.BatchNorm2d(a)
        self.conv2, self.bn2 = nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b)
        self.conv3, self.bn3 = nn.Conv2d(b, c, 3, padding=1), nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean((2, 3)))

    def chains(self):
        """(conv, bn, next layer) of every prunable conv, in order."""
        return [(self.conv1, self.bn1, self.conv2), (self.conv2, self.bn2, self.conv3), (self.conv3, self.bn3, self.fc)]


@dataclass
class DigitsData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def accuracy(self, model):
        model.eval()
        with torch.no_grad():
            return float((model(self.test_x).argmax(1) == self.test_y).float().mean())


def digits_data(seed=0, train=1300):
    d = load_digits()
    x = d.images.astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = order[:train], order[train:]
    x = (x - x[tr].mean()) / x[tr].std()
    t = torch.from_numpy(x[:, None])
    y = torch.from_numpy(d.target.astype(np.int64))
    return DigitsData(t[tr], y[tr], t[te], y[te])


def train_digits_cnn(seed=0, epochs=8):
    """(model, data): the CNN after a few epochs of Adam; seeded, one thread, a few seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        data = digits_data(seed)
        model = DigitsCNN()
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(data.train_y), generator=g)
            for i in range(0, len(perm), 64):
                b = perm[i:i + 64]
                opt.zero_grad()
                F.cross_entropy(model(data.train_x[b]), data.train_y[b]).backward()
                opt.step()
        model.eval()
        return model, data
    finally:
        torch.set_num_threads(threads)


def _next_inputs(model, layer, x):
    """The inputs of `layer` on x as rows of features: im2col patches for a conv (columns in the
    weight's [in, kh, kw] order), the pooled vector for the linear layer."""
    seen = {}
    handle = layer.register_forward_pre_hook(lambda module, inputs: seen.__setitem__("x", inputs[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    v = seen["x"]
    if isinstance(layer, nn.Conv2d):
        v = F.unfold(v, layer.kernel_size, padding=layer.padding).transpose(1, 2).reshape(-1, v.shape[1] * 9)
    return v.double().numpy()


def prune_digits_cnn(model, data, ratio, method, calibration=256, layers=(0, 1, 2)):
    """A pruned copy: ratio of the channels of every conv removed (lowest filter L2 norm, the
    structured groups' selection), conv by conv; method "none", "data_free" (UDFC from the
    weights and batch-norm statistics) or "prune_columns" (least squares on the next layer's
    input Gram matrix from `calibration` training images, sequentially). layers: which convs
    (0, 1, 2) are pruned."""
    model = copy.deepcopy(model).eval()
    for index, (conv, bn, nxt) in enumerate(model.chains()):
        if index not in layers:
            continue
        arrays = [conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var, nxt.weight]
        arrays = [a.detach().numpy().copy() for a in arrays]
        members = [prunekit.Member(arrays[0], "rows")] + [prunekit.Member(a, scored=False) for a in arrays[1:6]]
        members.append(prunekit.Member(arrays[6], "cols", scored=False))
        group = prunekit.Group(members)
        keep, = prunekit.select([group], ratio)
        next_bias = nxt.bias.detach().numpy().copy()
        if method == "none":
            outs, _ = prunekit.compact(group, keep)
        elif method == "data_free":
            outs, _ = prunekit.compact(group, keep, compensate=dict(
                method="data_free", producer=0, next=6, batch_norm=(2, 3, 4, 5), eps=bn.eps, next_bias=next_bias))
        elif method == "prune_columns":
            x = _next_inputs(model, nxt, data.train_x[:calibration])
            stats = prunekit.Stats(x.shape[1], gram=True)
            stats.update(x)
            outs, _ = prunekit.compact(group, keep, compensate=dict(member=6, hessian=stats))
        else:
            raise ValueError(method)
        kept = int(np.count_nonzero(keep))
        with torch.no_grad():
            conv.weight = nn.Parameter(torch.from_numpy(outs[0]))
            conv.bias = nn.Parameter(torch.from_numpy(outs[1]))
            conv.out_channels = kept
            bn.weight, bn.bias = nn.Parameter(torch.from_numpy(outs[2])), nn.Parameter(torch.from_numpy(outs[3]))
            bn.running_mean, bn.running_var = torch.from_numpy(outs[4]), torch.from_numpy(outs[5])
            bn.num_features = kept
            nxt.weight = nn.Parameter(torch.from_numpy(outs[6]))
            nxt.bias = nn.Parameter(torch.from_numpy(next_bias))
            if isinstance(nxt, nn.Conv2d):
                nxt.in_channels = kept
            else:
                nxt.in_features = kept
    return model

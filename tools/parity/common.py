"""Deterministic data shared by the goldens and the tests, and mmcv's ConvModule."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def noise(shape, seed):
    """Values in [-1, 1): a murmur3-style finaliser of (k * golden + seed * c) over the flat index k,
    all in wrapping uint32 arithmetic, then u / 2^32 * 2 - 1 rounded once to float32. Exact in any
    language with uint32 multiply (JS: Math.imul), so the TypeScript side regenerates it bit for bit.
    Returned as float32 values in a float64 tensor."""
    n = int(np.prod(shape))
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint32) * np.uint32(0x9E3779B1) + np.uint32((seed * 0x85EBCA77) & 0xFFFFFFFF)
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x7FEB352D)
        x ^= x >> np.uint32(15)
        x *= np.uint32(0x846CA68B)
        x ^= x >> np.uint32(16)
    v = (x.astype(np.float64) / 4294967296.0 * 2.0 - 1.0).astype(np.float32)
    return torch.from_numpy(v.reshape(shape)).double()


def randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float32)


def uniform(gen, lo, hi, *shape):
    return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float32)


class ConvModule(nn.Module):
    """mmcv ConvModule as mmseg's heads use it: conv (no bias) -> bn -> relu."""

    def __init__(self, cin, cout, k, padding=0, dilation=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=padding, dilation=dilation, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))

#!/usr/bin/python3
"""Writes the PyTorch parity goldens in test/fixtures/parity/.

Run once with Debian's PyTorch (apt-get install python3-torch) and commit the output:

    /usr/bin/python3 tools/make_parity_goldens.py            # writes test/fixtures/parity/*.safetensors
    /usr/bin/python3 tools/make_parity_goldens.py --out DIR

The tests (test/parity-*.test.ts) only read the files; they never need PyTorch.

The PyTorch references are our own small re-implementations of the originals' semantics, written for
this purpose, in tools/parity/ (reference.py builds one from a segdist model config through explicit
tables keyed by backbone.type and head.type). Module attribute names are chosen so that state_dict()
keys are segdist's (mmseg's where mmseg has the model).

Everything is deterministic (a rerun writes byte-identical files, with Debian's reference BLAS; see
test/fixtures/parity/README.md): weights come from seeded
torch.Generators, inputs from noise() below; the reference results are computed in float64 from those
exactly representable values and rounded to float32 once, so the goldens carry (almost) no rounding
error of their own and a parity test measures the error of the implementation under test alone.

Inputs and loss weights are not stored: they come from noise(shape, seed), an integer hash of the flat
row-major (NCHW) index that both languages evaluate exactly (uint32 arithmetic, then one rounding to
float32), so they cost no bytes. Every loss is sum(output * noise(output.shape, seed)). The
TypeScript twin is noise() in test/fixtures/parity/goldens.ts. Weights are stored, as float16 values
(every weight and BN buffer is rounded to a float16-representable value before the goldens are
computed, so F16 storage is exact and halves the bytes).

File format: safetensors (8-byte little-endian header length, JSON header, raw little-endian data),
written by hand below so no extra Python package is needed. Metadata (__metadata__) holds the case's
configuration as JSON strings.
"""

import argparse
import json
import math
import os
import struct

import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity.common import noise, randn, uniform  # noqa: E402
from parity.reference import build_reference, merge  # noqa: E402

# ----------------------------------------------------------------------------------------------------
# safetensors writer


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, np.ndarray float32 or int32), kept in this order."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    chunks = []
    offset = 0
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr)
        if arr.dtype == np.float32:
            dtype = "F32"
        elif arr.dtype == np.float16:
            dtype = "F16"
        elif arr.dtype == np.int32:
            dtype = "I32"
        else:
            raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    js = json.dumps(header, separators=(",", ":"))
    js += " " * ((8 - (8 + len(js.encode())) % 8) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js.encode())))
        f.write(js.encode())
        for c in chunks:
            f.write(c)


class Golden:
    """Collects named arrays for one file; every float tensor is stored as float32."""

    def __init__(self):
        self.items = []
        self.names = set()

    def add(self, name, value):
        if name in self.names:
            raise KeyError(f"duplicate golden name {name}")
        self.names.add(name)
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        if value.dtype == np.float16:
            pass  # weights: stored exactly as float16 (their values were rounded to it)
        elif value.dtype.kind == "f":
            value = value.astype(np.float32)
        elif value.dtype.kind in "iu":
            value = value.astype(np.int32)
        self.items.append((name, value))


# ----------------------------------------------------------------------------------------------------
# weights


def randomize(model, gen, calibrate):
    """Random conv weights (He normal, fan_in, so activations keep their scale), random BN affine
    parameters, and running statistics near the true ones (calibrated on calib_input, then perturbed)
    so that eval mode neither explodes nor dies and differs measurably from train mode."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(randn(gen, *p.shape) * math.sqrt(2.0 / fan_in))
            elif name.endswith("conv_seg.bias"):
                p.copy_(0.1 * randn(gen, *p.shape))
            elif name.endswith(".weight"):  # BN gamma
                p.copy_(uniform(gen, 0.5, 1.5, *p.shape))
            elif name.endswith("gamma.scale"):  # attention mix, 0 at init: non-zero so the path counts
                p.copy_(uniform(gen, 0.5, 1.0, *p.shape))
            else:  # BN beta
                p.copy_(0.2 * randn(gen, *p.shape))
        # Damp each residual branch (its last BN's gamma in [0.2, 0.5]): a deep train-mode BN network
        # at random init is chaotic (perturbations grow block after block), and a ResNet-50 amplified
        # float32 rounding to ~5e-5 at the logits. Damped branches keep every case well conditioned.
        for m in model.modules():
            if hasattr(m, "last_bn"):
                last = m.last_bn()
                last.weight.copy_(uniform(gen, 0.2, 0.5, *last.weight.shape))
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in bns:
            m.momentum = 1.0  # running stats := this batch's stats
        model.train()
        calibrate(model)
        for m in bns:
            m.momentum = 0.1
            std = m.running_var.sqrt()
            m.running_mean.add_(0.2 * std * randn(gen, *std.shape))
            m.running_var.mul_(uniform(gen, 0.6, 1.5, *std.shape))
            m.num_batches_tracked.zero_()


def round_state_to_half(model):
    """Rounds every parameter and buffer to a float16 value, so the weights can be stored as F16 (half
    the bytes) and still be exact: both sides compute with the same float32 values."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


def state_of(model):
    """float16 state_dict without num_batches_tracked (segdist has no such buffer)."""
    return [(k, v.detach().clone().half()) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")]


# ----------------------------------------------------------------------------------------------------
# model cases

def resnet_psp(depth, stem, output_stride, align_corners, aux, base=4, head=8, aux_channels=8):
    """A segdist model config (the `model` section): ResNet + PSPHead (+ FCN aux), widths reduced."""
    return {
        "norm": "bn",
        "align_corners": align_corners,
        "backbone": {"type": "resnet", "depth": depth, "stem": stem, "output_stride": output_stride,
                     "base_channels": base, "contract_dilation": True},
        "head": {"type": "psp", "channels": head, "dropout": 0, "pool_scales": [1, 2, 3, 6]},
        "aux": {"enabled": aux, "channels": aux_channels, "weight": AUX_WEIGHT, "dropout": 0},
    }


# Both readings of mmseg's dilated ResNet are recorded: contract_dilation True is what mmseg's
# PSPNet/DeepLab configs set (first block of a dilated stage uses dilation/2); False is the ResNet
# class default (every block of the stage uses the stage's dilation). Weights are the same.
DILATION_VARIANTS = [("contract", {"backbone": {"contract_dilation": True}}),
                     ("plain", {"backbone": {"contract_dilation": False}})]

LOSS_SEEDS = {"out": 11, "aux": 12, "stage": 20}  # stage i uses 20 + i
AUX_WEIGHT = 0.4

# A case: `model` is the segdist model config the test builds with buildModel (with backbone_only,
# just its backbone); `variants` are (label, overrides of `model`) computed with the same weights;
# `grads` the parameters whose gradients are checked.
MODEL_CASES = [
    # ResNet-18 V1b, output stride 8, PSPHead + FCN auxiliary head; align_corners False (mmseg).
    dict(name="pspnet-r18-v1b-os8", seed=101, model=resnet_psp(18, "v1b", 8, False, True), num_classes=3,
         variants=DILATION_VARIANTS, input=(2, 3, 27, 35),
         grads=["backbone.conv1.weight", "backbone.bn1.weight", "backbone.bn1.bias",
                "backbone.layer1.0.conv1.weight", "backbone.layer2.0.downsample.0.weight",
                "backbone.layer3.0.conv1.weight", "backbone.layer3.1.conv1.weight",
                "backbone.layer4.0.conv1.weight", "backbone.layer4.1.bn2.weight",
                "decode_head.psp_modules.1.1.conv.weight", "decode_head.psp_modules.3.1.conv.weight",
                "decode_head.psp_modules.3.1.bn.bias", "decode_head.bottleneck.conv.weight",
                "decode_head.conv_seg.weight", "decode_head.conv_seg.bias",
                "auxiliary_head.convs.0.conv.weight", "auxiliary_head.conv_seg.weight",
                "auxiliary_head.conv_seg.bias"]),
    # ResNet-50 V1c (deep stem), output stride 16, PSPHead only; align_corners True (semseg's choice).
    dict(name="pspnet-r50-v1c-os16", seed=206, model=resnet_psp(50, "v1c", 16, True, False), num_classes=3,
         variants=DILATION_VARIANTS, input=(2, 3, 65, 49),
         grads=["backbone.stem.0.weight", "backbone.stem.4.weight", "backbone.stem.6.weight",
                "backbone.layer1.0.downsample.0.weight", "backbone.layer1.0.conv3.weight",
                "backbone.layer3.0.conv2.weight", "backbone.layer3.5.bn2.weight",
                "backbone.layer4.0.bn2.weight", "backbone.layer4.2.conv2.weight",
                "backbone.layer4.2.bn3.bias", "decode_head.psp_modules.1.1.conv.weight",
                "decode_head.psp_modules.2.1.bn.weight", "decode_head.bottleneck.bn.weight",
                "decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]),
    # ResNet-18 V1d (deep stem + avg-pool shortcut), output stride 8, backbone only: stage outputs.
    dict(name="resnet18-v1d-os8", seed=303, model=resnet_psp(18, "v1d", 8, False, False), num_classes=3,
         backbone_only=True, variants=DILATION_VARIANTS, input=(2, 3, 33, 41),
         grads=["backbone.stem.0.weight", "backbone.stem.1.weight", "backbone.stem.7.bias",
                "backbone.layer2.0.downsample.1.weight", "backbone.layer3.0.downsample.1.weight",
                "backbone.layer3.1.conv1.weight", "backbone.layer4.0.conv1.weight",
                "backbone.layer4.1.bn1.weight", "backbone.layer4.1.bn2.bias"]),
]


def backbone_case(depth, stem, output_stride, seed, input):
    """A backbone-only case of the ResNet matrix (depth x stem x output stride)."""
    first = "backbone.conv1.weight" if stem == "v1b" else "backbone.stem.0.weight"
    stem_bn = "backbone.bn1.bias" if stem == "v1b" else "backbone.stem.4.bias"
    last = 2 if depth == 18 else 3  # the last 3x3 conv of a block: conv2 in BasicBlock, conv2 in Bottleneck
    grads = [first, stem_bn, "backbone.layer1.0.conv1.weight", "backbone.layer2.0.downsample.%d.weight"
             % (1 if stem == "v1d" else 0), "backbone.layer3.0.conv2.weight", "backbone.layer3.1.bn1.weight",
             "backbone.layer4.0.conv1.weight", f"backbone.layer4.1.bn{last}.bias"]
    name = f"resnet{depth}-{stem}-os{output_stride}"
    return dict(name=name, seed=seed, model=resnet_psp(depth, stem, output_stride, False, False), num_classes=3,
                backbone_only=True, variants=DILATION_VARIANTS, input=input, grads=grads)


# The rest of the ResNet matrix (18/50 x V1b/V1c/V1d x OS 8/16; the three cases above are the others).
MODEL_CASES += [
    backbone_case(18, "v1b", 16, 401, (2, 3, 37, 29)),
    backbone_case(18, "v1c", 8, 402, (2, 3, 29, 37)),
    backbone_case(18, "v1c", 16, 403, (2, 3, 41, 33)),
    backbone_case(18, "v1d", 16, 404, (2, 3, 35, 43)),
    backbone_case(50, "v1b", 8, 435, (2, 3, 33, 27)),
    backbone_case(50, "v1b", 16, 426, (2, 3, 49, 41)),
    backbone_case(50, "v1c", 8, 417, (2, 3, 27, 35)),
    backbone_case(50, "v1d", 8, 428, (2, 3, 31, 39)),
    backbone_case(50, "v1d", 16, 419, (2, 3, 45, 53)),
]


def pyconv_model(output_stride, base, groups, head_channels=None, head_groups=None, aux=False):
    """A segdist model config: PyConvResNet-50 (+ PyConvSegNet head and FCN aux), widths reduced. The
    per-stage groups are reduced with the widths (iduta's 16 groups need 64 channels in stage 1);
    op-grouped-conv holds the real group counts and kernels."""
    return {
        "norm": "bn",
        "align_corners": True,
        "backbone": {"type": "pyconvresnet", "depth": 50, "stem": "v1b", "output_stride": output_stride,
                     "base_channels": base, "contract_dilation": False, "pyconv_groups": groups},
        "head": {"type": "pyconvseg", "channels": head_channels or 8, "dropout": 0, "pool_scales": [1],
                 "pyconv_groups": head_groups or [1, 4, 8, 16]},
        "aux": {"enabled": aux, "channels": 8, "weight": AUX_WEIGHT, "dropout": 0},
    }


# iduta dilates every block of a dilated stage (plain); segdist also offers contract_dilation.
PYCONV_PLAIN = [("plain", {"backbone": {"contract_dilation": False}})]
PYCONV_VARIANTS = PYCONV_PLAIN + [("contract", {"backbone": {"contract_dilation": True}})]
PYCONV_GRADS = ["backbone.conv1.weight", "backbone.bn1.bias",
                "backbone.layer1.0.conv2.conv2_1.weight", "backbone.layer1.0.conv2.conv2_4.weight",
                "backbone.layer1.0.downsample.1.weight", "backbone.layer2.0.conv2.conv2_3.weight",
                "backbone.layer2.3.bn2.weight", "backbone.layer3.0.conv2.conv2_2.weight",
                "backbone.layer3.5.conv2.conv2_1.weight", "backbone.layer4.0.bn2.weight",
                "backbone.layer4.2.bn3.bias"]
# Base 4 leaves stage 1's levels one channel wide, so its groups are 1 there; stages 2-3 stay grouped.
PYCONV_GROUPS_BASE4 = [[1, 1, 1, 1], [1, 2, 2], [1, 4], [1]]

MODEL_CASES += [
    # PyConvResNet-50 backbone at output stride 8, base 8 so that every stage has grouped levels
    # (iduta's variant only: the file is the largest here, its weights alone 0.7 MB).
    dict(name="pyconvresnet50-os8", seed=601, model=pyconv_model(8, 8, [[1, 2, 2, 2], [1, 4, 8], [1, 4], [1]]),
         num_classes=3, backbone_only=True, variants=PYCONV_PLAIN, input=(2, 3, 25, 33), grads=PYCONV_GRADS),
    # Output stride 16, base 4, both dilation variants. 65x49 keeps stage 4 at 5x4, so its train-mode
    # BNs see 40 values per channel.
    dict(name="pyconvresnet50-os16", seed=542, model=pyconv_model(16, 4, PYCONV_GROUPS_BASE4),
         num_classes=3, backbone_only=True, variants=PYCONV_VARIANTS, input=(2, 3, 65, 49),
         grads=PYCONV_GRADS[:4] + PYCONV_GRADS[5:9] + ["backbone.layer4.0.conv2.weight", "backbone.layer4.2.bn3.bias"]),
    # PyConvSegNet: PyConvResNet-50 (base 4) + PyConvHead (channels 16: branches 32, local reduction
    # 128 / 4 = 32, level width 8, groups 1/2/4/8) + FCN aux, OS 8. An 81x81 input puts an 11x11 map
    # under the global branch's 9x9 pooling (overlapping bins, as at iduta's 473 -> 60).
    dict(name="pyconvsegnet-r50-os8", seed=706,
         model=pyconv_model(8, 4, PYCONV_GROUPS_BASE4, head_channels=16,
                            head_groups=[1, 2, 4, 8], aux=True),
         num_classes=3, variants=PYCONV_PLAIN, input=(2, 3, 81, 81), conditioning_limit=3e-5,
         grads=["backbone.conv1.weight", "backbone.layer2.0.conv2.conv2_2.weight",
                "backbone.layer3.0.conv2.conv2_2.weight", "backbone.layer4.1.conv2.weight",
                "decode_head.local_context.layers.0.weight", "decode_head.local_context.layers.3.conv2_1.weight",
                "decode_head.local_context.layers.3.conv2_4.weight", "decode_head.local_context.layers.7.bias",
                "decode_head.global_context.features.1.weight", "decode_head.global_context.features.4.conv2_3.weight",
                "decode_head.global_context.features.8.weight", "decode_head.merge_context.features.0.weight",
                "decode_head.merge_context.features.1.bias", "decode_head.conv_seg.weight",
                "decode_head.conv_seg.bias", "auxiliary_head.convs.0.conv.weight", "auxiliary_head.conv_seg.weight"]),
]

def deeplab_config(depth, stem, output_stride, aux, base=4, head=8, c1=4):
    """A segdist model config: ResNet + DeepLabV3+ head (dilations by output stride), widths reduced
    (c1_channels 4 for DeepLabV3+'s 48)."""
    cfg = resnet_psp(depth, stem, output_stride, False, aux, base=base, head=head)
    cfg["head"] = {"type": "deeplabv3plus", "channels": head, "dropout": 0, "pool_scales": [1, 2, 3, 6],
                   "dilations": None, "c1_channels": c1, "attention": "none"}
    return cfg


def psp_dual_config():
    """PSPNet-R18 with the dual attention block after the head (16 channels: 2 query/key channels)."""
    cfg = resnet_psp(18, "v1b", 8, True, False, head=16)
    cfg["head"]["attention"] = "dual"
    return cfg


DEEPLAB_GRADS = [
    "backbone.stem.0.weight", "backbone.layer1.0.conv1.weight", "backbone.layer1.2.conv3.weight",
    "backbone.layer3.0.conv2.weight", "backbone.layer4.1.conv2.weight", "backbone.layer4.2.conv2.weight",
    "decode_head.aspp_modules.0.conv.weight", "decode_head.aspp_modules.1.depthwise_conv.bn.weight",
    "decode_head.aspp_modules.2.pointwise_conv.conv.weight", "decode_head.aspp_modules.3.pointwise_conv.bn.bias",
    "decode_head.bottleneck.depthwise_conv.conv.weight", "decode_head.bottleneck.pointwise_conv.conv.weight",
    "decode_head.c1_bottleneck.conv.weight", "decode_head.c1_bottleneck.bn.weight",
    "decode_head.sep_bottleneck.0.depthwise_conv.conv.weight", "decode_head.sep_bottleneck.0.pointwise_conv.conv.weight",
    "decode_head.sep_bottleneck.1.depthwise_conv.bn.bias", "decode_head.sep_bottleneck.1.pointwise_conv.conv.weight",
    "decode_head.conv_seg.weight", "decode_head.conv_seg.bias",
]

# DeepLabV3+ on ResNet-50 V1c at both output strides, and PSPNet with the dual attention block. The
# feature maps are small (5x6 at stage 4), so with the default dilations (12/24/36, 6/12/18) every
# outer ASPP tap falls in the padding; the `small-dilations` variant (same weights) puts taps inside.
# The OS 16 case also records multi-grid [1, 2, 4] (layer4 dilated 2, 4, 8). Not checked, being pure
# cancellation: the image-pool branch's gradient (its BN normalises `batch` = 2 values per channel, see
# PSP's bin 1), and the atrous depthwise weights' (with only the centre tap inside the map the conv
# scales each channel, which the train-mode BN after it undoes, so that gradient is exactly zero; the
# op golden op-depthwise-conv checks those gradients, and the model's input gradients flow through them).
MODEL_CASES += [
    dict(name="deeplabv3plus-r50-v1c-os8", seed=512, model=deeplab_config(50, "v1c", 8, True), num_classes=3,
         variants=[("default", {}), ("small-dilations", {"head": {"dilations": [1, 2, 3, 4]}})],
         input=(2, 3, 35, 45),
         grads=DEEPLAB_GRADS + ["auxiliary_head.convs.0.conv.weight", "auxiliary_head.conv_seg.weight"]),
    dict(name="deeplabv3plus-r50-v1c-os16", seed=540, model=deeplab_config(50, "v1c", 16, False), num_classes=3,
         variants=[("multi-grid", {"backbone": {"multi_grid": [1, 2, 4]}}), ("default", {}),
                   ("small-dilations", {"head": {"dilations": [1, 2, 3, 5]}})],
         input=(2, 3, 65, 49), grads=DEEPLAB_GRADS),
    dict(name="pspnet-r18-v1b-os8-dual", seed=503, model=psp_dual_config(), num_classes=3,
         variants=[("dual", {})], input=(2, 3, 27, 35),
         grads=["backbone.conv1.weight", "backbone.layer4.1.conv2.weight", "decode_head.bottleneck.conv.weight",
                "decode_head.attention.pam.query_project.weight", "decode_head.attention.pam.query_project.bias",
                "decode_head.attention.pam.key_project.weight", "decode_head.attention.pam.value_project.weight",
                "decode_head.attention.pam.value_project.bias", "decode_head.attention.pam.gamma.scale",
                "decode_head.attention.cam.gamma.scale", "decode_head.conv_seg.weight", "decode_head.conv_seg.bias"]),
]


def build(case, overrides):
    return build_reference(merge(case["model"], overrides), case["num_classes"], case.get("backbone_only", False))


def run_model(model, case, x, scale=False):
    """Returns {label: tensor} of outputs and the scalar loss; with scale, also the loss's scale
    sum|term| (the same sum over absolute values), against which the tests measure its error: the
    loss itself is a sum of terms of both signs and may cancel to almost nothing."""
    terms = []
    if case.get("backbone_only"):
        feats = model.backbone(x)
        outs = {f"stage{i + 1}": f for i, f in enumerate(feats)}
        terms = [f * noise(f.shape, LOSS_SEEDS["stage"] + i) for i, f in enumerate(feats)]
    else:
        out, aux = model(x)
        outs = {"out": out}
        terms = [out * noise(out.shape, LOSS_SEEDS["out"])]
        if aux is not None:
            outs["aux"] = aux
            terms.append(AUX_WEIGHT * aux * noise(aux.shape, LOSS_SEEDS["aux"]))
    loss = sum(t.sum() for t in terms)
    if scale:
        return outs, loss, sum(t.detach().abs().sum() for t in terms)
    return outs, loss


def compute_case(case, ref, x, overrides, dtype):
    """Everything a case checks, for one variant, computed in `dtype`: {key: tensor}."""
    model = build(case, overrides).to(dtype)
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in ref.state_dict().items()})
    xd = x.to(dtype)
    res = {}
    model.eval()
    with torch.no_grad():
        outs, _ = run_model(model, case, xd)
    for k, t in outs.items():
        if k != "aux":  # segdist's model returns no auxiliary logits in eval mode
            res[f"eval/{k}"] = t.detach()
    model.train()
    outs, loss, loss_scale = run_model(model, case, xd, scale=True)
    loss.backward()
    for k, t in outs.items():
        res[f"train/{k}"] = t.detach()
    res["train/loss"] = loss.detach().reshape(1)
    res["train/loss_scale"] = loss_scale.reshape(1)
    params = dict(model.named_parameters())
    for name in case["grads"]:
        res[f"grad/{name}"] = params[name].grad
    state = model.state_dict()
    bn_names = [k[:-len(".running_mean")] for k in state if k.endswith(".running_mean")]
    res["running_mean"] = torch.cat([state[f"{n}.running_mean"] for n in bn_names])
    res["running_var"] = torch.cat([state[f"{n}.running_var"] for n in bn_names])
    return res, bn_names


def rel_err(a, b):
    """The tests' measure: max|a - b| / max(max|b|, 1e-6)."""
    return float((a.double() - b.double()).abs().max() / max(float(b.double().abs().max()), 1e-6))


# A golden is only useful if float32 can reproduce it: a ReLU whose input sits within float32 rounding
# of zero, or a BN over very few values (PSP's 1x1 branch sees only `batch` values per channel), makes
# any float32 result (PyTorch's own included) differ from the float64 reference by far more than the
# test's 1e-4. So every case is also run in PyTorch float32 and must agree with float64 to within
# CONDITIONING_LIMIT on every check; if not, the script stops and names the offending checks (change
# the case's seed or geometry). What it caught while these cases were designed: the gradient of
# decode_head.psp_modules.0 (bin 1) is pure cancellation at batch 2 (rel err ~3e-3 in PyTorch float32
# itself), so no case checks it; a ResNet-50 OS16 case on 37x29 input (3x2 stage-4 maps, 12 values per
# BN channel) had a ReLU input 2.6e-5 from zero that segdist's float32 forward put on the other side,
# putting 10% errors on every backbone gradient; and the fixes for those (INPUT_SCALE/INPUT_SHIFT,
# damped residual branches in randomize(), seed 206 for the ResNet-50 case).
CONDITIONING_LIMIT = 1e-5
# A case may raise it (key conditioning_limit) where depth alone puts float32 near 1e-5: PyConvSegNet's
# head stacks five train-mode BNs on a PyConvResNet-50, and each branch doubles the backbone's ~6e-6
# (PyTorch float32 vs float64, measured stage by stage). Any sign flip still shows as 1e-3 or more.

# Full-resolution logits are stored on every OUT_SUB-th row and column only (they are bilinear
# upsamplings of small maps, so a subgrid shows any error; the loss covers every element).
OUT_SUB = 2


# Sample n of a model input is noise * INPUT_SCALE[n] + INPUT_SHIFT[n] (float32): different statistics
# per sample, as real images have. With identically distributed samples the two 1x1 pooled features of
# PSP's bin-1 branch are nearly equal, and its BN (over just those 2 values at batch 2) then divides a
# catastrophically cancelled difference.
INPUT_SCALE = [1.0, 0.5]
INPUT_SHIFT = [0.0, 0.5]


def model_input(case):
    x = noise(case["input"], case["seed"]).float()
    n = x.shape[0]
    scale = torch.tensor(INPUT_SCALE[:n], dtype=torch.float32).reshape(n, 1, 1, 1)
    shift = torch.tensor(INPUT_SHIFT[:n], dtype=torch.float32).reshape(n, 1, 1, 1)
    return x * scale + shift


def make_model_case(case, out_dir):
    gen = torch.Generator().manual_seed(case["seed"])
    ref = build(case, case["variants"][0][1])
    x = model_input(case)
    calib = randn(gen, *case["input"])
    randomize(ref, gen, lambda m: run_model(m, case, calib))
    round_state_to_half(ref)

    g = Golden()
    for k, v in state_of(ref):
        g.add(k, v)
    summary = {}
    f32_errors = {}
    for label, overrides in case["variants"]:
        res, bn_names = compute_case(case, ref, x, overrides, torch.float64)
        res32, _ = compute_case(case, ref, x, overrides, torch.float32)
        errs = {k: rel_err(res32[k], v) for k, v in res.items() if k != "train/loss_scale"}
        errs["train/loss"] = float(abs(res32["train/loss"] - res["train/loss"]) / res["train/loss_scale"])
        limit = case.get("conditioning_limit", CONDITIONING_LIMIT)
        bad = {k: e for k, e in errs.items() if not e < limit}
        if bad:
            raise SystemExit(f"{case['name']} ({label}): ill-conditioned, PyTorch float32 vs float64: {bad}")
        f32_errors[label] = max(errs.values())
        for k, v in res.items():
            if k in ("eval/out", "train/out", "train/aux"):
                v = v[:, :, ::OUT_SUB, ::OUT_SUB]
            g.add(f"golden/{label}/{k}", v)
        summary[label] = float(res["train/loss"])

    meta = {
        "torch": torch.__version__,
        "case": case["name"],
        "model": json.dumps(case["model"]),
        "num_classes": str(case["num_classes"]),
        "backbone_only": json.dumps(bool(case.get("backbone_only", False))),
        "grads": json.dumps(case["grads"]),
        "bn_names": json.dumps(bn_names),
        "variants": json.dumps(dict(case["variants"])),
        "input": json.dumps({"shape": list(case["input"]), "noise_seed": case["seed"],
                             "sample_scale": INPUT_SCALE, "sample_shift": INPUT_SHIFT}),
        "loss": json.dumps({"noise_seeds": LOSS_SEEDS, "aux_weight": AUX_WEIGHT}),
        "out_sub": str(OUT_SUB),
        "torch_f32_max_rel_err": json.dumps(f32_errors),
        "layout": "weights F16 (exact values) OIHW under state_dict names; activations NCHW; eval/out, "
                  "train/out, train/aux on rows and columns [::out_sub]; running_mean/var: every BN's "
                  "buffer after the train-mode forward, concatenated in bn_names order",
    }
    path = os.path.join(out_dir, f"model-{case['name']}.safetensors")
    write_safetensors(path, g.items, meta)
    return path, {"loss": summary, "torch_f32_max_rel_err": f32_errors}


# ----------------------------------------------------------------------------------------------------
# op cases


def grad_of(fn, x, loss_seed):
    """y = fn(x); loss = sum(y * noise(y.shape, loss_seed)); returns y, dloss/dx (all float64)."""
    x = x.double().clone().requires_grad_(True)
    y = fn(x)
    (y * noise(y.shape, loss_seed)).sum().backward()
    return y.detach(), x.grad


def add_conv_case(g, name, shape, w_shape, seed, **conv):
    """One convolution case of the op goldens: y = conv2d(x, w, **conv) and the gradients of x and w,
    with x = noise(x shape, seed), w = 0.5 * noise(w shape, seed + 1), loss = sum(y * noise(y shape, seed + 2))."""
    xd = noise(shape, seed).requires_grad_(True)
    wd = (0.5 * noise(w_shape, seed + 1)).requires_grad_(True)
    y = F.conv2d(xd, wd, **conv)
    (y * noise(y.shape, seed + 2)).sum().backward()
    g.add(f"{name}/y", y)
    g.add(f"{name}/grad_x", xd.grad)
    g.add(f"{name}/grad_w", wd.grad)


def write_conv_golden(out_dir, stem, g, index, w_layout):
    """Writes the cases added with add_conv_case to <stem>.safetensors, `index` as their description."""
    meta = {"torch": torch.__version__, "cases": json.dumps(index),
            "layout": f"y, grad_x NCHW; grad_w {w_layout}; x = noise(x, seed), w = 0.5 * noise(w, seed + 1), "
                      "loss = sum(y * noise(y, seed + 2))"}
    path = os.path.join(out_dir, f"{stem}.safetensors")
    write_safetensors(path, g.items, meta)
    return path


def make_dilated_conv(out_dir):
    """Dilated convolutions (no bias, stride 1) with input and filter gradients. x = noise(x shape,
    seed), w = 0.5 * noise(w shape, seed + 1), loss = sum(y * noise(y shape, seed + 2))."""
    g = Golden()
    cases = [
        # name, input NCHW, out channels, kernel, padding, dilation
        ("d2p2", (2, 3, 13, 17), 4, 3, 2, 2),
        ("d4p4", (2, 3, 13, 17), 4, 3, 4, 4),
        ("d2p1", (2, 3, 13, 17), 5, 3, 1, 2),   # output shrinks to 11x15
        ("d4p0", (1, 2, 13, 17), 3, 3, 0, 4),   # output 5x9
        ("d3p3", (2, 2, 11, 14), 3, 3, 3, 3),
        ("d2p4k5", (1, 3, 9, 10), 2, 5, 4, 2),
        ("d4p4big", (2, 3, 21, 25), 3, 3, 4, 4),
        # semseg's geometry at 473x473 input, zoom factor 8: stages 3 and 4 run on 60x60 maps
        ("d2-60x60", (1, 2, 60, 60), 2, 3, 2, 2),
        ("d4-60x60", (1, 2, 60, 60), 2, 3, 4, 4),
    ]
    index = []
    for i, (name, shape, cout, k, pad, dil) in enumerate(cases):
        seed = 1000 + 10 * i
        add_conv_case(g, name, shape, (cout, shape[1], k, k), seed, padding=pad, dilation=dil)
        index.append({"name": name, "x": list(shape), "w": [cout, shape[1], k, k], "padding": pad,
                      "dilation": dil, "seed": seed})
    return write_conv_golden(out_dir, "op-dilated-conv", g, index, "OIHW")


def make_grouped_conv(out_dir):
    """Grouped convolutions (no bias) with PyConv's real kernel/group pairs (3/1, 5/4, 7/8, 9/16), odd
    sizes, stride 2 (a stage's first block) and dilation 2 (stage 3 at output stride 8), padding
    dilation * (k // 2) as PyConv pads. x = noise(x shape, seed), w = 0.5 * noise(w shape, seed + 1),
    loss = sum(y * noise(y shape, seed + 2))."""
    g = Golden()
    cases = [
        # name, input NCHW, out channels, kernel, groups, stride, dilation
        ("k3g1", (2, 16, 11, 13), 4, 3, 1, 1, 1),
        ("k5g4", (2, 16, 11, 13), 4, 5, 4, 1, 1),
        ("k7g8", (2, 16, 11, 13), 8, 7, 8, 1, 1),
        ("k9g16", (1, 32, 13, 11), 16, 9, 16, 1, 1),
        ("k5g4s2", (2, 16, 13, 15), 8, 5, 4, 2, 1),
        ("k7g8s2", (1, 32, 15, 13), 8, 7, 8, 2, 1),
        ("k9g16s2", (1, 32, 15, 17), 32, 9, 16, 2, 1),
        ("k5g4d2", (2, 16, 13, 11), 8, 5, 4, 1, 2),
        ("k3g1d4", (1, 8, 13, 15), 8, 3, 1, 1, 4),
    ]
    index = []
    for i, (name, shape, cout, k, groups, stride, dil) in enumerate(cases):
        seed = 5000 + 10 * i
        add_conv_case(g, name, shape, (cout, shape[1] // groups, k, k), seed,
                      stride=stride, padding=dil * (k // 2), dilation=dil, groups=groups)
        index.append({"name": name, "x": list(shape), "w": [cout, shape[1] // groups, k, k], "groups": groups,
                      "stride": stride, "padding": dil * (k // 2), "dilation": dil, "seed": seed})
    return write_conv_golden(out_dir, "op-grouped-conv", g, index, "OIHW [out, in/groups, k, k]")


def make_depthwise_conv(out_dir):
    """Depthwise convolutions (groups = channels, no bias, stride 1) with input and filter gradients,
    at DeepLab's ASPP dilations on small odd maps, where most or all outer taps fall in the padding.
    x = noise(x shape, seed), w = 0.5 * noise(w shape, seed + 1), loss = sum(y * noise(y shape, seed + 2))."""
    g = Golden()
    cases = [
        # name, input NCHW, kernel, padding, dilation
        ("d1p1", (2, 4, 7, 9), 3, 1, 1),
        ("d2p2", (2, 3, 9, 11), 3, 2, 2),
        ("d2p1", (2, 3, 9, 11), 3, 1, 2),      # output shrinks to 7x9
        ("d12p12", (2, 3, 9, 11), 3, 12, 12),  # every outer tap in the padding
        ("d12p12wide", (1, 3, 15, 27), 3, 12, 12),  # outer taps overlap 3 rows and 15 columns
        ("d24p24", (1, 2, 7, 9), 3, 24, 24),
        ("d24p24wide", (1, 2, 29, 31), 3, 24, 24),
        ("d36p36", (1, 2, 11, 13), 3, 36, 36),
        ("d36p36wide", (1, 2, 41, 37), 3, 36, 36),
    ]
    index = []
    for i, (name, shape, k, pad, dil) in enumerate(cases):
        seed = 5000 + 10 * i
        c = shape[1]
        add_conv_case(g, name, shape, (c, 1, k, k), seed, padding=pad, dilation=dil, groups=c)
        index.append({"name": name, "x": list(shape), "w": [c, 1, k, k], "padding": pad, "dilation": dil, "seed": seed})
    return write_conv_golden(out_dir, "op-depthwise-conv", g, index, "[C, 1, k, k]")


def make_adaptive_pool(out_dir):
    """nn.AdaptiveAvgPool2d to 1, 2, 3, 6 bins (PSPNet's pyramid), including maps smaller than the
    bin count. x = noise(shape, seed), loss = sum(y * noise(y shape, seed + bins))."""
    g = Golden()
    index = []
    # 60x60: the PSP head's input at semseg's 473x473 (zoom factor 8); 59x61: bins that overlap unevenly
    for i, shape in enumerate([(2, 3, 13, 17), (1, 1, 33, 41), (2, 2, 5, 6), (2, 2, 3, 2), (1, 1, 60, 60), (1, 1, 59, 61)]):
        seed = 2000 + 100 * i
        x = noise(shape, seed)
        tag = f"{shape[2]}x{shape[3]}"
        for bins in (1, 2, 3, 6):
            y, gx = grad_of(lambda t: F.adaptive_avg_pool2d(t, bins), x, seed + bins)
            g.add(f"{tag}/bins{bins}/y", y)
            g.add(f"{tag}/bins{bins}/grad_x", gx)
            index.append({"name": tag, "x": list(shape), "bins": bins, "seed": seed})
    meta = {"torch": torch.__version__, "cases": json.dumps(index),
            "layout": "NCHW; x = noise(x, seed), loss = sum(y * noise(y, seed + bins))"}
    path = os.path.join(out_dir, "op-adaptive-avg-pool.safetensors")
    write_safetensors(path, g.items, meta)
    return path


def make_resize(out_dir):
    """F.interpolate(mode='bilinear', size=...) for align_corners True and False: up, down, and the
    PSP pyramid's 1/2/3/6 -> feature-map sizes. x = noise(shape, seed), loss = sum(y * noise(y shape,
    seed + 1 + align_corners))."""
    g = Golden()
    index = []
    small = [((1, 2, 9, 13), (33, 41)), ((1, 1, 33, 41), (9, 13)), ((1, 2, 1, 1), (5, 6)),
             ((1, 2, 2, 2), (5, 6)), ((1, 2, 3, 3), (5, 6)), ((1, 2, 6, 6), (5, 6)),
             ((1, 2, 4, 5), (27, 35)), ((1, 2, 3, 2), (37, 29)), ((1, 1, 7, 7), (7, 12))]
    for i, (shape, size) in enumerate(small):
        seed = 3000 + 10 * i
        x = noise(shape, seed)
        tag = f"{shape[2]}x{shape[3]}-{size[0]}x{size[1]}"
        for ac in (True, False):
            y, gx = grad_of(lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=ac), x,
                            seed + 1 + int(ac))
            g.add(f"{tag}/ac{int(ac)}/y", y)
            g.add(f"{tag}/ac{int(ac)}/grad_x", gx)
            index.append({"name": tag, "x": list(shape), "size": list(size), "align_corners": ac, "seed": seed})

    # semseg's zoom-factor-8 geometry (473 -> 60 -> 473): x = noise([1,1,473,473], 4000), loss =
    # sum(y * noise(y shape, 4001 + ac)). The 473x473 results are stored on a subset of rows and columns
    # (`sub`) plus their full row and column sums; the 60x60 ones in full.
    n, mid_size, seed = 473, 60, 4000
    x = noise((1, 1, n, n), seed)
    sub = sorted(set(range(0, n, 9)) | {1, 2, 3, n - 4, n - 3, n - 2, n - 1})
    subt = torch.tensor(sub)
    g.add("roundtrip/sub", np.array(sub, dtype=np.int32))
    for ac in (True, False):
        xd = x.clone().requires_grad_(True)
        mid = F.interpolate(xd, size=(mid_size, mid_size), mode="bilinear", align_corners=ac)
        mid.retain_grad()
        y = F.interpolate(mid, size=(n, n), mode="bilinear", align_corners=ac)
        (y * noise(y.shape, seed + 1 + int(ac))).sum().backward()
        p = f"roundtrip/ac{int(ac)}"
        g.add(f"{p}/mid", mid)
        g.add(f"{p}/y_sub", y.detach()[:, :, subt][:, :, :, subt])
        g.add(f"{p}/y_rowsum", y.detach().sum(dim=3))
        g.add(f"{p}/y_colsum", y.detach().sum(dim=2))
        g.add(f"{p}/grad_mid", mid.grad)
        g.add(f"{p}/grad_x_sub", xd.grad[:, :, subt][:, :, :, subt])
        g.add(f"{p}/grad_x_rowsum", xd.grad.sum(dim=3))
        g.add(f"{p}/grad_x_colsum", xd.grad.sum(dim=2))
    meta = {"torch": torch.__version__, "cases": json.dumps(index),
            "roundtrip": json.dumps({"size": n, "mid": mid_size, "seed": seed}),
            "layout": "NCHW; x = noise(x, seed), loss = sum(y * noise(y, seed + 1 + align_corners)); "
                      "roundtrip: loss on the final 473x473 output"}
    path = os.path.join(out_dir, "op-resize-bilinear.safetensors")
    write_safetensors(path, g.items, meta)
    return path


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "test", "fixtures", "parity"))
    ap.add_argument("--only", default=None, help="comma-separated file stems to write (e.g. op-depthwise-conv,model-x)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    want = lambda stem: only is None or stem in only
    ops = [("op-dilated-conv", make_dilated_conv), ("op-grouped-conv", make_grouped_conv),
           ("op-depthwise-conv", make_depthwise_conv), ("op-adaptive-avg-pool", make_adaptive_pool),
           ("op-resize-bilinear", make_resize)]
    paths = [make(args.out) for stem, make in ops if want(stem)]
    for case in [c for c in MODEL_CASES if want("model-" + c["name"])]:
        path, summary = make_model_case(case, args.out)
        paths.append(path)
        print(case["name"], summary)
    total = 0
    for p in paths:
        size = os.path.getsize(p)
        total += size
        print(f"{os.path.relpath(p)}: {size / 1024:.1f} KiB")
    print(f"total {total / 1024:.1f} KiB, torch {torch.__version__}")


if __name__ == "__main__":
    main()

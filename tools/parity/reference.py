"""Builds the PyTorch reference of a segdist model config (the `model` section of a segdist config, as
a dict) through explicit tables keyed like segdist's build-model.ts."""

import copy

import torch.nn as nn

from .deeplab import ASPPHead, DeepLabV3PlusHead, apply_multi_grid, attach_attention, default_dilations
from .heads import EncoderDecoder, FCNHead, PSPHead
from .pyconv import DEFAULT_GROUPS, PyConvHead, PyConvResNet
from .resnet import ResNet


def resnet(b):
    net = ResNet(b["depth"], b["stem"], b["output_stride"], b["base_channels"], b.get("contract_dilation", True))
    if b.get("multi_grid"):
        apply_multi_grid(net, b["multi_grid"], b["output_stride"])
    return net


def aspp_dilations(m):
    return m["head"].get("dilations") or default_dilations(m["backbone"]["output_stride"])


# backbone type -> (backbone section of the model config) -> module with .out_channels
BACKBONES = {
    "resnet": resnet,
    "pyconvresnet": lambda b: PyConvResNet(b["depth"], b["output_stride"], b["base_channels"],
                                           b.get("pyconv_groups", DEFAULT_GROUPS), b.get("contract_dilation", False)),
}

# head type -> (model config, backbone out_channels, num_classes) -> module taking the stage list
HEADS = {
    "psp": lambda m, ch, k: PSPHead(ch[3], m["head"]["channels"], k, tuple(m["head"]["pool_scales"]),
                                    m["align_corners"]),
    "pyconvseg": lambda m, ch, k: PyConvHead(ch[3], m["head"]["channels"], k,
                                             tuple(m["head"].get("pyconv_groups", (1, 4, 8, 16))), m["align_corners"]),
    "aspp": lambda m, ch, k: ASPPHead(ch[3], m["head"]["channels"], k, aspp_dilations(m), m["align_corners"]),
    "deeplabv3plus": lambda m, ch, k: DeepLabV3PlusHead(ch[3], ch[0], m["head"].get("c1_channels", 48),
                                                        m["head"]["channels"], k, aspp_dilations(m),
                                                        m["align_corners"]),
}


def merge(base, overrides):
    """base with overrides applied key by key (nested dicts merge, anything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def build_reference(model_cfg, num_classes, backbone_only=False):
    """The PyTorch twin of segdist's buildModel(model_cfg, num_classes): an EncoderDecoder returning
    (out, aux) at the input's size, or with backbone_only a module whose .backbone gives the stages."""
    backbone = BACKBONES[model_cfg["backbone"]["type"]](model_cfg["backbone"])
    if backbone_only:
        wrapper = nn.Module()
        wrapper.backbone = backbone
        return wrapper
    ch = backbone.out_channels
    head = HEADS[model_cfg["head"]["type"]](model_cfg, ch, num_classes)
    if model_cfg["head"].get("attention", "none") == "dual":
        attach_attention(head, model_cfg["head"]["channels"])
    aux_cfg = model_cfg["aux"]
    aux = FCNHead(ch[2], aux_cfg["channels"], num_classes) if aux_cfg["enabled"] else None
    return EncoderDecoder(backbone, head, aux, model_cfg["align_corners"])

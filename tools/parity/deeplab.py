"""References for segdist's DeepLab parts: mmcv's DepthwiseSeparableConvModule, mmseg's ASPPHead and
DepthwiseSeparableASPPHead (DeepLabV3 / DeepLabV3+), DANet's position and channel attention summed
(segdist's model.head.attention: dual), and multi-grid dilation of a ResNet's last stage. Written for
the goldens from the papers' and mmseg's documented semantics; attribute names give segdist's
(mmseg's) state_dict keys."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import ConvModule
from .resnet import STAGES


def default_dilations(output_stride):
    return {8: [1, 12, 24, 36], 16: [1, 6, 12, 18]}[output_stride]


class DepthwiseSeparableConvModule(nn.Module):
    """depthwise_conv (k x k, groups = channels, BN, ReLU) then pointwise_conv (1x1, BN, ReLU)."""

    def __init__(self, cin, cout, k, padding=0, dilation=1):
        super().__init__()
        self.depthwise_conv = ConvModule(cin, cin, k, padding=padding, dilation=dilation, groups=cin)
        self.pointwise_conv = ConvModule(cin, cout, 1)

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


class ASPPHead(nn.Module):
    """Image pooling + one branch per dilation (1: 1x1 ConvModule; else 3x3 atrous, separable or not),
    concatenated, a 3x3 bottleneck, conv_seg. Dropout 0 in the goldens."""

    def __init__(self, cin, ch, num_classes, dilations, align_corners, separable=False):
        super().__init__()
        self.align_corners = align_corners
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvModule(cin, ch, 1))
        branches = []
        for d in dilations:
            if d == 1:
                branches.append(ConvModule(cin, ch, 1))
            elif separable:
                branches.append(DepthwiseSeparableConvModule(cin, ch, 3, padding=d, dilation=d))
            else:
                branches.append(ConvModule(cin, ch, 3, padding=d, dilation=d))
        self.aspp_modules = nn.ModuleList(branches)
        fused = (len(dilations) + 1) * ch
        self.bottleneck = (DepthwiseSeparableConvModule(fused, ch, 3, padding=1) if separable
                           else ConvModule(fused, ch, 3, padding=1))
        self.conv_seg = nn.Conv2d(ch, num_classes, 1)

    def aspp(self, x):
        pooled = F.interpolate(self.image_pool(x), size=x.shape[2:], mode="bilinear",
                               align_corners=self.align_corners)
        return self.bottleneck(torch.cat([pooled] + [b(x) for b in self.aspp_modules], dim=1))

    def forward(self, feats):
        return self.conv_seg(self.aspp(feats[3]))


class DeepLabV3PlusHead(ASPPHead):
    """Separable ASPP on stage 4, upsampled to stage 1's size, concatenated with c1_bottleneck(stage 1),
    two separable 3x3 convs (sep_bottleneck), conv_seg."""

    def __init__(self, cin, c1_in, c1_ch, ch, num_classes, dilations, align_corners):
        super().__init__(cin, ch, num_classes, dilations, align_corners, separable=True)
        self.c1_bottleneck = ConvModule(c1_in, c1_ch, 1)
        self.sep_bottleneck = nn.Sequential(DepthwiseSeparableConvModule(ch + c1_ch, ch, 3, padding=1),
                                            DepthwiseSeparableConvModule(ch, ch, 3, padding=1))

    def forward(self, feats):
        c1 = self.c1_bottleneck(feats[0])
        up = F.interpolate(self.aspp(feats[3]), size=c1.shape[2:], mode="bilinear", align_corners=self.align_corners)
        return self.conv_seg(self.sep_bottleneck(torch.cat([up, c1], dim=1)))


class Scale(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(value)]))

    def forward(self, x):
        return x * self.scale


class PAM(nn.Module):
    """Position attention: softmax over positions of query . key (C/8 channels), times value."""

    def __init__(self, ch):
        super().__init__()
        k = max(1, ch // 8)
        self.query_project = nn.Conv2d(ch, k, 1)
        self.key_project = nn.Conv2d(ch, k, 1)
        self.value_project = nn.Conv2d(ch, ch, 1)
        self.gamma = Scale(0)

    def forward(self, x):
        n, c, h, w = x.shape
        q = self.query_project(x).reshape(n, -1, h * w).permute(0, 2, 1)
        k = self.key_project(x).reshape(n, -1, h * w)
        v = self.value_project(x).reshape(n, c, h * w).permute(0, 2, 1)
        attn = F.softmax(torch.bmm(q, k), dim=-1)
        ctx = torch.bmm(attn, v).permute(0, 2, 1).reshape(n, c, h, w)
        return self.gamma(ctx) + x


class CAM(nn.Module):
    """Channel attention: softmax over channels of (row max - X X^T), times X."""

    def __init__(self):
        super().__init__()
        self.gamma = Scale(0)

    def forward(self, x):
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        energy = torch.bmm(flat, flat.permute(0, 2, 1))
        attn = F.softmax(energy.max(dim=-1, keepdim=True)[0].expand_as(energy) - energy, dim=-1)
        return self.gamma(torch.bmm(attn, flat).reshape(n, c, h, w)) + x


class DualAttention(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.pam = PAM(ch)
        self.cam = CAM()

    def forward(self, x):
        return self.pam(x) + self.cam(x)


def attach_attention(head, ch):
    """Registers head.attention and applies it to conv_seg's input, which is where segdist's DecodeHead
    puts it (after the head's final features, before dropout and the classifier)."""
    head.attention = DualAttention(ch)
    head.conv_seg.register_forward_pre_hook(lambda _module, inputs: (head.attention(inputs[0]),))
    return head


def apply_multi_grid(resnet, multi_grid, output_stride):
    """Block i of layer4 dilated by the stage's dilation times multi_grid[i] (DeepLabV3's unit rates),
    replacing contract_dilation there."""
    blocks = list(resnet.layer4)
    if len(multi_grid) != len(blocks):
        raise ValueError(f"multi_grid {multi_grid} for {len(blocks)} blocks")
    stage_dilation = STAGES[output_stride][1][3]
    for block, m in zip(blocks, multi_grid):
        conv = block.conv2 if hasattr(block, "conv3") else block.conv1
        d = stage_dilation * m
        conv.dilation = (d, d)
        conv.padding = (d, d)
    return resnet

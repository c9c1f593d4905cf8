"""mmseg's PSPHead, its FCNHead auxiliary head and EncoderDecoder's final bilinear resize. A head
takes the backbone's list of stage outputs."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import ConvModule


class PSPHead(nn.Module):
    """mmseg's PSPHead on the last stage; dropout 0 in the goldens."""

    def __init__(self, cin, ch, num_classes, pool_scales, align_corners):
        super().__init__()
        self.align_corners = align_corners
        self.psp_modules = nn.ModuleList(
            [nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(cin, ch, 1)) for s in pool_scales])
        self.bottleneck = ConvModule(cin + len(pool_scales) * ch, ch, 3, padding=1)
        self.conv_seg = nn.Conv2d(ch, num_classes, 1)

    def forward(self, feats):
        x = feats[3]
        outs = [x] + [F.interpolate(m(x), size=x.shape[2:], mode="bilinear", align_corners=self.align_corners)
                      for m in self.psp_modules]
        return self.conv_seg(self.bottleneck(torch.cat(outs, dim=1)))


class FCNHead(nn.Module):
    """num_convs 1, kernel 3, concat_input False: mmseg's PSPNet auxiliary head."""

    def __init__(self, cin, ch, num_classes):
        super().__init__()
        self.convs = nn.Sequential(ConvModule(cin, ch, 3, padding=1))
        self.conv_seg = nn.Conv2d(ch, num_classes, 1)

    def forward(self, feats):
        return self.conv_seg(self.convs(feats[2]))


class EncoderDecoder(nn.Module):
    def __init__(self, backbone, decode_head, auxiliary_head, align_corners):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        if auxiliary_head is not None:
            self.auxiliary_head = auxiliary_head
        self.align_corners = align_corners

    def forward(self, x):
        feats = self.backbone(x)
        size = x.shape[2:]
        up = lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=self.align_corners)
        out = up(self.decode_head(feats))
        aux = up(self.auxiliary_head(feats)) if hasattr(self, "auxiliary_head") else None
        return out, aux

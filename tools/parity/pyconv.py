"""PyConvResNet and the PyConvSegNet head (Duta et al. 2020, "Pyramidal Convolution"), as
iduta/pyconvsegnet builds them, re-implemented here for the parity goldens with state_dict keys equal
to segdist's (which are iduta's under backbone. / decode_head.).

What the reference pins down: a pyramid level i has kernel 3 + 2i, padding dilation * (kernel // 2),
its own groups, and its share of the output channels (two levels: 1/2 each; three: 1/4, 1/4, 1/2;
four: 1/4 each); stage 4's conv2 is one plain 3x3 conv. The stem is conv1/bn1/ReLU with no max pool;
every stage strides 2 in its first block, on conv2 and on the shortcut's 3x3 max pool (downsample.0,
then the 1x1 conv .1 and BN .2). For output stride 8 (16) stages 3-4 (stage 4) trade their stride for
dilation 2 and 4 (2) in every block, and the shortcut's max pool stays, at stride 1."""

import torch
import torch.nn as nn
import torch.nn.functional as F

STAGES = {8: ((2, 2, 1, 1), (1, 1, 2, 4)), 16: ((2, 2, 2, 1), (1, 1, 1, 2)), 32: ((2, 2, 2, 2), (1, 1, 1, 1))}
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
DEFAULT_GROUPS = ((1, 4, 8, 16), (1, 4, 8), (1, 4), (1,))
SHARES = {2: (2, 2), 3: (4, 4, 2), 4: (4, 4, 4, 4)}


class PyConv(nn.Module):
    """Levels conv2_1 .. conv2_n over the same input, outputs concatenated on channels."""

    def __init__(self, cin, planes, groups, stride=1, dilation=1):
        super().__init__()
        self.n = len(groups)
        for i, (g, share) in enumerate(zip(groups, SHARES[len(groups)])):
            k = 3 + 2 * i
            setattr(self, f"conv2_{i + 1}", nn.Conv2d(cin, planes // share, k, stride=stride,
                                                       padding=dilation * (k // 2), dilation=dilation,
                                                       groups=g, bias=False))

    def forward(self, x):
        return torch.cat([getattr(self, f"conv2_{i + 1}")(x) for i in range(self.n)], dim=1)


class PyConvBlock(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, dilation, groups, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        if len(groups) == 1:
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation,
                                   groups=groups[0], bias=False)
        else:
            self.conv2 = PyConv(planes, planes, groups, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def last_bn(self):
        return self.bn3

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class PyConvResNet(nn.Module):
    def __init__(self, depth, output_stride, base, groups=DEFAULT_GROUPS, contract_dilation=False):
        super().__init__()
        strides, dilations = STAGES[output_stride]
        self.conv1 = nn.Conv2d(3, base, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        inplanes = base
        self.out_channels = []
        for i in range(4):
            planes = base * 2 ** i
            out = planes * 4
            stride, dilation = strides[i], dilations[i]
            first = dilation // 2 if (contract_dilation and dilation > 1) else dilation
            downsample = nn.Sequential(nn.MaxPool2d(3, stride=stride, padding=1),
                                       nn.Conv2d(inplanes, out, 1, bias=False), nn.BatchNorm2d(out))
            blocks = [PyConvBlock(inplanes, planes, stride, first, tuple(groups[i]), downsample)]
            for _ in range(1, BLOCKS[depth][i]):
                blocks.append(PyConvBlock(out, planes, 1, dilation, tuple(groups[i]), None))
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = out
            self.out_channels.append(out)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        outs = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            outs.append(x)
        return outs


def conv_bn_relu(cin, cout, k=1, groups=None, padding=0):
    """[conv, BN, ReLU] as three Sequential members (so their indices match segdist's)."""
    conv = PyConv(cin, cout, groups) if groups is not None else nn.Conv2d(cin, cout, k, padding=padding, bias=False)
    return [conv, nn.BatchNorm2d(cout), nn.ReLU()]


class LocalContext(nn.Module):
    def __init__(self, cin, cout, groups):
        super().__init__()
        mid = cin // 4
        self.layers = nn.Sequential(*conv_bn_relu(cin, mid), *conv_bn_relu(mid, mid, groups=groups),
                                    *conv_bn_relu(mid, cout))

    def forward(self, x):
        return self.layers(x)


class GlobalContext(nn.Module):
    def __init__(self, cin, cout, groups, bins, align_corners):
        super().__init__()
        self.align_corners = align_corners
        self.features = nn.Sequential(nn.AdaptiveAvgPool2d(bins), *conv_bn_relu(cin, cout),
                                      *conv_bn_relu(cout, cout, groups=groups), *conv_bn_relu(cout, cout))

    def forward(self, x):
        return F.interpolate(self.features(x), size=x.shape[2:], mode="bilinear", align_corners=self.align_corners)


class MergeContext(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.features = nn.Sequential(*conv_bn_relu(cin, cout, 3, padding=1))

    def forward(self, local, glob):
        return self.features(torch.cat([local, glob], dim=1))


class PyConvHead(nn.Module):
    """Branches 2 * ch wide (iduta: ch 256 -> 512), local reduction cin // 4; dropout 0 in the goldens."""

    def __init__(self, cin, ch, num_classes, groups, align_corners, bins=9):
        super().__init__()
        self.local_context = LocalContext(cin, 2 * ch, groups)
        self.global_context = GlobalContext(cin, 2 * ch, groups, bins, align_corners)
        self.merge_context = MergeContext(4 * ch, ch)
        self.conv_seg = nn.Conv2d(ch, num_classes, 1)

    def forward(self, feats):
        x = feats[3]
        return self.conv_seg(self.merge_context(self.local_context(x), self.global_context(x)))

"""mmseg's ResNet (V1b: 7x7 stem; V1c: 3-conv deep stem; V1d: deep stem + average-pool shortcut) with
the dilated stages of its PSPNet/DeepLab configs (strides 1,2,1,1 / dilations 1,1,2,4 for output
stride 8; 1,2,2,1 / 1,1,1,2 for 16). Every residual block has last_bn(): the BN that ends its residual
branch (make_parity_goldens.randomize damps it)."""

import torch.nn as nn


def conv3x3(cin, cout, stride=1, dilation=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """mmseg's BasicBlock: only conv1 carries stride and dilation; conv2 is a plain 3x3."""

    expansion = 1

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def last_bn(self):
        return self.bn2

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """mmseg's Bottleneck, style 'pytorch': the 3x3 carries stride and dilation."""

    expansion = 4

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def last_bn(self):
        return self.bn3

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


ARCH = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)), 152: (Bottleneck, (3, 8, 36, 3))}
STAGES = {8: ((1, 2, 1, 1), (1, 1, 2, 4)), 16: ((1, 2, 2, 1), (1, 1, 1, 2)), 32: ((1, 2, 2, 2), (1, 1, 1, 1))}


class ResNet(nn.Module):
    """mmseg ResNet / ResNetV1c / ResNetV1d with stem_channels = base_channels."""

    def __init__(self, depth, stem, output_stride, base, contract_dilation):
        super().__init__()
        block, counts = ARCH[depth]
        strides, dilations = STAGES[output_stride]
        self.stem_type = stem
        if stem == "v1b":
            self.conv1 = nn.Conv2d(3, base, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(base)
            self.relu = nn.ReLU()
        else:
            half = base // 2
            self.stem = nn.Sequential(
                nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
                nn.Conv2d(half, half, 3, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
                nn.Conv2d(half, base, 3, padding=1, bias=False), nn.BatchNorm2d(base), nn.ReLU(),
            )
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        avg_down = stem == "v1d"
        inplanes = base
        self.out_channels = []
        for i in range(4):
            planes = base * 2 ** i
            stride, dilation = strides[i], dilations[i]
            out = planes * block.expansion
            downsample = None
            if stride != 1 or inplanes != out:
                members = []
                if avg_down:
                    # mmseg adds the pool even for stride 1 (a 1x1 identity pool), so the conv is .1
                    members.append(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False))
                members += [nn.Conv2d(inplanes, out, 1, stride=1 if avg_down else stride, bias=False),
                            nn.BatchNorm2d(out)]
                downsample = nn.Sequential(*members)
            first_dilation = dilation // 2 if (contract_dilation and dilation > 1) else dilation
            blocks = [block(inplanes, planes, stride, first_dilation, downsample)]
            for _ in range(1, counts[i]):
                blocks.append(block(out, planes, 1, dilation, None))
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = out
            self.out_channels.append(out)

    def forward(self, x):
        if self.stem_type == "v1b":
            x = self.relu(self.bn1(self.conv1(x)))
        else:
            x = self.stem(x)
        x = self.maxpool(x)
        outs = []
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
            outs.append(x)
        return outs

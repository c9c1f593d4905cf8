#!/usr/bin/python3
"""Writes the key + shape manifests in test/fixtures/weights/ that the weight-import tests map.

Run by hand with Debian's PyTorch and torchvision (apt-get install python3-torch python3-torchvision)
and commit the output; the tests never need PyTorch:

    /usr/bin/python3 tools/make_weight_key_fixtures.py               # writes test/fixtures/weights/*.json
    /usr/bin/python3 tools/make_weight_key_fixtures.py --out DIR

Each manifest is a JSON list of [key, shape] in state_dict() order (num_batches_tracked included), the
names and shapes a real checkpoint of that network holds:

- torchvision-resnet18.json, torchvision-resnet50.json: torchvision.models.resnet18/50().state_dict().
- semseg-pspnet50.json: hszhao/semseg's PSPNet with layers=50, classes=21, as model/pspnet.py builds
  it over model/resnet.py (deep_base=True) in training mode (with the aux branch). semseg is not a
  package, so its module structure is rebuilt below: the same module attributes, Sequential orders and
  widths, which is all state_dict() keys and shapes depend on. Check against semseg's source when it
  changes: layer0 = Sequential(conv1, bn1, relu, conv2, bn2, relu, conv3, bn3, relu, maxpool) with
  the deep stem 3->64->64->128; layer1-4 = torchvision Bottleneck stages starting from 128 channels;
  ppm.features[i] = Sequential(AdaptiveAvgPool2d, Conv2d(2048, 512, 1), BatchNorm2d, ReLU);
  cls / aux = Sequential(Conv2d(4096|1024, 512|256, 3), BatchNorm2d, ReLU, Dropout2d, Conv2d(.., classes, 1)).

And one file with values, semseg-pspnet50-tiny.safetensors: the same PSPNet-50 with every width
divided by 16 (stem 4, 4, 8; stages 4..32 planes; PPM and cls 32, aux 16 channels), 3 classes, seeded
weights and BN statistics rounded to float16 (so F16 storage is exact), saved the way semseg's train.py
saves a DataParallel model (`module.` keys) with the BN counters, plus `golden.input` (1x3x33x41,
NCHW) and `golden.out`: semseg's eval-mode forward (dilated layer3/4, PPM, cls, bilinear resize with
align_corners=True back to the input size), computed in float64 and stored as float32.
"""

import argparse
import json
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import Bottleneck


class SemsegResNetDeepBase(nn.Module):
    """The members of semseg's ResNet(deep_base=True) that PSPNet takes over; base 64 is semseg's."""

    def __init__(self, layers, base=64):
        super().__init__()
        self.inplanes = 2 * base
        self.conv1 = nn.Conv2d(3, base, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.conv2 = nn.Conv2d(base, base, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(base)
        self.conv3 = nn.Conv2d(base, 2 * base, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(2 * base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self.stage(base, layers[0])
        self.layer2 = self.stage(2 * base, layers[1], stride=2)
        self.layer3 = self.stage(4 * base, layers[2], stride=2)
        self.layer4 = self.stage(8 * base, layers[3], stride=2)

    def stage(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4))
        members = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        members += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*members)


class SemsegPSPNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), bins=(1, 2, 3, 6), classes=21, base=64):
        super().__init__()
        r = SemsegResNetDeepBase(layers, base)
        self.layer0 = nn.Sequential(r.conv1, r.bn1, r.relu, r.conv2, r.bn2, r.relu, r.conv3, r.bn3, r.relu, r.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        # semseg dilates every 3x3 conv of layer3 (2) and layer4 (4) and takes the stride off them
        # and off the shortcut convs: output stride 8, no contracted first block.
        for layer, d in ((self.layer3, 2), (self.layer4, 4)):
            for n, m in layer.named_modules():
                if "conv2" in n:
                    m.dilation, m.padding, m.stride = (d, d), (d, d), (1, 1)
                elif "downsample.0" in n:
                    m.stride = (1, 1)
        fea = 32 * base  # 2048 at semseg's width
        self.ppm = nn.Module()
        self.ppm.features = nn.ModuleList([
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(fea, fea // len(bins), 1, bias=False), nn.BatchNorm2d(fea // len(bins)), nn.ReLU(inplace=True))
            for b in bins])
        self.cls = nn.Sequential(nn.Conv2d(2 * fea, 8 * base, 3, padding=1, bias=False), nn.BatchNorm2d(8 * base), nn.ReLU(inplace=True), nn.Dropout2d(0.1), nn.Conv2d(8 * base, classes, 1))
        self.aux = nn.Sequential(nn.Conv2d(16 * base, 4 * base, 3, padding=1, bias=False), nn.BatchNorm2d(4 * base), nn.ReLU(inplace=True), nn.Dropout2d(0.1), nn.Conv2d(4 * base, classes, 1))

    def forward(self, x):
        """semseg's eval-mode forward with zoom_factor 8: logits at the input size."""
        size = x.shape[2:]
        f = self.layer4(self.layer3(self.layer2(self.layer1(self.layer0(x)))))
        f = torch.cat([f] + [F.interpolate(p(f), f.shape[2:], mode="bilinear", align_corners=True) for p in self.ppm.features], 1)
        return F.interpolate(self.cls(f), size, mode="bilinear", align_corners=True)


def manifest(module):
    return [[k, list(v.shape)] for k, v in module.state_dict().items()]


def write_safetensors(path, tensors):
    """tensors: list of (name, torch tensor); F32, F16 or I64, little-endian, data 8-byte aligned."""
    dtypes = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    header, chunks, offset = {}, [], 0
    for name, t in tensors:
        data = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * ((8 - (8 + len(js)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for c in chunks:
            f.write(c)


def tiny_semseg_golden(path):
    torch.manual_seed(0)
    net = SemsegPSPNet(classes=3, base=4)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith("running_var"):
                v = torch.rand(t.shape) + 0.5
            elif name.endswith("running_mean"):
                v = torch.randn(t.shape) * 0.1
            elif t.dim() == 1:  # BN affine and conv biases
                v = torch.randn(t.shape) * 0.2 + (1.0 if name.endswith("weight") else 0.0)
            else:
                v = torch.randn(t.shape) * (2.0 / (t.shape[1] * t.shape[2] * t.shape[3])) ** 0.5
            t.copy_(v.half().float())  # float16-exact, stored as F16 below
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.num_batches_tracked.fill_(1000)
    net.eval()
    x = (torch.rand(1, 3, 33, 41) * 4 - 2).half().float()
    with torch.no_grad():
        out = net.double()(x.double()).float()
    net.float()
    tensors = [("module." + k, v.half() if v.dtype == torch.float32 else v) for k, v in net.state_dict().items()]
    tensors += [("golden.input", x), ("golden.out", out)]
    write_safetensors(path, tensors)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "weights"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    nets = {
        "torchvision-resnet18.json": torchvision.models.resnet18(),
        "torchvision-resnet50.json": torchvision.models.resnet50(),
        "semseg-pspnet50.json": SemsegPSPNet(),
    }
    for name, net in nets.items():
        with open(os.path.join(args.out, name), "w") as f:
            # One tensor per line: readable diffs when a fixture is regenerated.
            f.write("[\n" + ",\n".join(json.dumps(e) for e in manifest(net)) + "\n]\n")
        print(f"wrote {name}")
    tiny_semseg_golden(os.path.join(args.out, "semseg-pspnet50-tiny.safetensors"))
    print("wrote semseg-pspnet50-tiny.safetensors")


if __name__ == "__main__":
    main()

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
"""

import argparse
import json
import os

import torch.nn as nn
import torchvision
from torchvision.models.resnet import Bottleneck


class SemsegResNetDeepBase(nn.Module):
    """The members of semseg's ResNet(deep_base=True) that PSPNet takes over."""

    def __init__(self, layers):
        super().__init__()
        self.inplanes = 128
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self.stage(64, layers[0])
        self.layer2 = self.stage(128, layers[1], stride=2)
        self.layer3 = self.stage(256, layers[2], stride=2)
        self.layer4 = self.stage(512, layers[3], stride=2)

    def stage(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4))
        members = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        members += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*members)


class SemsegPSPNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), bins=(1, 2, 3, 6), classes=21):
        super().__init__()
        r = SemsegResNetDeepBase(layers)
        self.layer0 = nn.Sequential(r.conv1, r.bn1, r.relu, r.conv2, r.bn2, r.relu, r.conv3, r.bn3, r.relu, r.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        self.ppm = nn.Module()
        self.ppm.features = nn.ModuleList([
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(2048, 2048 // len(bins), 1, bias=False), nn.BatchNorm2d(2048 // len(bins)), nn.ReLU(inplace=True))
            for b in bins])
        self.cls = nn.Sequential(nn.Conv2d(4096, 512, 3, padding=1, bias=False), nn.BatchNorm2d(512), nn.ReLU(inplace=True), nn.Dropout2d(0.1), nn.Conv2d(512, classes, 1))
        self.aux = nn.Sequential(nn.Conv2d(1024, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True), nn.Dropout2d(0.1), nn.Conv2d(256, classes, 1))


def manifest(module):
    return [[k, list(v.shape)] for k, v in module.state_dict().items()]


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


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The PyTorch half of bench/eval.ts: the same evaluation in PyTorch, for the same model and weights.

    /usr/bin/python3 tools/bench_eval.py --spec SPEC.json --mode whole|slide|msflip [--threads 1]

bench/eval.ts writes SPEC.json (model config, weights file, normalisation, label map, the images and
labels, test settings) and runs this once per mode; it prints one JSON line: images, wall_s, cpu_s,
mIoU, aAcc. Nothing else is needed: Debian's python3-torch, numpy and OpenCV (python3-opencv).

The model is tools/make_parity_goldens.py's mmseg-style PSPNet (the one the parity tests check segdist
against), without the auxiliary head, which evaluation does not run. The test-time algorithm is
segdist's (src/eval/test-time.ts), written out again in PyTorch:
  whole       logits of the image;
  slide       mmseg's slide_inference windows (the last one moved back to the border), logits of
              overlapping windows averaged;
  multiscale  the image resized by each scale (bilinear, align_corners False = cv2 INTER_LINEAR),
              windows as in slide, logits mirrored back (flip) and resized to the label's size with the
              model's align_corners; one pass: its logits, several: the mean of their softmax.
Images are decoded with OpenCV, labels read as stored indices (cv2.IMREAD_UNCHANGED), and the
timed loop includes decoding, as segdist's does.
"""

import argparse
import importlib.util
import json
import os
import struct
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def load_parity_module():
    spec = importlib.util.spec_from_file_location("parity", os.path.join(HERE, "make_parity_goldens.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": np.float32, "F16": np.float16, "I32": np.int32}[info["dtype"]]
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dtype).reshape(info["shape"]).astype(np.float32)
    return out


def build_model(spec):
    parity = load_parity_module()
    m = spec["model"]
    backbone = parity.ResNet(m["backbone"]["depth"], m["backbone"]["stem"], m["backbone"]["output_stride"],
                             m["backbone"]["base_channels"], m["backbone"].get("contract_dilation", False))
    c = backbone.out_channels
    head = parity.PSPHead(c[3], m["head"]["channels"], spec["num_classes"], tuple(m["head"]["pool_scales"]), m["align_corners"])
    model = parity.EncoderDecoder(backbone, head, None, m["align_corners"])
    weights = read_safetensors(spec["weights"])
    state = {}
    for k, v in weights.items():
        if k.startswith("auxiliary_head."):
            continue
        t = torch.from_numpy(v.copy())
        if t.dim() == 4:  # segdist stores conv weights HWIO
            t = t.permute(3, 2, 0, 1).contiguous()
        state[k] = t
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def windows(h, w, crop, stride):
    def axis(size, c, s):
        grids = max(size - c + s - 1, 0) // s + 1
        out = []
        for i in range(grids):
            end = min(i * s + c, size)
            out.append((max(end - c, 0), min(c, size)))
        return out
    return [(t, l, hh, ww) for t, hh in axis(h, crop[0], stride[0]) for l, ww in axis(w, crop[1], stride[1])]


def logits_of(model, x):
    return model(x)[0]


def slide_logits(model, x, crop, stride, batch):
    n, _, h, w = x.shape
    wins = windows(h, w, crop, stride)
    if len(wins) == 1:
        return logits_of(model, x)
    total = None
    count = torch.zeros(1, 1, h, w)
    per = max(1, batch // n)
    for first in range(0, len(wins), per):
        group = wins[first:first + per]
        crops = torch.cat([x[:, :, t:t + hh, l:l + ww] for t, l, hh, ww in group], 0)
        out = logits_of(model, crops)
        if total is None:
            total = torch.zeros(n, out.shape[1], h, w)
        for i, (t, l, hh, ww) in enumerate(group):
            total[:, :, t:t + hh, l:l + ww] += out[i * n:(i + 1) * n]
            count[:, :, t:t + hh, l:l + ww] += 1
    return total / count


def predict(model, x, out_h, out_w, test, align_corners):
    n, _, h, w = x.shape
    passes = len(test["scales"]) * (2 if test["flip"] else 1)
    acc = None
    for s in test["scales"]:
        sh, sw = max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))
        xs = x if (sh, sw) == (h, w) else F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False)
        if test["mode"] == "whole":
            run = lambda inp: logits_of(model, inp)
        else:
            run = lambda inp: slide_logits(model, inp, test["crop_size"], test["stride"], test["batch_size"])
        if not test["flip"]:
            parts = [run(xs)]
        elif test["mode"] == "whole":  # both orientations in one forward pass, as segdist
            both = run(torch.cat([xs, xs.flip(3)], 0))
            parts = [both[:n], both[n:].flip(3)]
        else:  # slide: one orientation after the other, as segdist
            parts = [run(xs), run(xs.flip(3)).flip(3)]
        for p in parts:
            if p.shape[2:] != (out_h, out_w):
                p = F.interpolate(p, size=(out_h, out_w), mode="bilinear", align_corners=align_corners)
            score = p if passes == 1 else F.softmax(p, dim=1)
            acc = score if acc is None else acc + score
    return acc if passes == 1 else acc / passes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    with open(args.spec) as f:
        spec = json.load(f)
    run = spec["modes"][args.mode]
    test = run["test"]
    model = build_model(spec)
    k = spec["num_classes"]
    ignore = spec["ignore_index"]
    lut = np.arange(256, dtype=np.uint8)
    for a, b in spec["label_map"].items():
        lut[int(a)] = b
    mean = np.array(spec["mean"], dtype=np.float64)
    inv_std = 1.0 / np.array(spec["std"], dtype=np.float64)
    conf = np.zeros((k, k), dtype=np.int64)
    samples = run["samples"]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for image_path, label_path in samples:
            bgr = cv2.imread(image_path, cv2.IMREAD_COLOR)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            img = ((rgb.astype(np.float64) - mean) * inv_std).astype(np.float32)
            label = lut[cv2.imread(label_path, cv2.IMREAD_UNCHANGED)]
            x = torch.from_numpy(img.transpose(2, 0, 1).copy()).unsqueeze(0)
            pred = predict(model, x, label.shape[0], label.shape[1], test, spec["model"]["align_corners"]).argmax(1)[0].numpy()
            keep = label != ignore
            conf += np.bincount(label[keep].astype(np.int64) * k + pred[keep], minlength=k * k).reshape(k, k)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    print(json.dumps({"images": len(samples), "wall_s": wall, "cpu_s": cpu, "mIoU": float(np.nanmean(iou)),
                      "aAcc": float(tp.sum() / max(conf.sum(), 1)), "predicted": conf.sum(0).tolist(),
                      "torch": torch.__version__, "threads": args.threads}))


if __name__ == "__main__":
    sys.exit(main())

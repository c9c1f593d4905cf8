#!/usr/bin/python3
"""The PSPNet training transforms (semseg's recipe) in OpenCV + numpy, timed per sample, for
bench/data.ts to put beside segdist's worker pool. One process, OpenCV limited to one thread
(cv2.setNumThreads(1)) unless --cv-threads says otherwise.

Per sample: imread the JPEG (BGR -> RGB) and the label PNG (unchanged, one channel), map labels
through a lookup table, then
  random scale 0.5-2.0 (INTER_LINEAR image, INTER_NEAREST label)
  random rotate +-10 degrees with probability 0.5 (warpAffine; border mean / ignore)
  Gaussian blur 5x5 with probability 0.5
  horizontal flip with probability 0.5
  pad to the crop size (mean / ignore), random crop
  normalise to float32 (x - mean) / std
Input: a file of "image label" path pairs. Output: one JSON line on stdout.

    /usr/bin/python3 tools/opencv/bench_augment.py --pairs pairs.txt --crop 256 256 --repeat 1
"""
import argparse
import json
import random
import resource
import time

import cv2
import numpy as np

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def augment(rgb, label, crop_h, crop_w, rng, ignore=255):
    h, w = label.shape
    s = rng.uniform(0.5, 2.0)
    nh, nw = max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))
    rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)
    if rng.random() < 0.5:
        angle = rng.uniform(-10, 10)
        m = cv2.getRotationMatrix2D(((nw - 1) / 2.0, (nh - 1) / 2.0), angle, 1.0)
        rgb = cv2.warpAffine(rgb, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in MEAN))
        label = cv2.warpAffine(label, m, (nw, nh), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=ignore)
    if rng.random() < 0.5:
        rgb = cv2.GaussianBlur(rgb, (5, 5), 0)
    if rng.random() < 0.5:
        rgb = cv2.flip(rgb, 1)
        label = cv2.flip(label, 1)
    ph, pw = max(crop_h - nh, 0), max(crop_w - nw, 0)
    if ph > 0 or pw > 0:
        rgb = cv2.copyMakeBorder(rgb, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=tuple(float(v) for v in MEAN))
        label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=ignore)
    h2, w2 = label.shape
    top = rng.randint(0, h2 - crop_h)
    left = rng.randint(0, w2 - crop_w)
    rgb = rgb[top:top + crop_h, left:left + crop_w]
    label = label[top:top + crop_h, left:left + crop_w]
    image = (rgb.astype(np.float32) - MEAN) / STD
    return image, label.astype(np.int32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pairs', required=True)
    ap.add_argument('--crop', type=int, nargs=2, default=[256, 256])
    ap.add_argument('--repeat', type=int, default=1)
    ap.add_argument('--cv-threads', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0)
    args = ap.parse_args()
    cv2.setNumThreads(args.cv_threads)
    with open(args.pairs) as f:
        pairs = [line.split() for line in f if line.strip()]
    lut = np.arange(256, dtype=np.uint8)
    lut[11] = 255
    rng = random.Random(args.seed)
    # Warm-up: first calls load codecs and allocate.
    for img, lab in pairs[:4]:
        augment(cv2.imread(img, cv2.IMREAD_COLOR)[:, :, ::-1], cv2.LUT(cv2.imread(lab, cv2.IMREAD_UNCHANGED), lut), args.crop[0], args.crop[1], rng)
    n = 0
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        for img, lab in pairs:
            rgb = cv2.imread(img, cv2.IMREAD_COLOR)
            if rgb is None:
                raise SystemExit('cannot read ' + img)
            rgb = np.ascontiguousarray(rgb[:, :, ::-1])
            label = cv2.LUT(cv2.imread(lab, cv2.IMREAD_UNCHANGED), lut)
            augment(rgb, label, args.crop[0], args.crop[1], rng)
            n += 1
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(json.dumps({'samples': n, 'wall_s': wall, 'cpu_s': cpu, 'samples_per_s': n / wall, 'cpu_s_per_sample': cpu / n,
                      'opencv': cv2.__version__, 'cv_threads': cv2.getNumThreads()}))


if __name__ == '__main__':
    main()

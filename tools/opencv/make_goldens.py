#!/usr/bin/python3
"""Writes the OpenCV goldens for test/data-opencv-golden.test.ts from real CamVid frames.

For each frame: a crop of the decoded frame and of its label (PNG, so both sides start from the same
pixels whatever JPEG decoder they use), then what OpenCV (python3-opencv from Debian apt) makes of it:
  resize    cv2.resize, INTER_LINEAR for the image, INTER_NEAREST_EXACT for the label
  rotate    cv2.warpAffine with cv2.getRotationMatrix2D(((w-1)/2, (h-1)/2), angle, 1), INTER_LINEAR /
            INTER_NEAREST, BORDER_CONSTANT with 0 for the image and 255 for the label
  blur      cv2.GaussianBlur(img, (5, 5), 0)
Images are written as RGB PNGs, labels as 8-bit grey PNGs, with manifest.json listing every case.

Run from the repository root (needs ../shared/datasets/camvid):
    /usr/bin/python3 tools/opencv/make_goldens.py
"""
import json
import os
import sys

import cv2
import numpy as np

CAMVID = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared', 'datasets', 'camvid')
OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'test', 'fixtures', 'data', 'opencv')

# (split, stem, top, left): 64x96 crops with roads, cars, poles and sky edges in them.
FRAMES = [('train', '0001TP_006690', 150, 200), ('train', '0016E5_00390', 120, 300)]
H, W = 64, 96
RESIZES = [(35, 53), (109, 163)]  # x0.55 and x1.7, non-integer factors on purpose
ANGLES = [10.0, -7.5]


def write_rgb(path, rgb):
    assert cv2.imwrite(path, np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def write_label(path, label):
    assert label.dtype == np.uint8 and label.ndim == 2
    assert cv2.imwrite(path, label, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []
    frames = []
    for split, stem, top, left in FRAMES:
        bgr = cv2.imread(os.path.join(CAMVID, 'images', split, stem + '.jpg'), cv2.IMREAD_COLOR)
        lab = cv2.imread(os.path.join(CAMVID, 'labels', split, stem + '.png'), cv2.IMREAD_UNCHANGED)
        if bgr is None or lab is None:
            sys.exit('CamVid frame %s not found under %s' % (stem, CAMVID))
        rgb = bgr[top:top + H, left:left + W, ::-1].copy()
        lab = lab[top:top + H, left:left + W].copy()
        write_rgb(os.path.join(OUT, stem + '.png'), rgb)
        write_label(os.path.join(OUT, stem + '_label.png'), lab)
        frames.append({'stem': stem, 'image': stem + '.png', 'label': stem + '_label.png', 'source': '%s/%s.jpg rows %d-%d, cols %d-%d' % (split, stem, top, top + H - 1, left, left + W - 1)})
        for oh, ow in RESIZES:
            name = '%s_resize_%dx%d' % (stem, oh, ow)
            write_rgb(os.path.join(OUT, name + '.png'), cv2.resize(rgb, (ow, oh), interpolation=cv2.INTER_LINEAR))
            write_label(os.path.join(OUT, name + '_label.png'), cv2.resize(lab, (ow, oh), interpolation=cv2.INTER_NEAREST_EXACT))
            cases.append({'op': 'resize', 'frame': stem, 'size': [oh, ow], 'image': name + '.png', 'label': name + '_label.png'})
        for angle in ANGLES:
            name = '%s_rotate_%s' % (stem, ('%+.1f' % angle).replace('.', 'p'))
            m = cv2.getRotationMatrix2D(((W - 1) / 2.0, (H - 1) / 2.0), angle, 1.0)
            img = cv2.warpAffine(rgb, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
            lbl = cv2.warpAffine(lab, m, (W, H), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=255)
            write_rgb(os.path.join(OUT, name + '.png'), img)
            write_label(os.path.join(OUT, name + '_label.png'), lbl)
            cases.append({'op': 'rotate', 'frame': stem, 'degrees': angle, 'image': name + '.png', 'label': name + '_label.png'})
        name = '%s_blur5' % stem
        write_rgb(os.path.join(OUT, name + '.png'), cv2.GaussianBlur(rgb, (5, 5), 0))
        cases.append({'op': 'gaussian_blur', 'frame': stem, 'kernel_size': 5, 'image': name + '.png'})
    manifest = {'generator': 'tools/opencv/make_goldens.py', 'opencv': cv2.__version__, 'numpy': np.__version__, 'frames': frames, 'cases': cases}
    with open(os.path.join(OUT, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=2)
        f.write('\n')
    print('wrote %d frames and %d cases to %s' % (len(frames), len(cases), os.path.normpath(OUT)))


if __name__ == '__main__':
    main()

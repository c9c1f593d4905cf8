// Our resize, rotate and blur against OpenCV's on crops of real CamVid frames. The goldens were made
// by tools/opencv/make_goldens.py (python3-opencv from Debian, version in manifest.json); this test
// only reads the committed PNGs. OpenCV works in fixed point on uint8 (11-bit resize weights, 1/32
// pixel warp coordinates), we in floating point rounded at the end, so the bounds are on the mean
// absolute difference per channel value, reported for each case.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { BlurStep, gaussianKernel, ResizeStep, RotateStep, type Step } from '../src/data/augment';
import { readIndexPng } from '../src/data/png-index';

const DIR = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'data', 'opencv');

interface Case {
  op: 'resize' | 'rotate' | 'gaussian_blur';
  frame: string;
  size?: [number, number];
  degrees?: number;
  kernel_size?: number;
  image: string;
  label?: string;
}

const manifest = JSON.parse(readFileSync(path.join(DIR, 'manifest.json'), 'utf8')) as {
  opencv: string;
  frames: Array<{ stem: string; image: string; label: string }>;
  cases: Case[];
};

async function rgb(file: string): Promise<{ data: Uint8Array; height: number; width: number }> {
  const { data, info } = await sharp(path.join(DIR, file)).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  return { data: new Uint8Array(data), height: info.height, width: info.width };
}

const full = (h: number, w: number) => ({ top: 0, left: 0, height: h, width: w });

function stepFor(c: Case, h: number, w: number): Step {
  switch (c.op) {
    case 'resize':
      return new ResizeStep(h, w, c.size![0], c.size![1]);
    case 'rotate':
      return new RotateStep(h, w, c.degrees!, [0, 0, 0], 255);
    case 'gaussian_blur':
      return new BlurStep(h, w, gaussianKernel(c.kernel_size!, null));
  }
}

const BOUNDS: Record<Case['op'], { mad: number; max: number; labelMismatch: number }> = {
  // Same taps and weights up to OpenCV's 11-bit weight rounding. Labels: see tieOnly below.
  resize: { mad: 0.3, max: 2, labelMismatch: 0.002 },
  // OpenCV snaps source coordinates to 1/32 pixel; nearest-neighbour labels can flip on boundaries.
  rotate: { mad: 0.6, max: 8, labelMismatch: 0.01 },
  blur: { mad: 0.3, max: 1, labelMismatch: 0 },
} as Record<string, { mad: number; max: number; labelMismatch: number }>;

for (const c of manifest.cases) {
  const name = `${c.op} ${c.frame} ${c.size ? c.size.join('x') : c.degrees !== undefined ? `${c.degrees} deg` : `k${c.kernel_size}`} matches OpenCV ${manifest.opencv}`;
  test(name, async (t) => {
    const frame = manifest.frames.find((f) => f.stem === c.frame)!;
    const src = await rgb(frame.image);
    const step = stepFor(c, src.height, src.width);
    const out = step.image({ data: Float32Array.from(src.data), rect: full(src.height, src.width) }, full(step.height, step.width)).data;
    const want = await rgb(c.image);
    assert.deepEqual([want.height, want.width], [step.height, step.width]);
    let sum = 0;
    let max = 0;
    for (let i = 0; i < out.length; i++) {
      const d = Math.abs(Math.min(255, Math.max(0, Math.round(out[i]))) - want.data[i]);
      sum += d;
      max = Math.max(max, d);
    }
    const mad = sum / out.length;
    const bound = BOUNDS[c.op === 'gaussian_blur' ? ('blur' as Case['op']) : c.op];
    let report = `image: mean abs diff ${mad.toFixed(4)} per value (bound ${bound.mad}), max ${max} (bound ${bound.max})`;
    if (c.label !== undefined && step.label !== undefined) {
      const srcLabel = await readIndexPng(path.join(DIR, frame.label));
      const ours = step.label({ data: srcLabel.data, rect: full(srcLabel.height, srcLabel.width) }, full(step.height, step.width)).data;
      const theirs = (await readIndexPng(path.join(DIR, c.label))).data;
      let mismatch = 0;
      for (let i = 0; i < ours.length; i++) {
        if (ours[i] === theirs[i]) continue;
        mismatch++;
        if (c.op === 'resize') {
          // floor((o + 0.5) * in / out) and INTER_NEAREST_EXACT's fixed point agree except where the
          // output centre falls exactly between two source pixels: a tie either answer is right for.
          const y = Math.floor(i / step.width);
          const x = i % step.width;
          const tie = (o: number, n: number, m: number) => Number.isInteger(((o + 0.5) * n) / m);
          assert.ok(tie(y, srcLabel.height, step.height) || tie(x, srcLabel.width, step.width), `label differs at (x=${x}, y=${y}), not a tie`);
        }
      }
      const share = mismatch / ours.length;
      report += `; label: ${mismatch} of ${ours.length} pixels differ (${(100 * share).toFixed(2)}%, bound ${100 * bound.labelMismatch}%)`;
      assert.ok(share <= bound.labelMismatch, report);
    }
    t.diagnostic(report);
    assert.ok(mad <= bound.mad, report);
    assert.ok(max <= bound.max, report);
  });
}

test('the fixture covers resize down and up, both rotation directions and blur on two frames', () => {
  assert.equal(manifest.frames.length, 2);
  const ops = manifest.cases.map((c) => c.op);
  assert.equal(ops.filter((o) => o === 'resize').length, 4);
  assert.equal(ops.filter((o) => o === 'rotate').length, 4);
  assert.ok(manifest.cases.some((c) => c.degrees! > 0) && manifest.cases.some((c) => c.degrees! < 0));
});

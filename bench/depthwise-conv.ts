// The atrous depthwise convolution of DeepLabV3+'s ASPP at its real sizes, on wasm (or cpu):
//
//   node dist/bench/depthwise-conv.js [--backend wasm] [--iters 3] [--channels 2048] [--batch 1]
//
// For each case (feature map of a 512x512 crop at output stride 8 and 16, with that stride's
// dilations) it times, as medians over --iters after a warm-up run:
//   forward       the backend's DepthwiseConv2dNative with dilations (what src/backend/depthwise-conv2d.ts runs);
//   dx            our input gradient (forward + dx, minus forward) (the same kernel on dy with the flipped filter);
//   dw            our filter gradient (per-tap window products reduced to [C]; both gradients minus
//                 forward + dx);
//   dw ones-mm    the same with each tap's reduction as ones[1, R] x product[R, C] instead of tf.sum
//                 (which transposes the channels to the front first on wasm): measured slower;
//   spread fwd    the forward conv with the zero-spread (d(k-1)+1)^2 filter, the usual work-around;
//   phases fwd    the forward conv on the d*d phase sub-grids of the padded input batched together.
// The last two are the alternatives the module's comment rejects; only their forward pass is timed
// (their backward is at least as costly).

import * as tf from '@tensorflow/tfjs';
import { depthwiseConv2d, depthwiseFilterGradient, depthwiseInputGradient } from '../src/backend/depthwise-conv2d';
import { loadBackend, type ConcreteBackendName } from '../src/backend/load-backend';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

function time(iters: number, f: () => tf.Tensor | tf.Tensor[]): number {
  const once = () => {
    const t0 = performance.now();
    tf.tidy(() => {
      const r = f();
      for (const t of Array.isArray(r) ? r : [r]) t.dataSync();
    });
    return performance.now() - t0;
  };
  once();
  const ts = Array.from({ length: iters }, once).sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

function spread(filter: tf.Tensor4D, d: number): tf.Tensor4D {
  const [k, , c] = filter.shape;
  const big = d * (k - 1) + 1;
  const src = filter.dataSync();
  const out = new Float32Array(big * big * c);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) for (let ch = 0; ch < c; ch++) out[((i * d) * big + j * d) * c + ch] = src[(i * k + j) * c + ch];
  return tf.tensor4d(out, [big, big, c, 1]);
}

/** Forward by phase sub-grids: pad to a multiple of d, split, undilated valid conv, interleave. */
function phases(x: tf.Tensor4D, f: tf.Tensor4D, d: number): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const k = f.shape[0];
  const p = d;
  const hp = Math.ceil((h + 2 * p) / d) * d;
  const wp = Math.ceil((w + 2 * p) / d) * d;
  const padded = tf.pad(x, [[0, 0], [p, hp - h - p], [p, wp - w - p], [0, 0]]);
  const a = tf.reshape(padded, [n, hp / d, d, wp / d, d, c]);
  const b = tf.reshape(tf.transpose(a, [2, 4, 0, 1, 3, 5]), [d * d * n, hp / d, wp / d, c]) as tf.Tensor4D;
  const y = tf.depthwiseConv2d(b, f, 1, 'valid');
  const oh = hp / d - (k - 1);
  const ow = wp / d - (k - 1);
  const back = tf.transpose(tf.reshape(y, [d, d, n, oh, ow, c]), [2, 3, 0, 4, 1, 5]);
  return tf.slice(tf.reshape(back, [n, oh * d, ow * d, c]), [0, 0, 0, 0], [n, h, w, c]) as tf.Tensor4D;
}

async function main(): Promise<void> {
  const backend = arg('backend', 'wasm') as ConcreteBackendName;
  await loadBackend(backend);
  const iters = Number(arg('iters', '3'));
  const c = Number(arg('channels', '2048'));
  const n = Number(arg('batch', '1'));
  const cases = [
    { os: 8, size: 64, dilations: [12, 24, 36] },
    { os: 16, size: 32, dilations: [6, 12, 18] },
  ];
  console.log(`backend ${tf.getBackend()}, input [${n}, size, size, ${c}], 3x3 depthwise, ms (median of ${iters})`);
  console.log('OS  map    d   forward      dx      dw  dw ones-mm  spread fwd  phases fwd');
  for (const { os, size, dilations } of cases) {
    for (const d of dilations) {
      const x = tf.randomNormal([n, size, size, c]) as tf.Tensor4D;
      const f = tf.randomNormal([3, 3, c, 1]) as tf.Tensor4D;
      const dy = tf.randomNormal([n, size, size, c]) as tf.Tensor4D;
      const g = { padding: d, dilation: d };
      const fwd = time(iters, () => depthwiseConv2d(x, f, g));
      const dx = time(iters, () => depthwiseInputGradient(dy, f, x.shape, g));
      const dw = time(iters, () => depthwiseFilterGradient(x, dy, 3, 3, g));
      const dwSum = time(iters, () => {
        const taps: tf.Tensor[] = [];
        for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) {
          const o = [ky * d - d, kx * d - d];
          const s = o.map((v) => Math.max(0, -v));
          const e = o.map((v) => Math.min(size, size - v));
          if (e[0] <= s[0] || e[1] <= s[1]) { taps.push(tf.zeros([1, c])); continue; }
          const sz: [number, number, number, number] = [n, e[0] - s[0], e[1] - s[1], c];
          const prod = tf.mul(tf.slice(dy, [0, s[0], s[1], 0], sz), tf.slice(x, [0, s[0] + o[0], s[1] + o[1], 0], sz));
          const rows = prod.size / c;
          taps.push(tf.matMul(tf.ones([1, rows]), tf.reshape(prod, [rows, c])));
        }
        return tf.stack(taps);
      });
      const big = spread(f, d);
      const spreadFwd = d > 24 ? NaN : time(1, () => tf.depthwiseConv2d(x, big, 1, d));
      big.dispose();
      const phaseFwd = time(iters, () => phases(x, f, d));
      const check = tf.tidy(() => tf.max(tf.abs(tf.sub(phases(x, f, d), depthwiseConv2d(x, f, g)))).dataSync()[0]);
      if (!(check < 1e-3)) throw new Error(`phase forward differs by ${check}`);
      console.log(`${String(os).padStart(2)}  ${size}x${size} ${String(d).padStart(3)} ${fwd.toFixed(1).padStart(8)} ` +
        `${dx.toFixed(1).padStart(7)} ${dw.toFixed(1).padStart(7)} ${dwSum.toFixed(1).padStart(10)} ` +
        `${spreadFwd.toFixed(1).padStart(11)} ${phaseFwd.toFixed(1).padStart(11)}`);
      [x, f, dy].forEach((t) => t.dispose());
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

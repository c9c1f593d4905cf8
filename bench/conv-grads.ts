// Micro-benchmark of the conv gradient kernels on PSPNet-ResNet-18-like
// shapes (128x128 input, batch 4, output stride 8, dilated layer3/4).
//   npx tsc -p . && node dist/bench/conv-grads.js [--no-cpu]
// Prints GFLOP/s: our wasm kernels, the stock wasm Conv2DBackpropInput, the
// cpu backend's kernels, and the forward conv (XNNPACK) for scale.
import * as tf from '@tensorflow/tfjs';
import { loadBackend } from '../src/backend/load-backend';
import { registerWasmKernels, unregisterWasmKernels } from '../src/backend/register-wasm-kernels';

type Shape4 = [number, number, number, number];

interface Shape {
  name: string;
  x: Shape4;
  filter: Shape4;
  strides: number;
  pad: 'same' | 'valid' | number;
  dilations: number;
}

const SHAPES: Shape[] = [
  { name: 'stem 7x7/2 3->64 @128', x: [4, 128, 128, 3], filter: [7, 7, 3, 64], strides: 2, pad: 3, dilations: 1 },
  { name: 'layer1 3x3 64->64 @32', x: [4, 32, 32, 64], filter: [3, 3, 64, 64], strides: 1, pad: 'same', dilations: 1 },
  { name: 'layer2 3x3/2 64->128 @32', x: [4, 32, 32, 64], filter: [3, 3, 64, 128], strides: 2, pad: 'same', dilations: 1 },
  { name: 'layer2 1x1/2 64->128 @32', x: [4, 32, 32, 64], filter: [1, 1, 64, 128], strides: 2, pad: 'valid', dilations: 1 },
  { name: 'layer3 3x3 d2 256->256 @16', x: [4, 16, 16, 256], filter: [3, 3, 256, 256], strides: 1, pad: 'same', dilations: 2 },
  { name: 'layer4 3x3 d4 512->512 @16', x: [4, 16, 16, 512], filter: [3, 3, 512, 512], strides: 1, pad: 'same', dilations: 4 },
  { name: 'psp bottleneck 3x3 1024->512 @16', x: [4, 16, 16, 1024], filter: [3, 3, 1024, 512], strides: 1, pad: 'same', dilations: 1 },
];

// The cpu backend's filter gradient runs at ~0.01 GFLOP/s; only the two
// lightest shapes, batch 1, are affordable.
const CPU_SHAPES = new Set([SHAPES[1].name, SHAPES[2].name]);

function gflops(s: Shape, batch: number): number {
  const info = tf.backend_util.computeConv2DInfo(
      [batch, s.x[1], s.x[2], s.x[3]], s.filter, s.strides, s.dilations, s.pad);
  return 2 * batch * info.outHeight * info.outWidth *
      info.filterHeight * info.filterWidth * info.inChannels * info.outChannels / 1e9;
}

/** Best of `repeats` timed runs after one warm-up, in seconds. */
function time(fn: () => void, repeats: number, warmup = true): number {
  if (warmup) fn();
  let best = Infinity;
  for (let i = 0; i < repeats; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return best;
}

function kernels(s: Shape, batch: number) {
  const xShape: Shape4 = [batch, s.x[1], s.x[2], s.x[3]];
  const x = tf.randomUniform(xShape, -1, 1);
  const w = tf.randomUniform(s.filter, -1, 1);
  const dyShape = tf.backend_util.computeConv2DInfo(xShape, s.filter, s.strides, s.dilations, s.pad).outShape;
  const dy = tf.randomUniform(dyShape, -1, 1);
  const attrs = { strides: s.strides, pad: s.pad, dataFormat: 'NHWC', dilations: s.dilations };
  const run = (name: string, inputs: tf.NamedTensorMap, extra: object) => () => {
    (tf.engine().runKernel(name, inputs, { ...attrs, ...extra } as tf.NamedAttrMap) as tf.Tensor).dispose();
  };
  return {
    forward: run(tf.Conv2D, { x, filter: w }, {}),
    filterGrad: run(tf.Conv2DBackpropFilter, { x, dy }, { filterShape: s.filter }),
    inputGrad: run(tf.Conv2DBackpropInput, { dy, filter: w }, { inputShape: xShape }),
    dispose: () => tf.dispose([x, w, dy]),
  };
}

function fmt(gflop: number, seconds: number): string {
  return `${(gflop / seconds).toFixed(1).padStart(6)} GF/s ${(seconds * 1e3).toFixed(0).padStart(6)} ms`;
}

async function main(): Promise<void> {
  const withCpu = !process.argv.includes('--no-cpu');
  await loadBackend('wasm');
  console.log('GFLOP/s per kernel, best of 2 after a warm-up (cpu: one run, batch 1).');
  console.log('stock wasm Conv2DBackpropInput ignores dilations: its number is the same work, undilated.');
  for (const s of SHAPES) {
    const work = gflops(s, s.x[0]);
    console.log(`\n${s.name}  x=[${s.x}] filter=[${s.filter}] stride ${s.strides} dilation ${s.dilations}  ${work.toFixed(2)} GFLOP per kernel`);
    await tf.setBackend('wasm');
    registerWasmKernels();
    let k = kernels(s, s.x[0]);
    const fwd = time(k.forward, 2);
    const filt = time(k.filterGrad, 2);
    const inp = time(k.inputGrad, 2);
    unregisterWasmKernels();
    const stockInp = time(k.inputGrad, s.filter[2] * s.filter[3] >= 256 * 256 ? 1 : 2, false);
    registerWasmKernels();
    k.dispose();
    console.log(`  wasm forward Conv2D (XNNPACK)     ${fmt(work, fwd)}`);
    console.log(`  wasm Conv2DBackpropFilter (ours)  ${fmt(work, filt)}`);
    console.log(`  wasm Conv2DBackpropInput (ours)   ${fmt(work, inp)}`);
    console.log(`  wasm Conv2DBackpropInput (stock)  ${fmt(work, stockInp)}   ours is ${(stockInp / inp).toFixed(1)}x faster`);
    if (withCpu && CPU_SHAPES.has(s.name)) {
      await tf.setBackend('cpu');
      const cpuWork = gflops(s, 1);
      k = kernels(s, 1);
      const cpuFilt = time(k.filterGrad, 1, false);
      const cpuInp = time(k.inputGrad, 1, false);
      k.dispose();
      console.log(`  cpu Conv2DBackpropFilter (batch 1) ${fmt(cpuWork, cpuFilt)}   ours is ${((work / filt) / (cpuWork / cpuFilt)).toFixed(0)}x faster`);
      console.log(`  cpu Conv2DBackpropInput (batch 1)  ${fmt(cpuWork, cpuInp)}   ours is ${((work / inp) / (cpuWork / cpuInp)).toFixed(0)}x faster`);
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

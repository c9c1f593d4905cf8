// Numeric parity of whole segdist models with PyTorch, on the cpu backend. Every
// test/fixtures/parity/model-*.safetensors file (made by tools/make_parity_goldens.py; no PyTorch
// needed here) is one case: the segdist model config it was made for (metadata `model`, built here
// with buildModel, or only its backbone for backbone-only cases), the weights under their state_dict
// names (OIHW, loaded strictly by name, so the names are checked too), and for each variant (a set of
// overrides of that config computed with the same weights) eval-mode logits, train-mode logits, the
// loss sum(out * R) (+ aux_weight * sum(aux * R')), selected parameter gradients, and every BN's
// running statistics after the train-mode forward. Error measure: relErr (max|ours - torch| /
// max(max|torch|, 1e-6)), tolerance 1e-4.
//
// The ResNet cases carry two readings of mmseg's dilated stages (identical weights):
//   'plain'    every block of a dilated stage uses the stage's dilation (mmseg's ResNet default,
//              contract_dilation=False; also hszhao/semseg's PSPNet);
//   'contract' the first block of a dilated stage uses half of it (contract_dilation=True, what
//              mmseg's PSPNet/DeepLab configs set, and torchvision's replace_stride_with_dilation).

import { before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { readdirSync } from 'node:fs';
import { buildBackbone, buildModel, type ModelConfig } from '../src/models/build-model';
import type { Module } from '../src/models/module';
import type { ForwardContext } from '../src/models/context';
import {
  PARITY_DIR, TOLERANCE, hwioToOihw, nchwToNhwc, nhwcToNchw, noise, oihwToHwio, readGoldens, relErr, type GoldenFile,
} from './fixtures/parity/goldens';

type Shape4 = [number, number, number, number];

interface LossSpec {
  noise_seeds: { out: number; aux: number; stage: number };
  aux_weight: number;
}

interface InputSpec {
  shape: Shape4;
  noise_seed: number;
  /** Sample n is noise * sample_scale[n] + sample_shift[n], rounded to float32. */
  sample_scale: number[];
  sample_shift: number[];
}

/** A noise() tensor in PyTorch's NCHW shape, as NHWC. */
function noiseNhwc(shapeNchw: readonly number[], seed: number): tf.Tensor4D {
  const t = nchwToNhwc(noise(shapeNchw, seed), shapeNchw);
  return tf.tensor4d(t.data, t.shape as Shape4);
}

/** The model input of tools/make_parity_goldens.py (model_input), as NHWC. */
function modelInput(spec: InputSpec): tf.Tensor4D {
  const data = noise(spec.shape, spec.noise_seed);
  const per = data.length / spec.shape[0];
  for (let i = 0; i < data.length; i++) {
    const n = Math.floor(i / per);
    data[i] = Math.fround(data[i] * spec.sample_scale[n] + spec.sample_shift[n]);
  }
  const t = nchwToNhwc(data, spec.shape);
  return tf.tensor4d(t.data, t.shape as Shape4);
}

/** Every s-th row and column of an NCHW array ([:, :, ::s, ::s]). */
function subgrid(data: Float32Array, shape: readonly number[], s: number): Float32Array {
  const [n, c, h, w] = shape;
  const oh = Math.ceil(h / s);
  const ow = Math.ceil(w / s);
  const out = new Float32Array(n * c * oh * ow);
  let o = 0;
  for (let b = 0; b < n * c; b++) {
    for (let i = 0; i < h; i += s) for (let j = 0; j < w; j += s) out[o++] = data[(b * h + i) * w + j];
  }
  return out;
}

function nchwShape(t: tf.Tensor): Shape4 {
  const [n, h, w, c] = t.shape;
  return [n, c, h, w];
}

/** The golden's weights (everything not under golden/) as tfjs tensors, conv weights OIHW -> HWIO. */
function stateDict(g: GoldenFile, stripPrefix = ''): Map<string, tf.Tensor> {
  const state = new Map<string, tf.Tensor>();
  for (const [name, a] of g.arrays) {
    if (name.startsWith('golden/')) continue;
    assert.ok(name.startsWith(stripPrefix), `${name} lacks prefix ${stripPrefix}`);
    const key = name.slice(stripPrefix.length);
    if (a.shape.length === 4) {
      const t = oihwToHwio(a.data as Float32Array, a.shape);
      state.set(key, tf.tensor4d(t.data, t.shape as Shape4));
    } else {
      state.set(key, tf.tensor(a.data as Float32Array, a.shape));
    }
  }
  return state;
}

function loadInto(module: Module, g: GoldenFile, stripPrefix = ''): void {
  const state = stateDict(g, stripPrefix);
  module.loadStateDict(state, true); // strict: every name must match both ways
  for (const t of state.values()) t.dispose();
}

/** Everything a case produces, in PyTorch's layouts, keyed like the golden entries. */
interface Results {
  /** NCHW outputs; full-resolution logits (out, aux) on the golden's subgrid. */
  eval: Map<string, Float32Array>;
  train: Map<string, Float32Array>;
  loss: number;
  grads: Map<string, Float32Array>;
  runningMean: Float32Array;
  runningVar: Float32Array;
}

/** A model reduced to "input -> named NHWC outputs" plus the loss's weights per output. */
interface Runner {
  module: Module;
  /** Outputs named as in the goldens (out, aux / stage1..4). */
  forward(x: tf.Tensor4D, ctx: ForwardContext): Map<string, tf.Tensor4D>;
  /** The loss weight of each output: coefficient and noise seed. */
  lossTerm(name: string): { coef: number; seed: number };
}

function run(runner: Runner, input: InputSpec, outSub: number, gradNames: string[], bnNames: string[]): Results {
  const module = runner.module;
  const params = new Map(module.namedParameters());
  const buffers = new Map(module.namedBuffers());
  const eval_ = new Map<string, Float32Array>();
  const train = new Map<string, Float32Array>();
  let loss = NaN;
  const grads = new Map<string, Float32Array>();

  tf.tidy(() => {
    const x = modelInput(input);
    const nchw = (k: string, t: tf.Tensor4D) => {
      const a = nhwcToNchw(t.dataSync() as Float32Array, t.shape);
      return k === 'out' || k === 'aux' ? subgrid(a.data, a.shape, outSub) : a.data;
    };
    for (const [k, t] of runner.forward(x, { training: false, seed: 0 })) eval_.set(k, nchw(k, t));
    const vars = gradNames.map((n) => {
      const v = params.get(n);
      assert.ok(v !== undefined, `model has no parameter ${n}`);
      return v;
    });
    const kept: [string, tf.Tensor4D][] = [];
    const { value, grads: gs } = tf.variableGrads(() => {
      const outs = runner.forward(x, { training: true, seed: 0 });
      let total: tf.Scalar = tf.scalar(0);
      for (const [k, t] of outs) {
        kept.push([k, tf.keep(t.clone())]);
        const { coef, seed } = runner.lossTerm(k);
        total = tf.add(total, tf.mul(coef, tf.sum(tf.mul(t, noiseNhwc(nchwShape(t), seed)))));
      }
      return total;
    }, vars);
    loss = value.dataSync()[0];
    for (const [k, t] of kept) {
      train.set(k, nchw(k, t));
      t.dispose();
    }
    gradNames.forEach((n, i) => {
      const gt = gs[vars[i].name];
      const data = gt.dataSync() as Float32Array;
      grads.set(n, gt.rank === 4 ? hwioToOihw(data, gt.shape).data : data.slice());
    });
  });

  const cat = (suffix: string) => {
    const parts = bnNames.map((n) => {
      const b = buffers.get(`${n}.${suffix}`);
      assert.ok(b !== undefined, `model has no buffer ${n}.${suffix}`);
      return b.dataSync() as Float32Array;
    });
    const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  };
  return { eval: eval_, train, loss, grads, runningMean: cat('running_mean'), runningVar: cat('running_var') };
}

/** Compares one variant's goldens; returns the failures (empty when all pass). */
function compare(t: TestContext, g: GoldenFile, variant: string, r: Results, gradNames: string[]): string[] {
  const failures: string[] = [];
  const check = (what: string, actual: ArrayLike<number>, key: string) => {
    const expected = g.get(`golden/${variant}/${key}`).data;
    const err = relErr(actual, expected);
    t.diagnostic(`${what}: rel err ${err.toExponential(2)}`);
    if (!(err < TOLERANCE)) failures.push(`${what}: relative error ${err.toExponential(2)} >= ${TOLERANCE}`);
  };
  for (const [k, v] of r.eval) check(`eval ${k}`, v, `eval/${k}`);
  for (const [k, v] of r.train) check(`train ${k}`, v, `train/${k}`);
  {
    // the loss against its scale sum|term|, not against itself: it may cancel to almost nothing
    const expected = g.get(`golden/${variant}/train/loss`).data[0];
    const scale = g.get(`golden/${variant}/train/loss_scale`).data[0];
    const err = Math.abs(r.loss - expected) / scale;
    t.diagnostic(`train loss (rel. to sum|terms|): rel err ${err.toExponential(2)}`);
    if (!(err < TOLERANCE)) failures.push(`train loss: relative error ${err.toExponential(2)} >= ${TOLERANCE}`);
  }
  for (const n of gradNames) check(`grad ${n}`, r.grads.get(n) as Float32Array, `grad/${n}`);
  check('running_mean (all BNs) after train forward', r.runningMean, 'running_mean');
  check('running_var (all BNs) after train forward', r.runningVar, 'running_var');
  return failures;
}

/** `base` with `overrides` applied key by key (nested objects merge, anything else replaces). */
function merge<T>(base: T, overrides: Record<string, unknown>): T {
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(overrides)) {
    const b = out[k];
    const nested = typeof v === 'object' && v !== null && !Array.isArray(v) && typeof b === 'object' && b !== null;
    out[k] = nested ? merge(b, v as Record<string, unknown>) : v;
  }
  return out as T;
}

function modelRunner(g: GoldenFile, loss: LossSpec, cfg: ModelConfig): { runner: Runner; dispose: () => void } {
  const model = buildModel(cfg, Number(g.metadata.num_classes), 0);
  loadInto(model, g);
  return {
    runner: {
      module: model,
      forward(x, ctx) {
        const { out, aux } = model.forward(x, ctx);
        const m = new Map([['out', out]]);
        if (aux !== undefined) m.set('aux', aux);
        return m;
      },
      lossTerm(name) {
        return name === 'aux'
          ? { coef: loss.aux_weight, seed: loss.noise_seeds.aux }
          : { coef: 1, seed: loss.noise_seeds.out };
      },
    },
    dispose: () => model.dispose(),
  };
}

function backboneRunner(g: GoldenFile, loss: LossSpec, cfg: ModelConfig): { runner: Runner; dispose: () => void } {
  const backbone = buildBackbone(cfg);
  loadInto(backbone, g, 'backbone.');
  return {
    runner: {
      module: backbone,
      forward(x, ctx) {
        return new Map(backbone.forward(x, ctx).map((t, i) => [`stage${i + 1}`, t]));
      },
      lossTerm(name) {
        return { coef: 1, seed: loss.noise_seeds.stage + Number(name.slice('stage'.length)) - 1 };
      },
    },
    dispose: () => backbone.dispose(),
  };
}

before(async () => {
  assert.ok(await tf.setBackend('cpu'), 'could not select the cpu backend');
});

const FILES = readdirSync(PARITY_DIR)
  .filter((f) => f.startsWith('model-') && f.endsWith('.safetensors'))
  .sort();

test('the parity fixtures hold model cases', () => {
  assert.ok(FILES.length >= 3, `found ${FILES.length} model-*.safetensors files`);
});

for (const file of FILES) {
  const g = readGoldens(file);
  const backboneOnly = g.meta<boolean>('backbone_only');
  const modelCfg = g.meta<ModelConfig>('model');
  const variants = g.meta<Record<string, Record<string, unknown>>>('variants');
  const input = g.meta<InputSpec>('input');
  const outSub = Number(g.metadata.out_sub);
  const loss = g.meta<LossSpec>('loss');
  const gradNames = g.meta<string[]>('grads');
  const bnNames = g.meta<string[]>('bn_names');
  // the bare ResNet's names lack the golden's 'backbone.' prefix
  const prefix = backboneOnly ? 'backbone.' : '';
  const localName = (n: string) => n.slice(prefix.length);

  describe(`parity with PyTorch: ${g.metadata.case} (input [${input.shape}])`, () => {
    const resultsFor = (variant: string): Results => {
      const cfg = merge(modelCfg, variants[variant]);
      const { runner, dispose } = backboneOnly ? backboneRunner(g, loss, cfg) : modelRunner(g, loss, cfg);
      try {
        const r = run(runner, input, outSub, gradNames.map(localName), bnNames.map(localName));
        // back to the golden's (prefixed) names
        r.grads = new Map([...r.grads].map(([k, v]) => [prefix + k, v]));
        return r;
      } finally {
        dispose();
      }
    };

    for (const variant of Object.keys(variants)) {
      test(`matches PyTorch, variant '${variant}' ${JSON.stringify(variants[variant])}`, (t) => {
        const failures = compare(t, g, variant, resultsFor(variant), gradNames);
        assert.deepEqual(failures, []);
      });
    }
  });
}

// A per-module table of a model, as the seed's BaseModel.summary and torchinfo print: each module's
// dotted name, type, output shape for a given input and parameter count, then totals. Output shapes
// come from a real forward pass in eval mode, recorded by wrapping each module's forward for the
// duration (torchinfo's forward hooks), so they are what the model computes, not a re-derivation.
import * as tf from '@tensorflow/tfjs';
import type { EncoderDecoder } from './encoder-decoder';
import type { Module } from './module';

export interface SummaryRow {
  /** Dotted module name ('' for the model itself). */
  name: string;
  type: string;
  depth: number;
  /** NHWC output shapes (several for a backbone's stages); null when the module has no forward of its own. */
  outputShapes: number[][] | null;
  /** Parameters of the module and everything below it. */
  params: number;
}

export interface ModelSummary {
  rows: SummaryRow[];
  input: number[];
  parameters: number;
  trainable: number;
  /** Elements of the non-trainable buffers (BN running mean and variance). */
  buffers: number;
}

export interface SummaryOptions {
  /** [height, width] of the one input image. */
  inputSize: [number, number];
  /** Whether a parameter trains (false for the frozen ones of the first stage). */
  isTrainable: (name: string) => boolean;
}

type Forward = (...args: unknown[]) => unknown;

function shapesOf(out: unknown): number[][] | null {
  if (out instanceof tf.Tensor) return [out.shape.slice()];
  if (Array.isArray(out)) return out.flatMap((o) => shapesOf(o) ?? []);
  // The segmentor's { out, aux? }: its logits at the input size.
  if (out !== null && typeof out === 'object' && 'out' in out) return shapesOf((out as { out: unknown }).out);
  return null;
}

export function summarizeModel(model: EncoderDecoder, opts: SummaryOptions): ModelSummary {
  const modules = model.namedModules();
  const recorded = new Map<Module, number[][]>();
  const hooked: Module[] = [];
  // The auxiliary head runs only in training; it is run by hand afterwards on the backbone's
  // features, kept out of the forward's tidy for that.
  let features: tf.Tensor4D[] = [];
  for (const [, m] of modules) {
    const own = (m as unknown as { forward?: Forward }).forward;
    if (typeof own !== 'function') continue;
    const hook: Forward = (...args) => {
      const out = own.apply(m, args);
      if (!recorded.has(m)) recorded.set(m, shapesOf(out) ?? []);
      if (m === model.backbone) features = (out as tf.Tensor4D[]).map((t) => tf.keep(t));
      return out;
    };
    Object.defineProperty(m, 'forward', { value: hook, configurable: true, writable: true });
    hooked.push(m);
  }
  const [h, w] = opts.inputSize;
  const input: [number, number, number, number] = [1, h, w, 3];
  const ctx = { training: false, seed: 0 };
  try {
    tf.tidy(() => {
      model.forward(tf.zeros(input) as tf.Tensor4D, ctx);
    });
    if (model.auxiliary_head && !recorded.has(model.auxiliary_head)) {
      tf.tidy(() => {
        model.auxiliary_head!.forward(features, ctx);
      });
    }
  } finally {
    tf.dispose(features);
    for (const m of hooked) delete (m as unknown as { forward?: Forward }).forward;
  }

  const rows = modules.map(([name, m]) => ({
    name,
    type: m.constructor.name,
    depth: name === '' ? 0 : name.split('.').length,
    outputShapes: recorded.get(m) ?? null,
    params: m.numParameters(),
  }));
  const params = model.namedParameters();
  return {
    rows,
    input,
    parameters: params.reduce((n, [, v]) => n + v.size, 0),
    trainable: params.reduce((n, [name, v]) => n + (opts.isTrainable(name) ? v.size : 0), 0),
    buffers: model.namedBuffers().reduce((n, [, v]) => n + v.size, 0),
  };
}

const count = (n: number) => n.toLocaleString('en-US');
const shape = (s: number[]) => `[${s.join(', ')}]`;

/** The table, down to `maxDepth` levels below the model, then the totals. */
export function formatSummary(s: ModelSummary, maxDepth: number): string[] {
  const rows = s.rows.filter((r) => r.depth <= maxDepth).map((r) => [
    `${'  '.repeat(r.depth)}${r.name === '' ? r.type : `${r.name} (${r.type})`}`,
    r.outputShapes === null ? '--' : r.outputShapes.map(shape).join(' '),
    count(r.params),
  ]);
  const header = ['Module (type)', 'Output shape (NHWC)', 'Params'];
  const widths = header.map((t, c) => Math.max(t.length, ...rows.map((r) => r[c].length)));
  const line = (r: string[]) => `${r[0].padEnd(widths[0])}  ${r[1].padEnd(widths[1])}  ${r[2].padStart(widths[2])}`;
  const rule = '-'.repeat(widths[0] + widths[1] + widths[2] + 4);
  const frozen = s.parameters - s.trainable;
  return [
    rule, line(header), rule, ...rows.map(line), rule,
    `Input: ${shape(s.input)} (NHWC)`,
    `Total parameters: ${count(s.parameters)} (${(s.parameters * 4 / 2 ** 20).toFixed(2)} MiB as float32)`,
    `Trainable parameters: ${count(s.trainable)}` + (frozen ? ` (${count(frozen)} frozen in the first stage)` : ''),
    `Non-trainable parameters: ${count(frozen)}`,
    `Buffers: ${count(s.buffers)} (BN running statistics)`,
    rule,
  ];
}

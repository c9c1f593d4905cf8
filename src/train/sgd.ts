// SGD with momentum and weight decay, PyTorch's update rule (dampening 0):
//   d = g + wd * p;  buf = momentum * buf + d;  p -= lr * (nesterov ? d + momentum * buf : buf)
// Written here rather than taken from tf.train because its state must serialize by parameter name
// (for exact resume and for checkpoints that PyTorch users can read).
import * as tf from '@tensorflow/tfjs';
import type { NamedArray } from '../checkpoint/safetensors';

export interface SgdOptions {
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
}

export interface ParamGroupSettings {
  /** Multiplies the step's lr for this parameter. */
  lrMult: number;
  /** Multiplies the weight decay for this parameter. */
  decayMult: number;
}

/**
 * mmseg's default paramwise policy: no weight decay on norm and bias parameters. Both are the only
 * rank-1 parameters in a conv net (BN gamma/beta, conv and classifier biases).
 */
export function defaultParamSettings(_name: string, variable: tf.Variable): ParamGroupSettings {
  return { lrMult: 1, decayMult: variable.rank === 1 ? 0 : 1 };
}

export class Sgd {
  private readonly buffers = new Map<string, tf.Variable>();
  private readonly settings = new Map<string, ParamGroupSettings>();

  constructor(
    private readonly params: ReadonlyArray<[string, tf.Variable]>,
    private readonly opts: SgdOptions,
    settingsOf: (name: string, v: tf.Variable) => ParamGroupSettings = defaultParamSettings,
  ) {
    this.setParamSettings(settingsOf);
    for (const [name, v] of params) {
      // Unnamed: tfjs variable names are global to the engine, and two models may coexist (tests, eval).
      // In a tidy: tf.variable keeps its own copy, and the zeros would otherwise stay allocated.
      this.buffers.set(name, tf.tidy(() => tf.variable(tf.zerosLike(v), false)));
    }
  }

  /** Changes the lr and weight-decay multipliers (a new training stage); the state is kept. */
  setParamSettings(settingsOf: (name: string, v: tf.Variable) => ParamGroupSettings): void {
    for (const [name, v] of this.params) this.settings.set(name, settingsOf(name, v));
  }

  /** Applies one update; `grads` maps parameter names to gradients (missing: frozen, skipped). */
  step(grads: Map<string, tf.Tensor> | Record<string, tf.Tensor>, lr: number): void {
    const get = (n: string) => (grads instanceof Map ? grads.get(n) : grads[n]);
    tf.tidy(() => {
      for (const [name, p] of this.params) {
        const g = get(name);
        if (!g) continue;
        const s = this.settings.get(name)!;
        const buf = this.buffers.get(name)!;
        const wd = this.opts.weightDecay * s.decayMult;
        const d = wd > 0 ? tf.add(g, tf.mul(p, wd)) : g;
        const newBuf = this.opts.momentum > 0 ? tf.add(tf.mul(buf, this.opts.momentum), d) : d;
        const dir = this.opts.nesterov ? tf.add(d, tf.mul(newBuf, this.opts.momentum)) : newBuf;
        p.assign(tf.sub(p, tf.mul(dir, lr * s.lrMult)));
        if (this.opts.momentum > 0) buf.assign(newBuf);
      }
    });
  }

  /** The momentum buffers as variables, in parameter order (to broadcast them from rank 0). */
  stateVariables(): Array<[string, tf.Variable]> {
    return [...this.buffers].map(([name, v]) => [`${name}.momentum_buffer`, v]);
  }

  /** Momentum buffers by `<param>.momentum_buffer`, as PyTorch's state names them. */
  stateDict(): Map<string, NamedArray> {
    const out = new Map<string, NamedArray>();
    for (const [name, buf] of this.buffers) {
      out.set(`${name}.momentum_buffer`, { dtype: 'F32', shape: buf.shape.slice(), data: buf.dataSync() as Float32Array });
    }
    return out;
  }

  loadStateDict(state: Map<string, NamedArray>, source: string): void {
    for (const [name, buf] of this.buffers) {
      const key = `${name}.momentum_buffer`;
      const t = state.get(key);
      if (!t) throw new Error(`${source}: optimizer state has no ${key}`);
      if (t.shape.join(',') !== buf.shape.join(',')) {
        throw new Error(`${source}: optimizer state ${key} has shape [${t.shape}], the model needs [${buf.shape}]`);
      }
      buf.assign(tf.tensor(t.data, t.shape, 'float32'));
    }
  }

  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
  }
}

// The base of segdist's own small module tree (we do not use tfjs-layers: its layers hide padding
// semantics, cannot do SyncBN, and name weights in ways no PyTorch checkpoint maps onto).
//
// A module owns named child modules, trainable parameters and non-trainable buffers (BN running
// statistics). The dotted names produced by namedParameters()/namedBuffers() follow PyTorch's
// state_dict keys exactly, so a PyTorch/mmseg checkpoint converted to safetensors (OIHW -> HWIO for
// conv weights) loads one to one.
//
// Initial values are not drawn at construction: a parameter's full dotted name is only known once
// the tree is assembled, and init must be a pure function of (seed, full name) so that it is the same
// on every backend and independent of construction order. initialize(seed) does the drawing.

import * as tf from '@tensorflow/tfjs';
import type { ForwardContext } from './context';
import { Rng, keyOf } from '../util/rng';

/** Produces a parameter's initial values (row-major, tfjs layout) from its shape and a private RNG. */
export type Initializer = (shape: readonly number[], rng: Rng) => Float32Array;

/** A module that maps one NHWC tensor to another; what Sequential chains. */
export interface Layer {
  forward(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor4D;
}

interface Slot {
  variable: tf.Variable;
  init: Initializer;
}

const NAME_RE = /^[A-Za-z0-9_]+$/;

export abstract class Module {
  private parentModule: Module | undefined;
  private localName = '';
  private readonly children = new Map<string, Module>();
  private readonly params = new Map<string, Slot>();
  private readonly buffers = new Map<string, Slot>();

  /**
   * Dotted name of this module from the root of its tree ('' for the root). Used where a module
   * needs a stable identity at run time: SyncBN collective names and dropout seeds.
   */
  get path(): string {
    if (this.parentModule === undefined) return '';
    const p = this.parentModule.path;
    return p === '' ? this.localName : `${p}.${this.localName}`;
  }

  protected registerModule<T extends Module>(name: string, child: T): T {
    this.checkName(name);
    if (child.parentModule !== undefined) {
      throw new Error(`Error in Module: '${name}' is already registered as '${child.path}'`);
    }
    child.parentModule = this;
    child.localName = name;
    this.children.set(name, child);
    return child;
  }

  protected registerParameter(name: string, shape: number[], init: Initializer): tf.Variable {
    this.checkName(name);
    const variable = tf.tidy(() => tf.variable(tf.zeros(shape), true));
    this.params.set(name, { variable, init });
    return variable;
  }

  protected registerBuffer(name: string, shape: number[], init: Initializer): tf.Variable {
    this.checkName(name);
    const variable = tf.tidy(() => tf.variable(tf.zeros(shape), false));
    this.buffers.set(name, { variable, init });
    return variable;
  }

  private checkName(name: string): void {
    if (!NAME_RE.test(name)) throw new Error(`Error in Module: invalid name '${name}'`);
    if (this.children.has(name) || this.params.has(name) || this.buffers.has(name)) {
      throw new Error(`Error in Module: duplicate name '${name}' in '${this.path}'`);
    }
  }

  /** Direct children, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.children.entries()];
  }

  /** This module ('') and every descendant, depth first, names relative to this module. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [name, child] of this.children) {
      out.push(...child.namedModules(prefix === '' ? name : `${prefix}.${name}`));
    }
    return out;
  }

  /** Trainable parameters with state_dict-style names relative to this module. */
  namedParameters(): [string, tf.Variable][] {
    return this.collect((m) => m.params);
  }

  /** Non-trainable buffers (BN running_mean / running_var) with state_dict-style names. */
  namedBuffers(): [string, tf.Variable][] {
    return this.collect((m) => m.buffers);
  }

  parameters(): tf.Variable[] {
    return this.namedParameters().map(([, v]) => v);
  }

  numParameters(): number {
    return this.parameters().reduce((n, v) => n + v.size, 0);
  }

  private collect(pick: (m: Module) => Map<string, Slot>): [string, tf.Variable][] {
    const out: [string, tf.Variable][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [name, slot] of pick(m)) {
        out.push([prefix === '' ? name : `${prefix}.${name}`, slot.variable]);
      }
    }
    return out;
  }

  /**
   * Draws every parameter and buffer of this subtree. Each tensor's values depend only on the seed
   * and its full dotted name from the root, so initializing a subtree gives the same values as
   * initializing the whole model, on any backend.
   */
  initialize(seed: number): void {
    const base = this.path;
    for (const [prefix, m] of this.namedModules()) {
      for (const slots of [m.params, m.buffers]) {
        for (const [name, slot] of slots) {
          const local = prefix === '' ? name : `${prefix}.${name}`;
          const full = base === '' ? local : `${base}.${local}`;
          const shape = slot.variable.shape;
          const values = slot.init(shape, new Rng(seed, keyOf(full)));
          if (values.length !== slot.variable.size) {
            throw new Error(`Error in initialize: '${full}' got ${values.length} values for shape [${shape}]`);
          }
          tf.tidy(() => slot.variable.assign(tf.tensor(values, shape)));
        }
      }
    }
  }

  /**
   * Assigns parameters and buffers from named tensors (e.g. a converted checkpoint). With strict,
   * a missing or unexpected name is an error; shapes must always match.
   */
  loadStateDict(state: Map<string, tf.Tensor>, strict = true): void {
    const own = new Map([...this.namedParameters(), ...this.namedBuffers()]);
    if (strict) {
      const missing = [...own.keys()].filter((k) => !state.has(k));
      const unexpected = [...state.keys()].filter((k) => !own.has(k));
      if (missing.length > 0 || unexpected.length > 0) {
        throw new Error(
          `Error in loadStateDict: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`,
        );
      }
    }
    for (const [name, value] of state) {
      const v = own.get(name);
      if (v === undefined) continue;
      if (!tf.util.arraysEqual(v.shape, value.shape)) {
        throw new Error(`Error in loadStateDict: '${name}' has shape [${v.shape}], got [${value.shape}]`);
      }
      tf.tidy(() => v.assign(value.dtype === v.dtype ? value : tf.cast(value, v.dtype)));
    }
  }

  /** Frees every variable of this subtree. The module must not be used afterwards. */
  dispose(): void {
    for (const [, m] of this.namedModules()) {
      for (const slots of [m.params, m.buffers]) {
        for (const slot of slots.values()) slot.variable.dispose();
        slots.clear();
      }
    }
  }
}

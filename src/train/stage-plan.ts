// The training schedule as stages: which parameters train, with which lr and multipliers, over which
// iterations. Like the lr itself, the active stage is a pure function of the iteration, so a resumed
// run (also one resumed exactly at a stage boundary) is in the right stage without saving anything.
import type * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../config/config-error';
import type { ParamGroupRule, SegdistConfig } from '../config/config-types';
import { learningRate } from './lr-schedule';
import { matchesPattern } from './param-pattern';
import type { ParamGroupSettings } from './sgd';

export interface Stage {
  index: number;
  name: string;
  /** First iteration of the stage and one past its last. */
  start: number;
  end: number;
  lr: number;
  warmupIters: number;
  frozen: string[];
  normEval: boolean;
  groups: Required<ParamGroupRule>[];
}

export class StagePlan {
  readonly stages: Stage[];
  readonly totalIterations: number;

  /** `alwaysFrozen`: patterns frozen in every stage on top of its own (the backbone's frozen_stages). */
  constructor(private readonly cfg: SegdistConfig, itersPerEpoch: number, alwaysFrozen: readonly string[] = []) {
    this.totalIterations = cfg.train.epochs * itersPerEpoch;
    const rules = (list: ParamGroupRule[], at: string) =>
      list.map((r, i) => {
        if (typeof r.pattern !== 'string' || r.pattern === '') throw new ConfigError(`${at}[${i}].pattern: required`);
        return { pattern: r.pattern, lr_mult: r.lr_mult ?? 1, decay_mult: r.decay_mult ?? 1 };
      });
    const specs = cfg.schedule.stages ?? [{ name: 'train' }];
    let start = 0;
    this.stages = specs.map((s, i) => {
      const at = `schedule.stages[${i}]`;
      if (s.epochs != null && s.iters != null) throw new ConfigError(`${at}: give epochs or iters, not both`);
      const last = i === specs.length - 1;
      let length = s.epochs != null ? s.epochs * itersPerEpoch : s.iters;
      if (length == null) {
        if (!last) throw new ConfigError(`${at}: needs a length (epochs or iters); only the last stage may run to the end of train.epochs`);
        length = this.totalIterations - start;
        if (length <= 0) throw new ConfigError(`${at}: the earlier stages already fill train.epochs (${this.totalIterations} iterations); nothing is left for it`);
      }
      const stage: Stage = {
        index: i, name: s.name ?? `stage${i + 1}`, start, end: start + length,
        lr: s.lr ?? cfg.optimizer.lr, warmupIters: s.warmup_iters ?? cfg.schedule.warmup_iters,
        frozen: [...alwaysFrozen, ...(s.frozen ?? [])], normEval: s.norm_eval ?? true,
        groups: s.param_groups ? rules(s.param_groups, `${at}.param_groups`) : rules(cfg.optimizer.param_groups, 'optimizer.param_groups'),
      };
      start = stage.end;
      return stage;
    });
    if (start !== this.totalIterations) {
      throw new ConfigError(`schedule.stages: the stages last ${start} iterations but train.epochs gives ${this.totalIterations} (${itersPerEpoch} per epoch); omit the last stage's length to run to the end`);
    }
  }

  stageAt(iteration: number): Stage {
    return this.stages.find((s) => iteration < s.end) ?? this.stages[this.stages.length - 1];
  }

  /** The base lr of the iteration: the schedule restarts in each stage, over the stage's length. */
  learningRate(iteration: number): number {
    const s = this.stageAt(iteration);
    return learningRate(iteration - s.start, s.end - s.start, s.lr, { ...this.cfg.schedule, warmup_iters: s.warmupIters });
  }
}

/**
 * mmseg's frozen_stages as name patterns: the stem for 0, the stem and stages 1..n for n, none for -1.
 * `stageModules` are the backbone's child names per stage (Backbone.stageModules).
 */
export function frozenStagePatterns(stageModules: readonly (readonly string[])[], frozenStages: number): string[] {
  return stageModules.slice(0, frozenStages + 1).flat().map((name) => `backbone.${name}`);
}

/** Whether a parameter is frozen in a stage. */
export function isFrozen(stage: Stage, name: string): boolean {
  return stage.frozen.some((p) => matchesPattern(name, p));
}

/** The lr and decay multipliers of a parameter in a stage; rank-1 parameters (norm, bias) never decay. */
export function paramSettings(stage: Stage, name: string, v: tf.Variable): ParamGroupSettings {
  const rule = stage.groups.find((g) => matchesPattern(name, g.pattern));
  return { lrMult: rule?.lr_mult ?? 1, decayMult: v.rank === 1 ? 0 : rule?.decay_mult ?? 1 };
}

/** The name of the group a parameter falls in, for logs and TensorBoard ("default" when no rule matches). */
export function groupName(stage: Stage, name: string): string {
  return stage.groups.find((g) => matchesPattern(name, g.pattern))?.pattern ?? 'default';
}

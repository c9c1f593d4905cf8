// model.pretrained: a training run starts from imported weights instead of its seeded init. Tensors
// the file does not provide keep that init, as after torch's load_state_dict(strict=False).
import * as fs from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../config/config-error';
import type { ModelConfig } from '../models/build-model';
import { convertWeights, modelShapes } from './convert-weights';
import { checkStrict } from './format-report';
import type { ImportReport } from './match-state-dict';

export interface LoadableModel {
  namedParameters(): Array<[string, tf.Variable]>;
  namedBuffers(): Array<[string, tf.Variable]>;
}

/** A ConfigError naming model.pretrained and the path when the file is not there. */
export function checkPretrainedFile(file: string): void {
  if (!fs.existsSync(file)) throw new ConfigError(`model.pretrained: ${file}: file not found`);
}

/** Loads cfg.pretrained into the model's variables; the caller logs the report. */
export function loadPretrained(model: LoadableModel, cfg: Pick<ModelConfig, 'pretrained' | 'pretrained_scheme' | 'pretrained_strict'>): ImportReport {
  const file = cfg.pretrained;
  if (!file) throw new Error('loadPretrained: model.pretrained is not set');
  checkPretrainedFile(file);
  const { report, tensors } = convertWeights(file, modelShapes(model), cfg.pretrained_scheme ?? 'auto');
  if (cfg.pretrained_strict) checkStrict(report, 'model.pretrained_strict');
  const own = new Map([...model.namedParameters(), ...model.namedBuffers()]);
  for (const [name, t] of tensors) {
    const v = own.get(name)!;
    tf.tidy(() => v.assign(tf.tensor(t.data, t.shape, 'float32')));
  }
  return report;
}

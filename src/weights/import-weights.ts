// `segdist weights import`: a PyTorch state_dict (safetensors) in, segdist's model file out (the
// format of a checkpoint's model.safetensors: segdist names, conv weights HWIO), holding the tensors
// that match the configured model. Loading that file later (model.pretrained) leaves the rest at
// their seeded init.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadBackend } from '../backend/load-backend';
import { encodeSafetensors } from '../checkpoint/safetensors';
import { MODEL_FILE_FORMAT } from '../checkpoint/checkpoint-manager';
import { writeFileAtomic } from '../checkpoint/atomic-fs';
import { ConfigError } from '../config/config-error';
import { resolveConfig } from '../config/load-config';
import { buildModel } from '../models/build-model';
import { convertWeights, modelShapes } from './convert-weights';
import { checkStrict, formatReport } from './format-report';
import type { ImportReport } from './match-state-dict';

export interface ImportOptions {
  input: string;
  out: string;
  configFile?: string;
  overrides?: readonly string[];
  /** 'auto' or a scheme name; default: the config's model.pretrained_scheme. */
  scheme?: string;
  /** Or the config's model.pretrained_strict. */
  strict?: boolean;
  log: (line: string) => void;
}

export async function importWeights(opts: ImportOptions): Promise<ImportReport> {
  const cfg = resolveConfig({ file: opts.configFile, overrides: opts.overrides });
  if (!fs.existsSync(opts.input)) throw new ConfigError(`${opts.input}: file not found`);
  // Only the model's names and shapes are needed; the cpu backend builds them without loading wasm.
  await loadBackend('cpu');
  const model = buildModel(cfg.model, cfg.data.num_classes, cfg.seed, { initialize: false });
  const shapes = modelShapes(model);
  model.dispose();

  const { report, tensors } = convertWeights(opts.input, shapes, opts.scheme ?? cfg.model.pretrained_scheme ?? 'auto');
  for (const line of formatReport(report)) opts.log(line);
  if (opts.strict || cfg.model.pretrained_strict) checkStrict(report, opts.strict ? '--strict' : 'model.pretrained_strict');

  fs.mkdirSync(path.dirname(path.resolve(opts.out)), { recursive: true });
  writeFileAtomic(opts.out, encodeSafetensors(tensors, { format: MODEL_FILE_FORMAT, source: path.basename(opts.input), scheme: report.scheme }));
  // Mismatched tensors are left out too: like the missing ones, they keep their init when loaded.
  const left = report.missing.length + report.mismatched.length;
  opts.log(`wrote ${tensors.size} tensors to ${opts.out}; load it with model.pretrained=${opts.out}` +
    (left ? ` (the ${left} model tensors it lacks keep their seeded initialisation)` : ''));
  return report;
}

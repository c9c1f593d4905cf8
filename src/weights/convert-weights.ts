// Reads a weights file and converts what matches the model: a PyTorch state_dict saved as safetensors
// (keys mapped through a scheme, conv weights OIHW -> HWIO), or a segdist model file (what `segdist
// weights import` writes and what a checkpoint's model.safetensors is), recognised by its metadata.
import { readSafetensorsRaw, type NamedArray } from '../checkpoint/safetensors';
import { MODEL_FILE_FORMAT } from '../checkpoint/checkpoint-manager';
import { ConfigError } from '../config/config-error';
import { KEY_SCHEMES, schemeNamed, type KeyScheme } from './key-schemes';
import { convertMatched, matchStateDict, type ImportReport } from './match-state-dict';

/** A segdist file's names are the model's own. */
const SEGDIST_NAMES: KeyScheme = { name: 'segdist', describe: 'segdist model file', toSegdist: (key) => key };

export interface ModelState {
  namedParameters(): Array<[string, { shape: number[] }]>;
  namedBuffers(): Array<[string, { shape: number[] }]>;
}

/** Every tensor the model loads (parameters and BN statistics) with its segdist shape. */
export function modelShapes(model: ModelState): Map<string, number[]> {
  return new Map([...model.namedParameters(), ...model.namedBuffers()].map(([name, v]) => [name, v.shape.slice()]));
}

/** auto: the scheme under which most tensors match (name and shape), the first in the table on a tie. */
export function matchBestScheme(file: string, stored: ReadonlyMap<string, { shape: number[] }>, model: ReadonlyMap<string, number[]>): ImportReport {
  const all = KEY_SCHEMES.map((s) => matchStateDict(file, stored, model, s, 'pytorch'));
  const best = all.reduce((b, r) => (r.matched.length > b.matched.length ? r : b));
  best.tried = all.map((r) => ({ scheme: r.scheme, matched: r.matched.length }));
  return best;
}

export interface ConvertedWeights {
  report: ImportReport;
  /** The matched tensors only, segdist names and layout. */
  tensors: Map<string, NamedArray>;
}

/** `scheme` is 'auto' or a KEY_SCHEMES name; it is not used for a segdist file. */
export function convertWeights(file: string, model: ReadonlyMap<string, number[]>, scheme: string): ConvertedWeights {
  const { tensors: stored, metadata } = readSafetensorsRaw(file);
  let report: ImportReport;
  if (metadata.format === MODEL_FILE_FORMAT) {
    report = matchStateDict(file, stored, model, SEGDIST_NAMES, 'segdist');
  } else if (scheme === 'auto') {
    report = matchBestScheme(file, stored, model);
  } else {
    report = matchStateDict(file, stored, model, schemeNamed(scheme), 'pytorch');
  }
  if (report.matched.length === 0) {
    const some = [...stored.keys()].slice(0, 5).join(', ');
    throw new ConfigError(`${file}: no tensor matches the configured model (${report.layout === 'segdist' ? 'segdist weights' : `scheme ${report.scheme}`}; ` +
      `the file has ${stored.size} tensors, e.g. ${some || 'none'}); check the scheme and model.backbone/head settings`);
  }
  return { report, tensors: convertMatched(report, stored) };
}

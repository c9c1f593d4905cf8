// The import report in words: one summary line for logs, then the keys in each category, as torch's
// load_state_dict(strict=False) lists missing_keys and unexpected_keys.
import { ConfigError } from '../config/config-error';
import { stripWrapperPrefixes } from './key-schemes';
import { isClean, type ImportReport } from './match-state-dict';

const shape = (s: readonly number[]) => `[${s.join(', ')}]`;
/** ` -> name` where the scheme renamed the key (not for a mere `module.` strip). */
const renamed = (key: string, target: string | null) => (target !== null && target !== stripWrapperPrefixes(key) ? ` -> ${target}` : '');

export function reportSummary(r: ImportReport): string {
  const how = r.layout === 'segdist' ? 'segdist weights' : `PyTorch weights, scheme ${r.scheme}` +
    (r.tried ? ` (auto: ${r.tried.map((t) => `${t.scheme} ${t.matched}`).join(', ')} matched)` : '');
  return `${r.file} (${how}): ${r.matched.length} matched, ${r.missing.length} missing, ${r.unexpected.length} unexpected, ` +
    `${r.mismatched.length} shape-mismatched` + (r.numBatchesTracked ? `; ${r.numBatchesTracked} num_batches_tracked dropped (segdist keeps none)` : '');
}

/** The summary line and every key that did not match, grouped by why. */
export function formatReport(r: ImportReport): string[] {
  const lines = [reportSummary(r)];
  if (r.missing.length) {
    lines.push(`missing (not in the file; they keep their seeded initialisation):`);
    for (const k of r.missing) lines.push(`  ${k}`);
  }
  if (r.unexpected.length) {
    lines.push(`unexpected (in the file, not in the model; ignored):`);
    for (const u of r.unexpected) lines.push(`  ${u.key}${renamed(u.key, u.target)}`);
  }
  if (r.mismatched.length) {
    lines.push(`shape-mismatched (file vs model, ${r.layout === 'pytorch' ? 'PyTorch layout: conv weights OIHW' : 'segdist layout: conv weights HWIO'}; ignored):`);
    for (const m of r.mismatched) lines.push(`  ${m.key}${renamed(m.key, m.target)}: ${shape(m.checkpoint)} vs ${shape(m.model)}`);
  }
  return lines;
}

const LIST_AT_MOST = 10;

function someOf(keys: string[]): string {
  const shown = keys.slice(0, LIST_AT_MOST).join(', ');
  return keys.length > LIST_AT_MOST ? `${shown} and ${keys.length - LIST_AT_MOST} more` : shown;
}

/** Strict mode: a ConfigError (exit 2) naming the keys at fault, or nothing when every tensor matched. */
export function checkStrict(r: ImportReport, setting: string): void {
  if (isClean(r)) return;
  const parts: string[] = [];
  if (r.missing.length) parts.push(`${r.missing.length} missing: ${someOf(r.missing)}`);
  if (r.unexpected.length) parts.push(`${r.unexpected.length} unexpected: ${someOf(r.unexpected.map((u) => u.key))}`);
  if (r.mismatched.length) parts.push(`${r.mismatched.length} shape-mismatched: ${someOf(r.mismatched.map((m) => `${m.key} ${shape(m.checkpoint)} vs ${shape(m.model)}`))}`);
  throw new ConfigError(`${r.file}: ${setting} refuses an import that does not match the model exactly (scheme ${r.scheme}): ${parts.join('; ')}`);
}

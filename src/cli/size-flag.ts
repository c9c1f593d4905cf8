import { ConfigError } from '../config/config-error';

/** Parses "HxW" or "H,W" (or a single number for a square) into [height, width]. */
export function parseSize(text: string, flag: string): [number, number] {
  const m = /^(\d+)(?:\s*[x,]\s*(\d+))?$/i.exec(text.trim());
  if (!m) throw new ConfigError(`${flag}: expected HxW or H,W (for example 128x160), got '${text}'`);
  const h = Number(m[1]);
  const w = Number(m[2] ?? m[1]);
  if (h < 16 || w < 16) throw new ConfigError(`${flag}: ${h}x${w} is too small (at least 16x16)`);
  return [h, w];
}

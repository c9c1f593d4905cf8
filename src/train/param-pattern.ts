/**
 * Whether a parameter name matches a pattern: a glob with `*` (any run of characters) matched against
 * the whole name, or otherwise the name itself or a dotted prefix of it ("backbone" matches
 * "backbone.layer1.0.conv1.weight" but not "backbone2.x").
 */
export function matchesPattern(name: string, pattern: string): boolean {
  if (pattern.includes('*')) {
    const re = new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
    return re.test(name);
  }
  return name === pattern || name.startsWith(pattern + '.');
}

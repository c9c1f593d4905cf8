/**
 * The Pascal VOC colour map (class bits spread over the high bits of R, G and B), the usual default
 * for datasets that ship no palette: distinct colours for the first classes, defined for all 256.
 */
export function vocPalette(n: number): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (let k = 0; k < n; k++) {
    let r = 0;
    let g = 0;
    let b = 0;
    let c = k;
    for (let bit = 7; bit >= 0 && c > 0; bit--, c >>= 3) {
      r |= (c & 1) << bit;
      g |= ((c >> 1) & 1) << bit;
      b |= ((c >> 2) & 1) << bit;
    }
    out.push([r, g, b]);
  }
  return out;
}

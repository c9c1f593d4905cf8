// PyTorch stores a conv weight as OIHW [out, in/groups, kh, kw]; segdist (tfjs) as HWIO
// [kh, kw, in/groups, out]. The permutation (2, 3, 1, 0) maps one to the other, grouped and
// depthwise convs included, because segdist keeps the per-group input width where PyTorch does.
// Every other tensor (biases, BN affine and statistics) has the same layout in both.

/** The HWIO shape of a PyTorch tensor shape (4-D: permuted; otherwise unchanged). */
export function segdistShapeOf(torchShape: readonly number[]): number[] {
  if (torchShape.length !== 4) return torchShape.slice();
  const [o, i, h, w] = torchShape;
  return [h, w, i, o];
}

/** The PyTorch shape of a segdist tensor shape: the inverse of segdistShapeOf. */
export function torchShapeOf(segdistShape: readonly number[]): number[] {
  if (segdistShape.length !== 4) return segdistShape.slice();
  const [h, w, i, o] = segdistShape;
  return [o, i, h, w];
}

/** Reorders a row-major OIHW tensor into row-major HWIO; anything not 4-D is returned as is. */
export function torchToSegdist(data: Float32Array, torchShape: readonly number[]): Float32Array {
  if (torchShape.length !== 4) return data;
  const [o, i, h, w] = torchShape;
  const out = new Float32Array(data.length);
  let src = 0;
  for (let oo = 0; oo < o; oo++) {
    for (let ii = 0; ii < i; ii++) {
      for (let hh = 0; hh < h; hh++) {
        for (let ww = 0; ww < w; ww++) out[((hh * w + ww) * i + ii) * o + oo] = data[src++];
      }
    }
  }
  return out;
}

// A separable linear map over the spatial axes of an NHWC tensor:
//   y[n, i, j, c] = sum_{h, w} A[i, h] * B[j, w] * x[n, h, w, c]
// Adaptive average pooling and bilinear interpolation are both of this form, with small fixed
// matrices A (rows) and B (columns). The implementation lives in src/backend: a kernel that skips the
// zeros of these sparse matrices, with the gradient as the same map by A^T and B^T.
export { separableLinear, transposeMatrix, withSeparableGradient, type Matrix } from '../backend/separable-linear';

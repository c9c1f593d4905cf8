// How an image becomes the model's input at test time: data.val.transforms, restricted to the ops that
// keep every pixel (resize, normalize), because eval scores and infer writes predictions at the
// original resolution and a crop or a pad has no inverse there.
import { ConfigError } from '../config/config-error';
import { compileTransforms, type PipelineContext } from '../data/augment';
import { checkTransforms, TransformSpecError, type TransformSpec } from '../data/augment-spec';
import type { LoadedSample } from '../data/load-sample';
import { Rng } from '../util/rng';

/** The normalised HWC image the model sees, and its size. */
export interface TestImage {
  image: Float32Array;
  height: number;
  width: number;
}

export type ImagePreparer = (sample: LoadedSample) => TestImage;

const TEST_OPS: ReadonlySet<string> = new Set(['resize', 'normalize']);

/** Checks `value` (data.val.transforms) for test-time use and compiles it. */
export function testImagePreparer(value: unknown, ctx: PipelineContext, at = 'data.val.transforms'): ImagePreparer {
  let specs: TransformSpec[];
  try {
    specs = checkTransforms(value, at, { allowRandom: false, cropSizeDefault: false });
  } catch (e) {
    if (e instanceof TransformSpecError) throw new ConfigError(e.message);
    throw e;
  }
  specs.forEach((s, i) => {
    if (!TEST_OPS.has(s.type)) {
      throw new ConfigError(
        `${at}[${i}].type: ${s.type} is not supported by segdist eval and infer, which predict at the original resolution: ` +
          'only resize and normalize can be undone there (give a list without it, e.g. data.val.transforms=[{type: normalize}])',
      );
    }
  });
  const transform = compileTransforms(specs, ctx);
  // resize and normalize draw nothing; the Rng only satisfies the signature.
  const rng = new Rng(0);
  return (sample) => {
    const p = transform(sample, rng);
    return { image: p.image, height: p.height, width: p.width };
  };
}

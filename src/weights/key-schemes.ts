// How the keys of another project's state_dict become segdist parameter names. One explicit table;
// `auto` tries every entry and keeps the one under which most tensors match the model.
import { pyconvsegnetKey } from './pyconvsegnet-keys';
import { semsegKey } from './semseg-keys';
import { torchvisionKey } from './torchvision-keys';

export interface KeyScheme {
  name: string;
  describe: string;
  /** The segdist name of a checkpoint key (wrapper prefixes already stripped), or null: not a model key. */
  toSegdist(key: string): string | null;
}

export const KEY_SCHEMES: readonly KeyScheme[] = [
  {
    name: 'mmseg',
    describe: 'mmsegmentation segmentors (EncoderDecoder: backbone.*, decode_head.*, auxiliary_head.*): segdist uses these names already',
    toSegdist: (key) => key,
  },
  {
    name: 'torchvision',
    describe: 'ImageNet classifiers: torchvision resnet18-152 (conv1, bn1, layer1-4), mmcv ResNetV1c/V1d (stem.*) and iduta/pyconv PyConvResNet -> backbone.*; fc.* is unexpected',
    toSegdist: torchvisionKey,
  },
  {
    name: 'semseg',
    describe: 'hszhao/semseg PSPNet: layer0 (deep stem) -> backbone.stem, layer1-4, ppm.features -> decode_head.psp_modules, cls -> bottleneck + conv_seg, aux -> auxiliary_head',
    toSegdist: semsegKey,
  },
  {
    name: 'pyconvsegnet',
    describe: 'iduta/pyconvsegnet PyConvSegNet: layer0 (stem) -> backbone.conv1/bn1, layer1-4, pyconvhead -> decode_head, cls.1 -> conv_seg, aux -> auxiliary_head',
    toSegdist: pyconvsegnetKey,
  },
];

export const SCHEME_CHOICES: readonly string[] = ['auto', ...KEY_SCHEMES.map((s) => s.name)];

export function schemeNamed(name: string): KeyScheme {
  const scheme = KEY_SCHEMES.find((s) => s.name === name);
  if (!scheme) throw new Error(`unknown key scheme '${name}'; known: ${SCHEME_CHOICES.join(', ')}`);
  return scheme;
}

/**
 * Strips what wraps a state_dict's keys: one `state_dict.` (a whole mmseg/semseg checkpoint flattened
 * into one file) and any `module.` (saved from DataParallel / DistributedDataParallel).
 */
export function stripWrapperPrefixes(key: string): string {
  let k = key.startsWith('state_dict.') ? key.slice('state_dict.'.length) : key;
  while (k.startsWith('module.')) k = k.slice('module.'.length);
  return k;
}

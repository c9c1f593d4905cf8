// Names of iduta/pyconvsegnet checkpoints (PyConvSegNet with a PyConvResNet backbone) in segdist's
// model. iduta splits the backbone into layer0 (the stem: conv1, bn1, ReLU; no max pool) and
// layer1..layer4, keeps the head as pyconvhead.*, the classifier as cls = [Dropout2d, Conv2d] and the
// auxiliary head as aux = [Conv2d, BN, ReLU, Dropout2d, Conv2d]. Below those prefixes the names are
// segdist's already (backbone.layer1.0.conv2.conv2_1.weight, decode_head.local_context.layers.3...),
// so the mapping is a prefix table. Checkpoints saved from nn.DataParallel carry a `module.` prefix.
// iduta/pyconv's ImageNet PyConvResNet checkpoints (what PyConvSegNet starts from) use the backbone's
// own names (conv1, bn1, layer1..4) plus the classifier fc: pyconvresnetKey maps those.

/** [iduta prefix, segdist prefix]; the first match wins. */
const PREFIXES: readonly [string, string][] = [
  ['layer0.0.', 'backbone.conv1.'],
  ['layer0.1.', 'backbone.bn1.'],
  ['layer1.', 'backbone.layer1.'],
  ['layer2.', 'backbone.layer2.'],
  ['layer3.', 'backbone.layer3.'],
  ['layer4.', 'backbone.layer4.'],
  ['pyconvhead.', 'decode_head.'],
  ['cls.1.', 'decode_head.conv_seg.'],
  ['aux.0.', 'auxiliary_head.convs.0.conv.'],
  ['aux.1.', 'auxiliary_head.convs.0.bn.'],
  ['aux.4.', 'auxiliary_head.conv_seg.'],
];

/**
 * The segdist name of an iduta PyConvSegNet state_dict key, or null for what segdist does not keep
 * (BN's num_batches_tracked counters). A key that is none of PyConvSegNet's is an error naming it,
 * so a checkpoint of another architecture is not half-loaded in silence.
 */
export function pyconvsegnetKey(key: string): string | null {
  const name = key.startsWith('module.') ? key.slice('module.'.length) : key;
  if (name.endsWith('.num_batches_tracked')) return null;
  for (const [from, to] of PREFIXES) {
    if (name.startsWith(from)) return to + name.slice(from.length);
  }
  throw new Error(`pyconvsegnetKey: '${key}' is not a PyConvSegNet parameter (expected layer0-4, pyconvhead, cls.1 or aux.0/1/4)`);
}

/**
 * The segdist name of a key of iduta's ImageNet PyConvResNet checkpoint (iduta/pyconv), or null for
 * what a segmentation model has no place for (the fc classifier, BN counters). Other keys are errors.
 */
export function pyconvresnetKey(key: string): string | null {
  const name = key.startsWith('module.') ? key.slice('module.'.length) : key;
  if (name.endsWith('.num_batches_tracked') || name.startsWith('fc.')) return null;
  if (/^(conv1|bn1|layer[1-4])\./.test(name)) return `backbone.${name}`;
  throw new Error(`pyconvresnetKey: '${key}' is not a PyConvResNet parameter (expected conv1, bn1, layer1-4 or fc)`);
}

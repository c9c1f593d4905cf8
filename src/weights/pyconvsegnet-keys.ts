// Names of iduta/pyconvsegnet checkpoints (PyConvSegNet with a PyConvResNet backbone) in segdist's
// model. iduta splits the backbone into layer0 (the stem: conv1, bn1, ReLU; no max pool) and
// layer1..layer4, keeps the head as pyconvhead.*, the classifier as cls = [Dropout2d, Conv2d] and the
// auxiliary head as aux = [Conv2d, BN, ReLU, Dropout2d, Conv2d]. Below those prefixes the names are
// segdist's already (backbone.layer1.0.conv2.conv2_1.weight, decode_head.local_context.layers.3...),
// so the mapping is a prefix table. iduta/pyconv's ImageNet PyConvResNet checkpoints (what
// PyConvSegNet starts from) use the backbone's own names (conv1, bn1, layer1..4, fc), which the
// torchvision scheme maps already.

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
 * The segdist name of an iduta PyConvSegNet state_dict key (wrapper prefixes such as `module.` already
 * stripped by the importer), or null for what segdist has no place for (BN's num_batches_tracked
 * counters, keys of another architecture): the importer reports those as unexpected, and strict mode
 * refuses them.
 */
export function pyconvsegnetKey(key: string): string | null {
  if (key.endsWith('.num_batches_tracked')) return null;
  const hit = PREFIXES.find(([from]) => key.startsWith(from));
  return hit === undefined ? null : hit[1] + key.slice(hit[0].length);
}

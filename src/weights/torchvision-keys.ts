// torchvision's ResNet classifiers (resnet18 ... resnet152 state_dicts: conv1, bn1, layer1-4, fc)
// are segdist's V1b backbone without the `backbone.` prefix. mmcv's ImageNet ResNetV1c/V1d
// checkpoints (open-mmlab://resnet50_v1c) name their deep stem `stem.<i>` and are otherwise the same,
// so they map here too. The classifier (fc.*) has no counterpart and stays unexpected.

const BACKBONE_KEY = /^(conv1|bn1|stem|layer[1-4])\./;

export function torchvisionKey(key: string): string | null {
  return BACKBONE_KEY.test(key) ? `backbone.${key}` : null;
}

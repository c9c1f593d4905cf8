// hszhao/semseg's PSPNet (model/pspnet.py over model/resnet.py with deep_base=True):
//   layer0  nn.Sequential(conv1, bn1, relu, conv2, bn2, relu, conv3, bn3, relu, maxpool), the deep
//           stem 3->64->64->128, so its convs and BNs sit at indices 0,1 / 3,4 / 6,7: the same
//           indices as mmseg's ResNetV1c `stem` Sequential (with model.backbone.stem_channels 128);
//   layer1-4  torchvision-style blocks, keys as segdist's;
//   ppm.features.<i>  Sequential(AdaptiveAvgPool2d, Conv2d, BatchNorm2d, ReLU): mmseg's
//           psp_modules.<i> is Sequential(pool, ConvModule), so .1 -> .1.conv and .2 -> .1.bn;
//   cls / aux  Sequential(Conv2d 3x3, BatchNorm2d, ReLU, Dropout2d, Conv2d 1x1 with bias): the
//           3x3 ConvModule (PSPHead.bottleneck, FCNHead.convs.0) and conv_seg.

const RULES: ReadonlyArray<[RegExp, string]> = [
  [/^layer0\.([013467])\.(.+)$/, 'backbone.stem.$1.$2'],
  [/^(layer[1-4]\..+)$/, 'backbone.$1'],
  [/^ppm\.features\.(\d+)\.1\.(.+)$/, 'decode_head.psp_modules.$1.1.conv.$2'],
  [/^ppm\.features\.(\d+)\.2\.(.+)$/, 'decode_head.psp_modules.$1.1.bn.$2'],
  [/^cls\.0\.(.+)$/, 'decode_head.bottleneck.conv.$1'],
  [/^cls\.1\.(.+)$/, 'decode_head.bottleneck.bn.$1'],
  [/^cls\.4\.(.+)$/, 'decode_head.conv_seg.$1'],
  [/^aux\.0\.(.+)$/, 'auxiliary_head.convs.0.conv.$1'],
  [/^aux\.1\.(.+)$/, 'auxiliary_head.convs.0.bn.$1'],
  [/^aux\.4\.(.+)$/, 'auxiliary_head.conv_seg.$1'],
];

export function semsegKey(key: string): string | null {
  for (const [re, to] of RULES) {
    if (re.test(key)) return key.replace(re, to);
  }
  return null;
}

import { Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command';
import { parseSize } from '../../cli/size-flag';
import { synthesizeDataset } from '../../data/synth-dataset';

export default class DataSynth extends BaseCommand {
  static override summary = 'Write a synthetic segmentation dataset in the folder layout segdist reads.';
  static override description =
    'Random circles, rectangles and triangles of K classes (class 0 is background) on textured, noisy backgrounds, with ignore (255) bands along ' +
    'shape borders: images/<split>/*.jpg, labels/<split>/*.png (one channel of class indices), <split>.txt and dataset.json. The same seed gives byte-identical files.';
  static override examples = [
    '<%= config.bin %> data synth --out data/synth',
    '<%= config.bin %> data synth --out data/synth --classes 8 --count 1000 --val-count 100 --size 256x320 --seed 3',
  ];
  static override flags = {
    out: Flags.string({ summary: 'Output folder.', required: true, helpValue: 'DIR' }),
    classes: Flags.integer({ summary: 'Number of classes, background included.', default: 5, min: 2, max: 255 }),
    count: Flags.integer({ summary: 'Training images.', default: 320, min: 1 }),
    'val-count': Flags.integer({ summary: 'Validation images (default: count / 6, at least 1).', min: 1 }),
    size: Flags.string({ summary: 'Image size HxW.', default: '160x160', helpValue: 'HxW' }),
    seed: Flags.integer({ summary: 'Generator seed.', default: 0, min: 0 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(DataSynth);
    const size = parseSize(flags.size, '--size');
    const val = flags['val-count'] ?? Math.max(1, Math.round(flags.count / 6));
    const s = await synthesizeDataset({ out: flags.out, classes: flags.classes, count: { train: flags.count, val }, size, seed: flags.seed });
    this.log(`wrote ${s.files} files to ${s.root}: ${Object.entries(s.splits).map(([k, n]) => `${n} ${k}`).join(', ')} images, ${s.numClasses} classes`);
    this.log(`train on it with: segdist train data.root=${flags.out} data.synthesize=false data.num_classes=${s.numClasses}`);
  }
}

import { Flags } from '@oclif/core';
import { BACKENDS, TEST_MODES } from '../config/config-schema';
import { BaseCommand, EXIT } from '../cli/base-command';
import { inferImages } from '../eval/infer-run';
import { createProgress } from '../eval/progress';

export default class Infer extends BaseCommand {
  static override summary = 'Predict images with a checkpoint: class-index masks, palette colour masks and overlays.';
  static override description =
    'Writes, per input image, <output>/mask/<stem>.png (8-bit single-channel class indices), <output>/color/<stem>.png ' +
    '(the same indices as a palette PNG with the dataset\'s colours, as VOC ships its masks) and <output>/overlay/<stem>.jpg ' +
    '(the colour mask blended over the image at opacity 0.5), all at the image\'s own size. Images of any size and aspect ratio; ' +
    'a folder input takes its .jpg .jpeg .png .webp .tif .tiff .gif .avif .bmp files (not recursive). A file that cannot be ' +
    'decoded is reported and skipped; the exit code is 3 only when no image could be predicted. No config file is needed: the ' +
    'checkpoint carries its config, class names, palette and normalisation; trailing key.path=value arguments override that config ' +
    '(test.*, data.val.transforms, backend). A progress bar goes to stderr when it is a terminal.';
  static override examples = [
    '<%= config.bin %> infer --checkpoint work_dirs/default/checkpoints/best --input photos/ --output predictions/',
    '<%= config.bin %> infer --checkpoint work_dirs/pspnet_r18_camvid/checkpoints/best --input frame.png --output out/ --mode slide test.crop_size=[192,192]',
    '<%= config.bin %> infer --checkpoint work_dirs/pspnet_r18_camvid/checkpoints/best --input frames/ --output out/ --mode multiscale --flip',
  ];
  static override strict = false;
  static override flags = {
    checkpoint: Flags.string({ summary: 'Checkpoint directory.', required: true, helpValue: 'PATH' }),
    input: Flags.string({ char: 'i', summary: 'An image file, or a folder of images.', required: true, helpValue: 'DIR|FILE' }),
    output: Flags.string({ char: 'o', summary: 'Folder for the mask/, color/ and overlay/ outputs (created if missing).', required: true, helpValue: 'DIR' }),
    mode: Flags.string({ summary: 'Test-time mode (sets test.mode; default: the checkpoint config\'s, whole unless set).', options: [...TEST_MODES] }),
    flip: Flags.boolean({ summary: 'Also predict the mirrored image and average (sets test.flip).', allowNo: true }),
    backend: Flags.string({ summary: 'Compute backend.', options: [...BACKENDS] }),
  };

  async run(): Promise<void> {
    const { flags, argv } = await this.parse(Infer);
    const overrides = [
      ...(argv as string[]),
      ...(flags.backend ? [`backend=${flags.backend}`] : []),
      ...(flags.mode ? [`test.mode=${flags.mode}`] : []),
      ...(flags.flip === undefined ? [] : [`test.flip=${flags.flip}`]),
    ];
    const log = (m: string) => this.log(m);
    const summary = await inferImages({
      checkpoint: flags.checkpoint, input: flags.input, output: flags.output, overrides, log,
      warn: (m) => process.stderr.write(`${m}\n`),
      progress: (total, label) => createProgress({ total, label, unit: 'images', plain: log }),
    });
    const skipped = summary.skipped.length;
    this.log(`${summary.written} image(s) written to ${summary.output} in ${summary.seconds.toFixed(1)} s` + (skipped ? `; ${skipped} skipped:` : ''));
    for (const s of summary.skipped) this.log(`  ${s.file}: ${s.reason}`);
    if (summary.written === 0) this.exit(EXIT.data);
  }
}

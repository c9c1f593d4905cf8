import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { DataError } from '../src/data/data-error';
import { readFolderSplit, readListFile } from '../src/data/folder-dataset';

// The reader only checks that files exist, so empty files stand in for images and labels.
async function makeTree(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'segdist-folder-'));
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await writeFile(path.join(root, rel), content);
  }
  return root;
}

async function withTree(files: Record<string, string>, body: (root: string) => Promise<void>): Promise<void> {
  const root = await makeTree(files);
  try {
    await body(root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

test('folder layout: stems in list order, image extension found by trying .jpg/.jpeg/.png', async () => {
  await withTree(
    {
      'images/train/a.jpg': '',
      'images/train/b.png': '',
      'images/train/c.jpeg': '',
      'images/train/c.png': '', // .jpeg comes first in the default order
      'labels/train/a.png': '',
      'labels/train/b.png': '',
      'labels/train/c.png': '',
      'train.txt': 'b\r\n\na\nc\n',
    },
    async (root) => {
      const refs = await readFolderSplit({ root, split: 'train' });
      assert.deepEqual(
        refs.map((r) => [r.id, path.relative(root, r.image), path.relative(root, r.label)]),
        [
          ['b', 'images/train/b.png', 'labels/train/b.png'],
          ['a', 'images/train/a.jpg', 'labels/train/a.png'],
          ['c', 'images/train/c.jpeg', 'labels/train/c.png'],
        ],
      );
    },
  );
});

test('folder layout errors: missing root, missing list, missing image or label with its line', async () => {
  const missingRoot = path.join(os.tmpdir(), 'segdist-no-such-dataset-root');
  await assert.rejects(readFolderSplit({ root: missingRoot, split: 'train' }), (err: Error) => {
    assert.ok(err instanceof DataError);
    assert.equal(err.file, missingRoot);
    assert.match(err.message, /dataset root folder does not exist/);
    return true;
  });

  await withTree({ 'images/val/a.jpg': '', 'labels/val/a.png': '', 'train.txt': 'a\nb\n\nc\n' }, async (root) => {
    await assert.rejects(readFolderSplit({ root, split: 'val' }), (err: Error) => {
      assert.ok(err instanceof DataError);
      assert.equal(err.file, path.join(root, 'val.txt'));
      assert.match(err.message, /cannot read list file/);
      return true;
    });
  });

  await withTree(
    {
      'images/train/a.jpg': '',
      'images/train/b.jpg': '',
      'images/train/d.jpg': '',
      'labels/train/a.png': '',
      'labels/train/d.png': '',
      'train.txt': 'a\n\nc\nb\nd\n',
    },
    async (root) => {
      // c (line 3) has no image and b (line 4) no label: the earliest line is reported.
      await assert.rejects(readFolderSplit({ root, split: 'train' }), (err: Error) => {
        assert.ok(err instanceof DataError);
        assert.equal(err.line, 3);
        assert.equal(err.message, `${path.join(root, 'train.txt')}:3: image for stem "c" not found (tried ${['.jpg', '.jpeg', '.png'].map((e) => path.join(root, 'images/train/c' + e)).join(', ')})`);
        return true;
      });
      await writeFile(path.join(root, 'train.txt'), 'a\nb\n');
      await assert.rejects(
        readFolderSplit({ root, split: 'train' }),
        new RegExp(`train\\.txt:2: label for stem "b" not found: ${path.join(root, 'labels/train/b.png').replace(/[.]/g, '\\.')}`),
      );
      await writeFile(path.join(root, 'train.txt'), 'a\nd\na\n');
      await assert.rejects(readFolderSplit({ root, split: 'train' }), /train\.txt:3: sample "a" is listed twice \(first on line 1\)/);
      await writeFile(path.join(root, 'train.txt'), '\n\n');
      await assert.rejects(readFolderSplit({ root, split: 'train' }), /train\.txt: list file is empty/);
    },
  );
});

test('list file of path pairs: paths relative to root, errors name the line', async () => {
  await withTree(
    {
      'JPEGImages/x1.jpg': '',
      'JPEGImages/x2.jpg': '',
      'SegmentationClass/x1.png': '',
      'SegmentationClass/x2.png': '',
      'list/train.txt': 'JPEGImages/x1.jpg SegmentationClass/x1.png\nJPEGImages/x2.jpg\tSegmentationClass/x2.png\n',
    },
    async (root) => {
      const refs = await readListFile({ root, listFile: 'list/train.txt' });
      assert.deepEqual(refs, [
        { id: 'JPEGImages/x1', image: path.join(root, 'JPEGImages/x1.jpg'), label: path.join(root, 'SegmentationClass/x1.png') },
        { id: 'JPEGImages/x2', image: path.join(root, 'JPEGImages/x2.jpg'), label: path.join(root, 'SegmentationClass/x2.png') },
      ]);

      await writeFile(path.join(root, 'list/train.txt'), 'JPEGImages/x1.jpg SegmentationClass/x1.png\nJPEGImages/x2.jpg SegmentationClass/x3.png\n');
      await assert.rejects(readListFile({ root, listFile: 'list/train.txt' }), (err: Error) => {
        assert.ok(err instanceof DataError);
        assert.equal(err.line, 2);
        assert.match(err.message, /list\/train\.txt:2: label not found: .*SegmentationClass\/x3\.png$/);
        return true;
      });

      await writeFile(path.join(root, 'list/train.txt'), 'JPEGImages/x1.jpg\n');
      await assert.rejects(readListFile({ root, listFile: 'list/train.txt' }), /train\.txt:1: expected "<image path> <label path>", got 1 field/);
      await assert.rejects(readListFile({ root, listFile: 'list/val.txt' }), /list\/val\.txt: cannot read list file/);
    },
  );
});

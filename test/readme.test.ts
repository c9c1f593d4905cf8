import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { configReference } from '../src/config/config-reference';

const README = path.resolve(__dirname, '../../README.md');

test('the README\'s config reference is the schema\'s (node tools/update-readme-reference.js)', () => {
  const text = fs.readFileSync(README, 'utf8');
  const m = /<!-- config-reference:start -->\n([\s\S]*?)\n<!-- config-reference:end -->/.exec(text);
  assert.ok(m, 'markers missing');
  assert.equal(m[1], configReference());
});

test('the README names the two commands', () => {
  const text = fs.readFileSync(README, 'utf8');
  assert.match(text, /^ {4}npm ci && npx segdist train$/m);
  assert.match(text, /^ {4}npm test$/m);
  const pkg = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../package.json'), 'utf8'));
  assert.match(fs.readFileSync(path.resolve(__dirname, '../../.ci/run'), 'utf8'), /npm ci[^\n]*\nnpm test/);
  assert.ok(pkg.scripts.test.includes('node --test'));
});

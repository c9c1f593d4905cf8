#!/usr/bin/env node
// npm's install step: builds native/ (the ring allreduce in C, src/cluster/native-ring.ts) with the
// node-gyp that npm ships. Optional by design: without a compiler, or with SEGDIST_NO_NATIVE=1, the
// build is skipped, segdist runs the same collectives in JavaScript, and the install still succeeds.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const dir = path.join(__dirname, '..', 'native');
if (process.env.SEGDIST_NO_NATIVE === '1') {
  console.log('segdist: SEGDIST_NO_NATIVE=1, the native ring allreduce is not built (the JavaScript ring is used)');
  process.exit(0);
}
const candidates = [
  process.env.npm_config_node_gyp,
  path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].filter((p) => p && fs.existsSync(p));
if (candidates.length === 0) {
  console.log('segdist: node-gyp not found, the native ring allreduce is not built (the JavaScript ring is used)');
  process.exit(0);
}
// Build against the running Node's own headers where they are installed beside it (no download).
const prefix = path.join(path.dirname(process.execPath), '..');
const args = [candidates[0], 'rebuild'];
if (!process.env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const r = spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8' });
if (r.status !== 0) {
  const why = `${r.stderr || ''}${r.stdout || ''}`.trim().split('\n').filter((l) => /error/i.test(l)).slice(0, 3).join(' | ');
  console.log(`segdist: the native ring allreduce could not be built (${why || `node-gyp exited with ${r.status}`}); the JavaScript ring is used`);
  process.exit(0);
}
console.log('segdist: built the native ring allreduce (native/build/Release/segdist_native.node)');

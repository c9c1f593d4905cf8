#!/usr/bin/env node
// Rewrites the README's config reference from the schema (run after `npm run build`).
const fs = require('node:fs');
const path = require('node:path');
const { configReference } = require('../dist/src/config/config-reference');
const file = path.join(__dirname, '..', 'README.md');
const text = fs.readFileSync(file, 'utf8');
const start = '<!-- config-reference:start -->';
const end = '<!-- config-reference:end -->';
const i = text.indexOf(start);
const j = text.indexOf(end);
if (i < 0 || j < i) throw new Error('README.md: config reference markers not found');
fs.writeFileSync(file, text.slice(0, i + start.length) + '\n' + configReference() + '\n' + text.slice(j));

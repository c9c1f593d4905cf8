#!/usr/bin/env node
// The `segdist` executable: oclif finds the compiled commands through package.json's "oclif" section.
require('@oclif/core').execute({ dir: __dirname });

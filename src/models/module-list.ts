// nn.ModuleList: children named '0', '1', ... with no forward of their own (the owner decides how to
// run them, e.g. PSPNet's parallel pyramid branches, keyed psp_modules.<i>.*).

import { Module } from './module';

export class ModuleList<T extends Module> extends Module {
  readonly items: readonly T[];

  constructor(items: T[]) {
    super();
    this.items = items;
    items.forEach((m, i) => this.registerModule(String(i), m));
  }
}

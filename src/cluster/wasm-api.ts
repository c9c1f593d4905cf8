// The few WebAssembly JS API types this package uses. The project compiles against ES2022 + @types/node,
// which do not declare the WebAssembly namespace, and a global declaration here could clash with the one
// another part of the project (or a later lib setting) brings in, so these are module-local.

export interface WasmMemory {
  readonly buffer: SharedArrayBuffer | ArrayBuffer;
}

export interface WasmModule {
  readonly __wasmModule?: never;
}

interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

interface WasmApi {
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
}

export const wasm: WasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

// The ways collectives can move data, for the end-to-end tests to run each on all of them: the stream
// plane in JavaScript, the stream plane with large allreduces in the native ring (native-ring.ts), and
// ZeroMQ. The native ring is built at `npm ci` wherever a compiler is; a checkout installed with
// SEGDIST_NO_NATIVE=1 says so, and then its variant checks that everything ran in JavaScript instead.
import type { DataPlane } from '../../src/cluster/data-transport';

export interface PlaneVariant {
  label: string;
  dataPlane: DataPlane;
  nativeRing: boolean;
}

export const PLANE_VARIANTS: readonly PlaneVariant[] = [
  { label: 'stream data plane', dataPlane: 'stream', nativeRing: false },
  { label: 'stream data plane, native ring', dataPlane: 'stream', nativeRing: true },
  { label: 'zeromq data plane', dataPlane: 'zeromq', nativeRing: false },
];

/** Whether this checkout must have the native ring (built by npm's install step). */
export const NATIVE_BUILT = process.env.SEGDIST_NO_NATIVE !== '1';

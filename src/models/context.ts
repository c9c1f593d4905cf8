// What a forward pass needs to know besides its input. Models stay ignorant of parallelism: SyncBN
// receives a StatReducer, an interface defined here and implemented by the trainer (over the cluster's
// collectives), so src/models never imports src/cluster.

/**
 * Sums a Float32Array across all trainers, synchronously, and returns the sum. `name` identifies the
 * collective (e.g. "backbone.layer1.0.bn1/fwd") so that a rank calling a different one fails loudly.
 * Must be callable from inside a tf.customGrad forward or gradient function.
 */
export interface StatReducer {
  readonly worldSize: number;
  allreduceSum(name: string, data: Float32Array): Float32Array;
}

export interface ForwardContext {
  /** Training mode: batch statistics in BN, dropout on. */
  training: boolean;
  /** Seed for this step's dropout masks; a pure function of (run seed, iteration, rank). */
  seed: number;
  /** Present only with model.norm = syncbn and more than one trainer. */
  statReducer?: StatReducer;
}

// The cluster package's public surface: what a trainer or launcher imports. Everything here moves
// named Float32Arrays between processes; nothing here knows about tensors or models.
//
//   const comm = await Communicator.connect(readDistEnv(), { timeoutMs: 600_000 });
//   const mean = comm.allreduceSumSync('bn1.stats', stats);          // inside a tf.customGrad: blocks
//   const grads = await new GradBuckets(comm).averaged(namedGrads);  // fused, in place, overlapped
//   await comm.barrier('checkpoint');
//   await comm.close();

export { CommError, type CommErrorCode } from './comm-error';
export type { DataPlane } from './data-transport';
export { Communicator, type CommunicatorOptions, type ReduceOp } from './communicator';
export { DistEnvError, readDistEnv, SINGLE_PROCESS_ENV, type DistEnv } from './dist-env';
export { DEFAULT_BUCKET_BYTES, GradBuckets, planBuckets, type Bucket, type GradBucketsOptions, type MeanAllreducer, type NamedArray } from './grad-buckets';
export { LocalJob, RANK_MALLOC_ENV, type LocalJobOptions, type RankExit, type RankProcess, type RankSpec } from './local-job';

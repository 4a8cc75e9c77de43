/**
 * `@bilevel/distributed` — runs of bilevel experiments fanned out to workers through BullMQ on Redis: the
 * queue address (`redis://`, `rediss://`, password), the job format and its validation, the coordinator's
 * end (submit jobs, receive streamed rows and results) and the worker's end (take jobs, hand them back on
 * shutdown; a killed worker's job goes to another one through BullMQ's stalled-job recovery), and the
 * queue's status. The `bilevel` command builds `run --queue`, `worker` and `status` on it.
 *
 * @module @bilevel/distributed
 */
export { parseQueueUrl, DEFAULT_QUEUE_NAME, type QueueAddress } from './queue-url';
export {
  parseRunJob,
  encodeJson,
  decodeJson,
  PROTOCOL_VERSION,
  RunJobSchema,
  type RunJob,
  type RowsMessage,
  RowBatcher,
} from './protocol';
export { checkConnection } from './connection-check';
export {
  RUN_JOB_NAME,
  type CoordinatorOptions,
  type JobEnd,
  QueueCoordinator,
  type ProcessorContext,
  type ProcessorResult,
  type QueueWorkerOptions,
  QueueWorker,
} from './run-queue';
export {
  queueStatus,
  type EsFailure,
  type EsQueueStatus,
  type JobStatus,
  type QueueStatus,
  type WorkerStatus,
} from './queue-status';
export {
  esQueueName,
  parseEsBlockJob,
  encodeStepArrays,
  decodeStepArrays,
  stepJobs,
  ES_JOB_NAME,
  EsBlockJobSchema,
  type EsBlockJob,
  type EsBlockResult,
  type StepArrays,
} from './es-protocol';
export {
  registerDistributedEs,
  startEsWorker,
  RemotePerturbedSolves,
  type EsBlockComputer,
  type EsWorkerHandle,
} from './es-executor';
export type { EsThreadAnswer, EsThreadData, EsThreadStep } from './es-thread';
export {
  DEFAULT_REDIS_CHECKPOINT_LIMIT,
  type StoredCheckpoint,
  RedisCheckpointStore,
} from './redis-checkpoints';

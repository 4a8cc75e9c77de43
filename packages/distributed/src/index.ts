/**
 * `@bilevel/distributed` — runs of bilevel experiments fanned out to workers through BullMQ on Redis: the
 * queue address (`redis://`, `rediss://`, password), the job format and its validation, the coordinator's
 * end (submit jobs, receive streamed rows and results) and the worker's end (take jobs, hand them back on
 * shutdown; a killed worker's job goes to another one through BullMQ's stalled-job recovery), and the
 * queue's status. The `bilevel` command builds `run --queue`, `worker` and `status` on it.
 *
 * @module @bilevel/distributed
 */
export * from './queue-url';
export * from './protocol';
export * from './connection-check';
export * from './run-queue';
export * from './queue-status';
export * from './es-protocol';
export * from './es-executor';
export type { EsThreadAnswer, EsThreadData, EsThreadStep } from './es-thread';
export * from './redis-checkpoints';

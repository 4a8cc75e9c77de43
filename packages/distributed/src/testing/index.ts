/**
 * `@bilevel/distributed/testing` — a private redis-server for tests and benchmarks: a free loopback port, a
 * temporary data folder, optional password, persistence and TLS; stopped (and its folder removed) by `stop()`.
 *
 * @module @bilevel/distributed/testing
 */
export {
  findRedisServer,
  freePort,
  makeTestCertificates,
  redisSkipReason,
  startTestRedis,
  type TestRedis,
  type TestTlsFiles,
} from './redis-server';

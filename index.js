'use strict';
// rcluster: require('rcluster') where you had require('cluster').
//
// In a worker this is Node's own worker-side cluster: the worker is a stock
// Node process speaking Node's protocol to our primary, so every listen() in
// it works unchanged. (Node deletes NODE_UNIQUE_ID from a worker's env at
// startup, so we ask Node which side we are on.) In the primary it is
// lib/primary.js over the Rust engine, or lib/portable.js over node:cluster
// where no native engine runs (lib/engine.js chooses). In a worker, lib/worker-hook.js adds
// rcluster's small worker API (cluster.worker.ready()).

const nodeCluster = require('node:cluster');

if (nodeCluster.isWorker) require('./lib/worker-hook');

module.exports = nodeCluster.isWorker ? nodeCluster : require('./lib/engine').primary();

// Never runs: it names the exports for Node's ESM loader (cjs-module-lexer),
// so that `import { isPrimary, fork } from 'rcluster'` works as it does for
// 'node:cluster'.
/* eslint-disable no-undef */
0 && (module.exports = {
  isPrimary, isMaster, isWorker, Worker, workers, worker, settings,
  SCHED_NONE, SCHED_RR, SCHED_REUSEPORT, schedulingPolicy,
  setupPrimary, setupMaster, fork, disconnect,
  shutdown, reload, metrics, metricsText, health, run, availableParallelism, engine,
  on, once, off, emit, addListener, removeListener, removeAllListeners, listeners, listenerCount,
});

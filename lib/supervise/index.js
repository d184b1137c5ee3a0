'use strict';
// rcluster's supervision, all opt-in so the drop-in default stays Node's,
// one concern a file: restart (crash-loop protection), hook (the worker
// hook, heartbeats, readiness), shutdown (and health), reload, metrics,
// run (the rcluster command's supervisor: cluster.run()).
// Written once for both engines: it sees workers through the cluster API
// and reaches the engine only through the small `engine` object below.

const { validateSupervision } = require('./validate');
const { createRestart } = require('./restart');
const { createHook } = require('./hook');
const { installShutdown } = require('./shutdown');
const { installReload } = require('./reload');
const { installMetrics } = require('./metrics');
const { createReaper } = require('./orphans');
const { createAppMetrics } = require('./appmetrics');
const { installRun } = require('./run');

/**
 * Installs supervision on the primary's cluster object and returns the hooks
 * the engine's primary calls (configure, spawnEnv, onFork, onExit,
 * onMessage, onUnresponsive). `engine` is what supervision needs of it:
 * - `live`: Map of id to every worker not yet gone (exited and disconnected);
 * - `forkReplacing(env, old)`: forks `old`'s successor in a reload;
 * - `watchdog(timeout, grace)`: starts the hung-worker watchdog, once;
 * - `stats()`: Map of id to { dispatched, inFlight, connectionsOpen,
 *   heartbeatAgeMs } (null where the engine does not count them);
 * - `reapOrphans(keep)`, `childSubreaper()`: where the engine can reap
 *   adopted orphans (the native one), else absent.
 */
function install(cluster, engine) {
  const restart = createRestart(cluster);
  const hook = createHook(engine);
  const shutdown = installShutdown(cluster, engine.live, restart);
  installReload(cluster, engine.forkReplacing, {
    stopWorker: shutdown.stopWorker,
    crashed: (w) => restart.onExit(w, w.process.exitCode, w.process.signalCode),
  });
  const appMetrics = createAppMetrics(cluster);
  installMetrics(cluster, engine, restart, appMetrics);
  const reaper = createReaper(engine);
  installRun(cluster, shutdown.stopWorker);
  return {
    configure(settings) {
      restart.configure(settings);
      hook.configure(settings);
      shutdown.configure(settings);
      reaper.configure(settings);
    },
    spawnEnv: hook.spawnEnv,
    onFork(worker, env) {
      restart.onFork(worker, env);
      hook.onFork(worker);
    },
    onExit: restart.onExit,
    onMessage(worker, message) {
      if (message.act === 'appMetrics') appMetrics.onReply(worker, message);
      else hook.onMessage(worker, message);
    },
    onUnresponsive(worker) {
      cluster.emit('unresponsive', worker);
    },
  };
}

module.exports = { install, validateSupervision };

'use strict';
// rcluster's supervision, all opt-in so the drop-in default stays Node's,
// one concern a file: restart (crash-loop protection), hook (the worker
// hook, heartbeats, readiness), shutdown (and health), reload, metrics.
// The restart policy itself is the engine's (src/supervise/restart.rs);
// the watchdog's deadlines too (src/supervise/watchdog.rs).

const { validateSupervision } = require('./validate');
const { createRestart } = require('./restart');
const { createHook } = require('./hook');
const { installShutdown } = require('./shutdown');
const { installReload } = require('./reload');
const { installMetrics } = require('./metrics');

/**
 * Installs supervision on the primary's cluster object and returns the hooks
 * lib/primary.js calls. `native` is the engine binding; `live` maps ids to
 * workers the engine still tracks; `forkReplacing(env, old)` forks `old`'s
 * successor in a reload; `started()` says whether the engine runs yet.
 */
function install(cluster, native, live, forkReplacing, started) {
  const restart = createRestart(cluster, native);
  const hook = createHook(native);
  const shutdown = installShutdown(cluster, live, restart);
  installReload(cluster, forkReplacing);
  installMetrics(cluster, native, started, restart);
  return {
    configure(settings) {
      restart.configure(settings);
      hook.configure(settings);
      shutdown.configure(settings);
    },
    spawnEnv: hook.spawnEnv,
    onFork(worker, env) {
      restart.onFork(worker, env);
      hook.engineStarted();
    },
    onExit(worker, code, signal) {
      restart.onExit(worker, code, signal, shutdown.stopping());
    },
    onMessage: hook.onMessage,
    onUnresponsive(worker) {
      cluster.emit('unresponsive', worker);
    },
  };
}

module.exports = { install, validateSupervision };

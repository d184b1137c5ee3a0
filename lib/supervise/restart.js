'use strict';
// Auto-restart with crash-loop protection: a worker that crashes (not one
// that left on purpose) is replaced after the backoff the policy says; past
// the crash-loop limit 'restartLimit' is emitted instead. The policy and its
// defaults are the engine's (src/supervise/restart.rs, native.RestartTracker).

const { resolveRestart } = require('./validate');
const { kEnv, kForkedAt, kStreak, kRestarts } = require('./keys');

function createRestart(cluster, native) {
  let given = null; // the options as setupPrimary() gave them (null: off)
  let tracker = null;
  let total = 0;
  const timers = new Set();

  // fork() calls setupPrimary() each time: keep the crash-loop window unless
  // the restart options really changed.
  function configure(settings) {
    const next = resolveRestart(settings.restart);
    if (JSON.stringify(next) === JSON.stringify(given)) return;
    given = next;
    tracker = next ? new native.RestartTracker(next) : null;
  }

  function onFork(worker, env) {
    worker[kEnv] = env;
    worker[kForkedAt] = Date.now();
    worker[kRestarts] = 0;
    worker[kStreak] = 0;
  }

  // After Node's 'exit' events: replace a crashed worker when restart is on.
  function onExit(worker, code, signal, stopping) {
    if (!tracker || worker.exitedAfterDisconnect || stopping) return;
    const d = tracker.onCrash(Date.now(), Date.now() - worker[kForkedAt], worker[kStreak]);
    if (!d.restart) {
      const { maxRestarts, window } = tracker.policy;
      cluster.emit('restartLimit', worker, { code, signal, maxRestarts, window });
      return;
    }
    const timer = setTimeout(() => {
      timers.delete(timer);
      const fresh = cluster.fork(worker[kEnv]);
      total++;
      fresh[kStreak] = d.streak;
      fresh[kRestarts] = worker[kRestarts] + 1;
      cluster.emit('restart', fresh, worker, { code, signal, delay: d.delay });
    }, d.delay);
    timers.add(timer);
  }

  // A shutdown: no replacement forked after this.
  function cancel() {
    for (const t of timers) clearTimeout(t);
    timers.clear();
  }

  return { configure, onFork, onExit, cancel, total: () => total };
}

module.exports = { createRestart };

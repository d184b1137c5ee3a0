'use strict';
// Zero-downtime rolling reload (cluster.reload): each worker is replaced by
// a new one, which is ready first (listening, or cluster.worker.ready()
// with readiness 'ready'); then the old one drains and leaves.

const errors = require('../errors');
const { validateNumber } = require('./validate');
const { kEnv } = require('./keys');
const { exitWithin } = require('./shutdown');

// Resolves when `worker` is ready: listening, or cluster.worker.ready()
// with readiness 'ready'. Rejects if it exits first or the deadline passes.
function readyWithin(cluster, worker, timeout) {
  const event = cluster.settings.readiness === 'ready' ? 'ready' : 'listening';
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      worker.off(event, onReady);
      worker.off('exit', onExit);
    };
    const onReady = () => { cleanup(); resolve(); };
    const onExit = (code, signal) => {
      cleanup();
      reject(Object.assign(new Error(`worker ${worker.id} exited (${signal || code}) before it was ready`),
        { code: 'ERR_RCLUSTER_RELOAD_FAILED' }));
    };
    const timer = setTimeout(() => {
      cleanup();
      worker.process.kill('SIGKILL');
      reject(Object.assign(new Error(`worker ${worker.id} was not ready within ${timeout} ms`),
        { code: 'ERR_RCLUSTER_RELOAD_FAILED' }));
    }, timeout);
    worker.on(event, onReady);
    worker.on('exit', onExit);
  });
}

/** Installs cluster.reload(); `forkReplacing(env, old)` forks `old`'s successor. */
function installReload(cluster, forkReplacing) {
  let reloading = null;
  cluster.reload = function reload(options = {}) {
    errors.validateObject(options, 'options');
    const timeout = options.timeout ?? 10000;
    const concurrency = options.concurrency ?? 1;
    validateNumber(timeout, 'options.timeout');
    validateNumber(concurrency, 'options.concurrency', 1);
    if (reloading) return reloading;
    const olds = Object.values(cluster.workers).filter((w) => w.isConnected() && !w.isDead());
    const results = [];
    let next = 0;
    // One replacement at a time per lane: start it, wait until it is ready,
    // then let the old one finish its requests and leave.
    const lane = async () => {
      while (next < olds.length) {
        const old = olds[next++];
        // Under SCHED_REUSEPORT the new worker shares the old one's socket,
        // so the connections queued on it are not stranded when it leaves.
        const fresh = forkReplacing(old[kEnv], old);
        await readyWithin(cluster, fresh, timeout);
        const gone = exitWithin(old, timeout);
        if (old.isConnected()) old.disconnect();
        const r = await gone;
        results.push({ old: old.id, new: fresh.id, code: r.code, signal: r.signal, forced: r.forced });
      }
    };
    reloading = Promise.all(Array.from({ length: Math.min(concurrency, olds.length) }, lane))
      .then(() => results)
      .finally(() => { reloading = null; });
    return reloading;
  };
}

module.exports = { installReload };

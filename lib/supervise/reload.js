'use strict';
// Zero-downtime rolling reload (cluster.reload): each worker is replaced by
// a new one, which is ready first (listening, or ready with readiness
// 'ready'); then the old one drains and leaves.
//
// The number of workers is kept whatever happens meanwhile:
// - a replacement that fails (exits, or is not ready in time) is not
//   restarted and does not count as a crash; the reload is abandoned there:
//   replacements still on their way are stopped, the old workers not yet
//   replaced keep serving, and reload() rejects with the cause (the exit,
//   and the last line the replacement wrote to stderr when it is piped);
// - an old worker that is gone or leaving when its turn comes (it crashed,
//   and the restart policy replaced it already; it was scaled down) is
//   skipped;
// - an old worker that crashes while its replacement is on the way, or after
//   it took over, is not restarted: the replacement takes its place (or, if
//   the replacement fails, the restart policy gets the crash then).

const errors = require('../errors');
const { validateNumber } = require('./validate');
const { kEnv, kCandidate, kSuccessor } = require('./keys');
const { exitWithin } = require('./shutdown');
const { lastWords } = require('./lastwords');

const reloadError = (message) => Object.assign(new Error(message), { code: 'ERR_RCLUSTER_RELOAD_FAILED' });

// Resolves when `worker` is ready: listening, or ready with readiness
// 'ready'. Rejects if it exits first or the deadline passes (then it is
// SIGKILLed).
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
      reject(reloadError(`worker ${worker.id} ${signal ? `was killed by ${signal}` : `exited with code ${code}`} before it was ready`));
    };
    const timer = setTimeout(() => {
      cleanup();
      worker.process.kill('SIGKILL');
      reject(reloadError(`worker ${worker.id} was not ready within ${timeout} ms`));
    }, timeout);
    worker.on(event, onReady);
    worker.on('exit', onExit);
  });
}

/**
 * Installs cluster.reload(). `forkReplacing(env, old)` forks `old`'s
 * successor; `stopWorker(w)` makes a worker leave (shutdown.js);
 * `crashed(w)` hands a crash the reload held back to the restart policy.
 */
function installReload(cluster, forkReplacing, { stopWorker, crashed }) {
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
    const pending = new Set(); // replacements not ready yet
    let failure = null;
    let next = 0;

    // The first failure abandons the reload: no more replacements, and
    // those on their way are stopped (they are candidates: not restarted).
    async function abandon(fresh, old, err) {
      if (failure) return;
      failure = err;
      for (const w of pending) if (w !== fresh && !w.isDead()) w.process.kill('SIGKILL');
      const words = await lastWords(fresh);
      if (words) err.message += `: ${words}`;
      err.worker = fresh.id;
      err.replacing = old.id;
    }

    // One replacement at a time per lane: start it, wait until it is ready,
    // then let the old one finish its requests and leave.
    const lane = async () => {
      while (next < olds.length && !failure) {
        const old = olds[next++];
        if (old.isDead() || !old.isConnected() || old.exitedAfterDisconnect) continue;
        // Under SCHED_REUSEPORT the new worker shares the old one's socket,
        // so the connections queued on it are not stranded when it leaves.
        const fresh = forkReplacing(old[kEnv], old);
        fresh[kCandidate] = true;
        old[kSuccessor] = fresh;
        pending.add(fresh);
        try {
          await readyWithin(cluster, fresh, timeout);
        } catch (err) {
          pending.delete(fresh);
          delete old[kSuccessor];
          // The old worker crashed meanwhile and nothing took its place.
          if (old.isDead() && !old.exitedAfterDisconnect) crashed(old);
          await abandon(fresh, old, err);
          return;
        }
        pending.delete(fresh);
        delete fresh[kCandidate];
        // old keeps its successor: however it leaves now (its channel may be
        // gone already, so nothing marks it exitedAfterDisconnect), its exit
        // is not a crash to restart.
        const gone = exitWithin(old, timeout);
        stopWorker(old);
        const r = await gone;
        results.push({ old: old.id, new: fresh.id, code: r.code, signal: r.signal, forced: r.forced });
      }
    };
    reloading = Promise.all(Array.from({ length: Math.min(concurrency, olds.length) }, lane))
      .then(() => {
        if (failure) throw Object.assign(failure, { results });
        return results;
      })
      .finally(() => { reloading = null; });
    return reloading;
  };
}

module.exports = { installReload };

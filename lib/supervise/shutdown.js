'use strict';
// Graceful shutdown (cluster.shutdown, and setupPrimary({ shutdownOn })):
// every worker is disconnected, finishes its requests and drains its
// keep-alive connections (the worker hook), and whatever is left at the
// deadline is SIGKILLed. With setupPrimary({ killSignal }) (the command's
// --kill-signal, SIGTERM there) each worker being stopped also gets that
// signal, so the app's own shutdown code runs, as under `docker stop`.
// cluster.health() says whether the primary is ready.

const errors = require('../errors');
const { validateNumber } = require('./validate');

// Resolves with what happened to `worker` once it exits; SIGKILL at `timeout`.
function exitWithin(worker, timeout) {
  return new Promise((resolve) => {
    const finish = (code, signal, forced) => resolve({ id: worker.id, pid: worker.process.pid, code, signal, forced });
    if (worker.isDead()) {
      finish(worker.process.exitCode, worker.process.signalCode, false);
      return;
    }
    let forced = false;
    const timer = setTimeout(() => {
      forced = true;
      worker.process.kill('SIGKILL');
    }, timeout);
    worker.process.once('exit', (code, signal) => {
      clearTimeout(timer);
      finish(code, signal, forced);
    });
  });
}

/** Installs cluster.shutdown() and cluster.health(); `restart` stops replacing workers. */
function installShutdown(cluster, live, restart) {
  let shuttingDown = null;
  let draining = false; // shutdown() called: not ready any more
  const signalHandlers = new Map();
  let killSignal = null;

  // One worker leaves: disconnect (it closes its servers, finishes its
  // requests, drains keep-alive connections), and the kill signal if set
  // (the worker hook holds the worker's loop open until the signal has
  // reached the app's handler: lib/worker-hook.js). In this order the
  // disconnect is written while the worker is surely alive.
  function stopWorker(w) {
    if (w.isConnected()) {
      quietWhileLeaving(w);
      w.disconnect();
    }
    if (killSignal && !w.isDead()) w.process.kill(killSignal);
  }

  // A worker that dies just as it is stopped (a boot failure stops the
  // others while they fail too) has no channel left for the disconnect:
  // node:cluster (the portable engine) then emits EPIPE or
  // ERR_IPC_CHANNEL_CLOSED as the worker's 'error', which would take the
  // primary down when nobody listens. Those are dropped until it exits;
  // any other error goes on as it would have.
  const kQuiet = Symbol('rcluster.quietWhileLeaving');
  function quietWhileLeaving(w) {
    if (w[kQuiet]) return; // once: the count of 'error' listeners below relies on it
    w[kQuiet] = true;
    const closedChannel = (err) => err && ['EPIPE', 'ECONNRESET', 'ERR_IPC_CHANNEL_CLOSED'].includes(err.code);
    const onError = (err) => {
      if (closedChannel(err)) return;
      if (w.listenerCount('error') === 1) throw err; // nobody else listens: as unhandled
    };
    w.on('error', onError);
    w.process.once('exit', () => w.off('error', onError));
  }

  cluster.shutdown = function shutdown(options = {}) {
    errors.validateObject(options, 'options');
    const timeout = options.timeout ?? 10000;
    const drainDelay = options.drainDelay ?? 0;
    validateNumber(timeout, 'options.timeout');
    validateNumber(drainDelay, 'options.drainDelay');
    if (shuttingDown) return shuttingDown;
    draining = true;
    restart.pause();
    const leave = () => Promise.all([...live.values()].map((w) => {
      const done = exitWithin(w, timeout);
      stopWorker(w);
      return done;
    }));
    // drainDelay: not ready at once (health()), still serving meanwhile, as
    // a load balancer that takes the instance out after a probe needs.
    const left = drainDelay > 0 ? new Promise((r) => setTimeout(r, drainDelay)).then(leave) : leave();
    shuttingDown = left.then((results) => {
      shuttingDown = null;
      draining = false;
      restart.resume();
      return results;
    });
    return shuttingDown;
  };

  /** Liveness (the primary runs) and readiness (a worker listens, no shutdown under way). */
  cluster.health = function health() {
    const listening = Object.values(cluster.workers).filter((w) => w.state === 'listening').length;
    return { live: true, ready: !draining && listening > 0, listening, shuttingDown: draining };
  };

  // setupPrimary({ shutdownOn, shutdownTimeout }): those signals shut down, then exit 0.
  function configure(settings) {
    killSignal = settings.killSignal ?? null;
    for (const sig of settings.shutdownOn || []) {
      if (signalHandlers.has(sig)) continue;
      const handler = () => {
        cluster.shutdown({ timeout: cluster.settings.shutdownTimeout ?? 10000 })
          .then(() => process.exit(0));
      };
      signalHandlers.set(sig, handler);
      process.on(sig, handler);
    }
  }

  return { configure, stopWorker };
}

module.exports = { installShutdown, exitWithin };

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

  // One worker leaves: the kill signal if set, then disconnect (it closes
  // its servers, finishes its requests, drains keep-alive connections). The
  // signal goes first: Node's worker exits as soon as it has handled the
  // primary's disconnect, so a signal sent after it may find no process
  // to run the app's handler in (seen with SIGTTOU: the handler never ran).
  function stopWorker(w) {
    if (killSignal && !w.isDead()) w.process.kill(killSignal);
    if (w.isConnected()) w.disconnect();
  }

  cluster.shutdown = function shutdown(options = {}) {
    errors.validateObject(options, 'options');
    const timeout = options.timeout ?? 10000;
    const drainDelay = options.drainDelay ?? 0;
    validateNumber(timeout, 'options.timeout');
    validateNumber(drainDelay, 'options.drainDelay');
    if (shuttingDown) return shuttingDown;
    draining = true;
    restart.cancel();
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

  return { configure, stopWorker, stopping: () => shuttingDown !== null };
}

module.exports = { installShutdown, exitWithin };

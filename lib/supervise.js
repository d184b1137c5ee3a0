'use strict';
// rcluster's supervision, all opt-in so the drop-in default stays Node's:
// auto-restart with crash-loop protection, graceful shutdown, rolling
// reload, the hung-worker watchdog, metrics. The policies (restart backoff
// and window, heartbeat deadlines) run in the Rust engine; this file wires
// them to cluster's events and to Node-style options.

const path = require('node:path');
const errors = require('./errors');
const { prometheusText } = require('./prometheus');

const kEnv = Symbol('rcluster.env');
const kForkedAt = Symbol('rcluster.forkedAt');
const kStreak = Symbol('rcluster.streak');
const kRestarts = Symbol('rcluster.restarts');
const kHeartbeat = Symbol('rcluster.heartbeat');

const WORKER_HOOK = path.join(__dirname, 'worker.js');
// NODE_OPTIONS quotes as a shell would: a path with spaces stays one word.
const HOOK_OPTION = `--require "${WORKER_HOOK.replace(/["\\]/g, '\\$&')}"`;

const RESTART_DEFAULTS = {
  maxRestarts: 10, window: 60000, minUptime: 1000, backoff: { initial: 100, max: 15000, factor: 2 },
};

function validateNumber(value, name, min = 0) {
  if (typeof value !== 'number' || Number.isNaN(value)) throw errors.ERR_INVALID_ARG_TYPE(name, 'number', value);
  if (value < min || !Number.isFinite(value)) throw errors.ERR_OUT_OF_RANGE(name, `>= ${min}`, value);
}

// `true | { ... }` options: null when off, an object of overrides when on.
function optionObject(value, name) {
  if (value === undefined || value === false) return null;
  if (value === true) return {};
  if (value === null || typeof value !== 'object') {
    throw errors.ERR_INVALID_ARG_TYPE(name, ['boolean', 'object'], value);
  }
  return value;
}

function resolveRestart(option) {
  const restart = optionObject(option, 'options.restart');
  if (restart === null) return null;
  const backoff = { ...RESTART_DEFAULTS.backoff, ...(restart.backoff || {}) };
  const r = { ...RESTART_DEFAULTS, ...restart, backoff };
  validateNumber(r.maxRestarts, 'options.restart.maxRestarts');
  validateNumber(r.window, 'options.restart.window');
  validateNumber(r.minUptime, 'options.restart.minUptime');
  validateNumber(backoff.initial, 'options.restart.backoff.initial');
  validateNumber(backoff.max, 'options.restart.backoff.max');
  validateNumber(backoff.factor, 'options.restart.backoff.factor', 1);
  return r;
}

function resolveHeartbeat(option) {
  const heartbeat = optionObject(option, 'options.heartbeat');
  if (heartbeat === null) return null;
  const h = { interval: 1000, timeout: 10000, ...heartbeat };
  validateNumber(h.interval, 'options.heartbeat.interval', 1);
  validateNumber(h.timeout, 'options.heartbeat.timeout', 1);
  if (h.grace === undefined) h.grace = Math.min(h.timeout, 5000);
  validateNumber(h.grace, 'options.heartbeat.grace');
  return h;
}

function validateSupervision(s) {
  resolveRestart(s.restart);
  resolveHeartbeat(s.heartbeat);
  if (s.readiness !== undefined && s.readiness !== 'listening' && s.readiness !== 'ready') {
    throw errors.ERR_INVALID_ARG_VALUE('options.readiness', s.readiness, "must be one of: 'listening', 'ready'");
  }
  if (s.shutdownOn !== undefined) {
    if (!Array.isArray(s.shutdownOn)) throw errors.ERR_INVALID_ARG_TYPE('options.shutdownOn', 'Array', s.shutdownOn);
    const { signals } = require('node:os').constants;
    for (const sig of s.shutdownOn) {
      if (typeof sig !== 'string' || !signals[sig]) throw errors.ERR_UNKNOWN_SIGNAL(sig);
    }
  }
  if (s.shutdownTimeout !== undefined) validateNumber(s.shutdownTimeout, 'options.shutdownTimeout');
}

/**
 * Installs supervision on the primary's cluster object.
 * `native` is the engine binding; `live` maps ids to workers the engine still
 * tracks; `nextId()` is the id the next fork() will get; `started()` says
 * whether the engine runs yet (nothing to ask it before the first fork).
 */
function install(cluster, native, live, nextId, started) {
  let restart = null;
  let tracker = null;
  let heartbeat = null;
  let watchdogOn = false;
  let shuttingDown = null;
  let draining = false; // shutdown() called: not ready any more
  let restartsTotal = 0;
  const restartTimers = new Set();
  const signalHandlers = new Map();

  // setupPrimary() resolved new settings.
  // fork() calls setupPrimary() each time: keep the crash-loop window
  // unless the restart options really changed.
  function configure(settings) {
    const next = resolveRestart(settings.restart);
    if (JSON.stringify(next) !== JSON.stringify(restart)) {
      restart = next;
      tracker = restart ? new native.RestartTracker({
        maxRestarts: restart.maxRestarts,
        window: restart.window,
        minUptime: restart.minUptime,
        backoffInitial: restart.backoff.initial,
        backoffMax: restart.backoff.max,
        backoffFactor: restart.backoff.factor,
      }) : null;
    }
    heartbeat = resolveHeartbeat(settings.heartbeat);
    installSignals(settings);
  }

  function installSignals(settings) {
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

  // What a new worker's process needs: the hook, the heartbeat interval.
  // Every worker loads rcluster's worker hook (heartbeats, readiness, the
  // keep-alive drain on disconnect), through NODE_OPTIONS rather than
  // execArgv so that the worker's process.execArgv stays Node's.
  function spawnExtras(settings, env) {
    const options = env.NODE_OPTIONS ? `${env.NODE_OPTIONS} ${HOOK_OPTION}` : HOOK_OPTION;
    return {
      execArgv: [],
      env: heartbeat ? { NODE_OPTIONS: options, RCLUSTER_HEARTBEAT_MS: String(heartbeat.interval) } : { NODE_OPTIONS: options },
    };
  }

  // The engine just started (first fork).
  function engineStarted() {
    if (heartbeat && !watchdogOn) {
      watchdogOn = true;
      native.watchdog(heartbeat.timeout, heartbeat.grace);
    }
  }

  function onFork(worker, env) {
    worker[kEnv] = env;
    worker[kForkedAt] = Date.now();
    worker[kRestarts] = 0;
    worker[kStreak] = 0;
    engineStarted();
  }

  // After Node's 'exit' events: replace a crashed worker when restart is on.
  function onExit(worker, code, signal) {
    if (!restart || worker.exitedAfterDisconnect || shuttingDown) return;
    const d = tracker.onCrash(Date.now(), Date.now() - worker[kForkedAt], worker[kStreak]);
    if (!d.restart) {
      cluster.emit('restartLimit', worker, { code, signal, maxRestarts: restart.maxRestarts, window: restart.window });
      return;
    }
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      if (shuttingDown) return;
      const fresh = cluster.fork(worker[kEnv]);
      restartsTotal++;
      fresh[kStreak] = d.streak;
      fresh[kRestarts] = worker[kRestarts] + 1;
      cluster.emit('restart', fresh, worker, { code, signal, delay: d.delay });
    }, d.delay);
    restartTimers.add(timer);
  }

  function onMessage(worker, msg) {
    if (msg.act === 'heartbeat') {
      worker[kHeartbeat] = { rss: msg.rss, eventLoopDelayMs: msg.eventLoopDelayMs };
    } else if (msg.act === 'ready') {
      worker.emit('ready');
    }
  }

  function onUnresponsive(worker) {
    cluster.emit('unresponsive', worker);
  }

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

  cluster.shutdown = function shutdown(options = {}) {
    errors.validateObject(options, 'options');
    const timeout = options.timeout ?? 10000;
    const drainDelay = options.drainDelay ?? 0;
    validateNumber(timeout, 'options.timeout');
    validateNumber(drainDelay, 'options.drainDelay');
    if (shuttingDown) return shuttingDown;
    draining = true;
    for (const t of restartTimers) clearTimeout(t);
    restartTimers.clear();
    // drainDelay: not ready at once (health()), still serving meanwhile, as
    // a load balancer that takes the instance out after a probe needs.
    const leave = () => Promise.all([...live.values()].map((w) => {
      const done = exitWithin(w, timeout);
      // Workers close their servers (new connections stop reaching them),
      // finish in-flight requests, drain keep-alive connections (the worker
      // hook) and leave.
      if (w.isConnected()) w.disconnect();
      return done;
    }));
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

  // Resolves when `worker` is ready: listening, or cluster.worker.ready()
  // with readiness 'ready'. Rejects if it exits first or the deadline passes.
  function readyWithin(worker, timeout) {
    const event = cluster.settings.readiness === 'ready' ? 'ready' : 'listening';
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        worker.off(event, onReady);
        worker.off('exit', onExit_);
      };
      const onReady = () => { cleanup(); resolve(); };
      const onExit_ = (code, signal) => {
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
      worker.on('exit', onExit_);
    });
  }

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
        native.inherit(nextId(), old.id);
        const fresh = cluster.fork(old[kEnv]);
        await readyWithin(fresh, timeout);
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

  cluster.metrics = function metrics() {
    const stats = new Map(started() ? native.workerStats().map((s) => [s.id, s]) : []);
    const now = Date.now();
    const workers = Object.values(cluster.workers).map((w) => {
      const s = stats.get(w.id) || {};
      const hb = w[kHeartbeat] || {};
      return {
        id: w.id,
        pid: w.process.pid,
        state: w.state,
        uptimeMs: now - w[kForkedAt],
        restarts: w[kRestarts],
        connectionsDispatched: s.dispatched ?? 0,
        connectionsInFlight: s.inFlight ?? 0,
        rssBytes: hb.rss ?? null,
        eventLoopDelayMs: hb.eventLoopDelayMs ?? null,
        heartbeatAgeMs: s.heartbeatAgeMs ?? null,
      };
    });
    return {
      primary: { pid: process.pid, rssBytes: process.memoryUsage.rss() },
      cluster: { restartsTotal },
      workers,
    };
  };

  /** cluster.metrics() as Prometheus text exposition. */
  cluster.metricsText = function metricsText() {
    return prometheusText(cluster.metrics());
  };

  return { configure, spawnExtras, onFork, onExit, onMessage, onUnresponsive };
}

module.exports = { install, validateSupervision };

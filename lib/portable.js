'use strict';
// The portable engine: rcluster's API on top of node:cluster, for where no
// native engine runs (macOS, Windows, FreeBSD, a Linux without a fitting
// binary) or where RCLUSTER_ENGINE=node asks for it. Node's own primary
// spawns, reads the channels and places connections (SCHED_RR, or
// SCHED_NONE); the same supervision as the native engine (lib/supervise:
// restart, reload, shutdown, readiness, heartbeats, metrics, health) sits on
// top, and the rcluster command runs on it unchanged.
//
// What it lacks, by design: SCHED_REUSEPORT and its BPF steering (asking for
// it falls back to Node's default policy with a warning), sticky sessions
// and least-connections (ignored with a warning), the stealer and the engine's connection counts,
// and the native watchdog's own channel reads (here the watchdog runs on the
// JS thread, so a primary whose JS is stuck cannot judge its workers).
//
// The additions are made on node:cluster's own primary object, which is
// what an app gets from require('rcluster') here.

const cluster = require('node:cluster');
const supervise = require('./supervise');
const { kHeartbeat, kForkedAt, kConnections } = require('./supervise/keys');

// rcluster's own policy number, the native engine's (src/sched/mod.rs).
const SCHED_REUSEPORT = 3;
const NODE_DEFAULT_POLICY = process.platform === 'win32' ? cluster.SCHED_NONE : cluster.SCHED_RR;

/** Which engine runs the primary: 'native' (the Rust engine) or 'node' (this one). */
cluster.engine = 'node';
cluster.SCHED_REUSEPORT = SCHED_REUSEPORT;
/** The CPUs this process may use: affinity, cpuset and CFS quota (rcluster's addition). */
cluster.availableParallelism = require('./parallelism').availableParallelism;

// Workers not gone yet (exited), for shutdown and the watchdog.
const live = new Map();
const kAbortedAt = Symbol('rcluster.abortedAt');
let watching = false; // the watchdog runs

// When `w` was last heard from: its last heartbeat, else its fork.
const lastHeard = (w) => w[kHeartbeat]?.at ?? w[kForkedAt];

const warned = new Set();
function warnOnce(code, text) {
  if (warned.has(code)) return;
  warned.add(code);
  process.emitWarning(text, { code });
}

const supervisor = supervise.install(cluster, {
  live,
  // No sockets pass between workers here: a reload's successor is a fork.
  forkReplacing: (env) => cluster.fork(env),
  watchdog,
  stats() {
    const now = Date.now();
    return new Map([...live.values()].map((w) => [w.id, {
      dispatched: null,
      inFlight: null,
      connectionsOpen: w[kConnections] ?? 0,
      heartbeatAgeMs: watching ? now - lastHeard(w) : null,
    }]));
  },
});

// Supervision is configured when options are given (or the first time),
// not again by each fork (Node's fork() calls setupPrimary() each time).
let configured = false;
const nodeSetupPrimary = cluster.setupPrimary;
cluster.setupPrimary = function setupPrimary(options) {
  if (options === undefined && configured) return Reflect.apply(nodeSetupPrimary, cluster, arguments);
  const settings = { ...cluster.settings, ...options };
  supervise.validateSupervision(settings);
  if (settings.balance === 'least-connections') {
    warnOnce('RCLUSTER_NO_BALANCE', "balance: 'least-connections' needs rcluster's native engine; the portable engine places connections as node:cluster does");
  }
  if (settings.sticky === 'ip') {
    warnOnce('RCLUSTER_NO_STICKY', "sticky: 'ip' needs rcluster's native engine; the portable engine places connections as node:cluster does");
  }
  // Node freezes the policy at the first setupPrimary and knows only its two.
  if (cluster.schedulingPolicy === SCHED_REUSEPORT) {
    warnOnce('RCLUSTER_NO_REUSEPORT', 'SCHED_REUSEPORT needs rcluster\'s native engine; using node:cluster\'s default policy instead');
    cluster.schedulingPolicy = NODE_DEFAULT_POLICY;
  }
  const r = Reflect.apply(nodeSetupPrimary, cluster, arguments);
  supervisor.configure(cluster.settings);
  configured = true;
  return r;
};
// Deprecated alias, the same function as in Node.
cluster.setupMaster = cluster.setupPrimary;

const nodeFork = cluster.fork;
cluster.fork = function fork(env) {
  // The hook's environment depends on the settings (heartbeats): know them
  // before Node's fork applies them (its setupPrimary() call then finds
  // supervision configured; one 'setup' per fork, as Node).
  if (!configured) {
    supervisor.configure({ ...cluster.settings });
    configured = true;
  }
  const worker = Reflect.apply(nodeFork, cluster, [{ ...env, ...supervisor.spawnEnv({ ...process.env, ...env }) }]);
  live.set(worker.id, worker);
  supervisor.onFork(worker, env);
  worker.process.on('internalMessage', (message) => {
    if (message !== null && typeof message === 'object' && message.cmd === 'NODE_RCLUSTER') {
      supervisor.onMessage(worker, message);
    }
  });
  // After Node's own 'exit' handler (registered inside its fork), as the
  // native primary calls supervision after the 'exit' events.
  worker.process.once('exit', (code, signal) => {
    live.delete(worker.id);
    supervisor.onExit(worker, code, signal);
  });
  // child_process holds a channel's disconnect back until the handles sent
  // on it are acknowledged: a worker killed with a connection on its way to
  // it (SCHED_RR's newconn) never gets 'disconnect', and node:cluster keeps
  // it in cluster.workers for good. 'close' says the process, its stdio and
  // its channel are all gone; a worker still listed after anything already
  // under way has run gets the 'disconnect' Node's own would have emitted.
  worker.process.once('close', () => setImmediate(() => {
    if (cluster.workers[worker.id] === worker) worker.process.emit('disconnect');
  }));
  return worker;
};

// The hung-worker watchdog on the JS thread: a worker silent past `timeout`
// gets 'unresponsive' and SIGABRT, then SIGKILL `grace` later (as the
// native watchdog, src/supervise/watchdog.rs).
function watchdog(timeout, grace) {
  watching = true;
  const tick = Math.min(250, Math.max(10, timeout / 4));
  setInterval(() => {
    const now = Date.now();
    for (const w of live.values()) {
      if (w.isDead()) continue;
      const abortedAt = w[kAbortedAt];
      if (abortedAt === undefined) {
        if (now - lastHeard(w) <= timeout) continue;
        w[kAbortedAt] = now;
        supervisor.onUnresponsive(w);
        w.process.kill('SIGABRT');
      } else if (abortedAt !== Infinity && now - abortedAt > grace) {
        w[kAbortedAt] = Infinity;
        w.process.kill('SIGKILL');
      }
    }
  }, tick).unref();
}

module.exports = cluster;

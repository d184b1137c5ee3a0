'use strict';
// The primary side of rcluster: a thin shim over the Rust engine. The engine
// spawns, reads, writes, accepts and reaps; here its events become Node's
// EventEmitter objects with Node's names, arguments and order (mirroring
// lib/internal/cluster/primary.js and worker.js).

const EventEmitter = require('node:events');
const native = require('./native').load();
const errors = require('./errors');
const { spawnWorker, stdioArray, deliver, Interrupted } = require('./process');
const supervise = require('./supervise');

const NODE_MAJOR = Number(process.versions.node.split('.')[0]);

// The engine's policy numbers (SCHED_REUSEPORT is rcluster's own: one
// SO_REUSEPORT socket per worker).
const { SCHED_NONE, SCHED_RR, SCHED_REUSEPORT } = native;

const cluster = new EventEmitter();
const intercom = new EventEmitter();
module.exports = cluster;

/** The CPUs this process may use: affinity, cpuset and CFS quota (rcluster's addition). */
cluster.availableParallelism = require('./parallelism').availableParallelism;

// Workers the engine still reports on: until its event says the worker is
// gone (exited and disconnected; the engine decides). cluster.workers
// follows Node's own bookkeeping and may drop one earlier.
const live = new Map();
let ids = 0;
let initialized = false;
let started = false;

// The default is rcluster's SCHED_REUSEPORT where the kernel has it: workers
// accept their own connections, fairly, with no hand-off through the primary
// (Node's SCHED_RR costs every worker an IPC message per connection). Node's
// round-robin is one `cluster.schedulingPolicy = cluster.SCHED_RR` away.
let reusePort; // whether the kernel has SO_REUSEPORT, asked once
const haveReusePort = () => (reusePort ??= native.reusePortSupported());
let schedulingPolicy = process.env.NODE_CLUSTER_SCHED_POLICY;
if (schedulingPolicy === 'rr') schedulingPolicy = SCHED_RR;
else if (schedulingPolicy === 'none') schedulingPolicy = SCHED_NONE;
else if (schedulingPolicy === 'reuseport') schedulingPolicy = SCHED_REUSEPORT;
else schedulingPolicy = haveReusePort() ? SCHED_REUSEPORT : SCHED_RR;

cluster.isWorker = false;
cluster.isMaster = true; // Deprecated alias. Must be the same as isPrimary.
cluster.isPrimary = true;
/** Which engine runs the primary: 'native' (the Rust engine) or 'node' (the portable one). */
cluster.engine = 'native';
cluster.workers = {};
cluster.settings = {};
cluster.SCHED_NONE = SCHED_NONE;
cluster.SCHED_RR = SCHED_RR;
cluster.SCHED_REUSEPORT = SCHED_REUSEPORT;
cluster.schedulingPolicy = schedulingPolicy;

// ---------------------------------------------------------------- Worker

// The same Worker as lib/internal/cluster/worker.js, with the primary's methods.
function Worker(options) {
  if (!(this instanceof Worker)) return new Worker(options);
  EventEmitter.call(this);
  if (options === null || typeof options !== 'object') options = {};
  this.exitedAfterDisconnect = undefined;
  this.state = options.state || 'none';
  this.id = options.id | 0;
  if (options.process) {
    this.process = options.process;
    this.process.on('error', (code, signal) => this.emit('error', code, signal));
    this.process.on('message', (message, handle) => this.emit('message', message, handle));
  }
}
Object.setPrototypeOf(Worker.prototype, EventEmitter.prototype);
Object.setPrototypeOf(Worker, EventEmitter);

Worker.prototype.kill = function kill() {
  return Reflect.apply(this.destroy, this, arguments);
};

Worker.prototype.send = function send() {
  return Reflect.apply(this.process.send, this.process, arguments);
};

Worker.prototype.isDead = function isDead() {
  return this.process.exitCode != null || this.process.signalCode != null;
};

Worker.prototype.isConnected = function isConnected() {
  return this.process.connected;
};

Worker.prototype.disconnect = function disconnect() {
  this.exitedAfterDisconnect = true;
  if (this.process.connected) native.disconnect(this.id);
  removeWorker(this);
  return this;
};

Worker.prototype.destroy = function destroy(signo) {
  const signal = signo || 'SIGTERM';
  this.process.kill(signal);
};

cluster.Worker = Worker;

// ---------------------------------------------------------------- settings

cluster.setupPrimary = function setupPrimary(options) {
  const settings = {
    args: process.argv.slice(2),
    exec: process.argv[1],
    execArgv: process.execArgv,
    silent: false,
    ...cluster.settings,
    ...options,
  };
  // As Node: give each process its own V8 log with --prof.
  if (settings.execArgv.some((s) => s.startsWith('--prof')) &&
      !settings.execArgv.some((s) => s.startsWith('--logfile='))) {
    settings.execArgv = [...settings.execArgv, '--logfile=v8-%p.log'];
  }
  // As child_process.fork, which checks its options at every fork (fork()
  // calls setupPrimary() each time, as Node's does).
  validateSettings(settings);
  // Supervision is configured when options are given (or the first time),
  // not again by each fork: a crash-loop window survives forks.
  const given = options !== undefined || !initialized;
  if (given) supervise.validateSupervision(settings);
  cluster.settings = settings;
  if (given) supervisor.configure(settings);
  if (initialized === true) return process.nextTick(setupSettingsNT, settings);
  initialized = true;
  schedulingPolicy = cluster.schedulingPolicy; // Freeze policy.
  if (schedulingPolicy !== SCHED_NONE && schedulingPolicy !== SCHED_RR &&
      schedulingPolicy !== SCHED_REUSEPORT) {
    throw errors.ERR_INVALID_ARG_VALUE('cluster.schedulingPolicy', schedulingPolicy,
      'must be cluster.SCHED_NONE, cluster.SCHED_RR or cluster.SCHED_REUSEPORT');
  }
  if (schedulingPolicy === SCHED_REUSEPORT && !haveReusePort()) {
    process.emitWarning('SO_REUSEPORT is not available here; using round-robin (SCHED_RR) instead',
      { code: 'RCLUSTER_NO_REUSEPORT' });
    schedulingPolicy = SCHED_RR;
    cluster.schedulingPolicy = SCHED_RR;
  }
  process.nextTick(setupSettingsNT, settings);
};

// Deprecated alias, the same function as in Node.
cluster.setupMaster = cluster.setupPrimary;

function setupSettingsNT(settings) {
  cluster.emit('setup', settings);
}

// The checks child_process.fork() would make, made as soon as settings are known.
function validateSettings(s) {
  if (typeof s.exec !== 'string') throw errors.ERR_INVALID_ARG_TYPE('modulePath', ['string', 'Buffer', 'URL'], s.exec);
  if (!Array.isArray(s.args)) throw errors.ERR_INVALID_ARG_TYPE('args', 'Array', s.args);
  if (!Array.isArray(s.execArgv)) throw errors.ERR_INVALID_ARG_TYPE('options.execArgv', 'Array', s.execArgv);
  if (s.execPath != null && typeof s.execPath !== 'string') {
    throw errors.ERR_INVALID_ARG_TYPE('options.execPath', 'string', s.execPath);
  }
  if (s.cwd != null && typeof s.cwd !== 'string') {
    throw errors.ERR_INVALID_ARG_TYPE('options.cwd', ['string', 'Buffer', 'URL'], s.cwd);
  }
  for (const key of ['uid', 'gid']) {
    const v = s[key];
    if (v == null) continue;
    // As child_process's normalizeSpawnArguments: Node 26 validates with
    // validateInt32 (TypeError or RangeError), Node 20-24 with isInt32.
    if (NODE_MAJOR >= 26) errors.validateInt32(v, `options.${key}`);
    else if (!(Number.isInteger(v) && v >= -2147483648 && v <= 2147483647)) {
      throw errors.ERR_INVALID_ARG_TYPE(`options.${key}`, 'int32', v);
    }
  }
  if (s.serialization !== undefined && s.serialization !== 'json' && s.serialization !== 'advanced') {
    throw errors.ERR_INVALID_ARG_VALUE('options.serialization', s.serialization,
      "must be one of: undefined, 'json', 'advanced'");
  }
  if (s.stdio !== undefined) stdioArray(s.stdio, s.silent);
  if (s.inspectPort === null) {
    throw errors.ERR_INVALID_ARG_TYPE('Port', ['number', 'string'], null);
  }
}

// ---------------------------------------------------------------- fork

// The worker's environment: the primary's, the fork's, the worker hook's
// (supervision) and its id, as Node's cluster gives it.
function workerEnv(id, env) {
  const baseEnv = { ...process.env, ...env };
  return { ...baseEnv, ...supervisor.spawnEnv(baseEnv), NODE_UNIQUE_ID: `${id}` };
}

cluster.fork = function fork(env) {
  return forkWorker(env, null);
};

// fork(), and a reload's fork of `replacing`'s successor: under
// SCHED_REUSEPORT it takes over the old worker's sockets and their queues.
function forkWorker(env, replacing) {
  cluster.setupPrimary();
  if (!started) {
    // Placement is frozen here, as Node freezes schedulingPolicy at the first fork.
    native.start(onDelivery, schedulingPolicy, cluster.settings.sticky === 'ip',
      cluster.settings.balance === 'least-connections');
    started = true;
  }
  const id = ++ids;
  if (replacing) native.inherit(id, replacing.id);
  const workerProcess = spawnWorker(cluster.settings, id, workerEnv(id, env));
  const worker = new Worker({ id, process: workerProcess });

  worker.on('message', function onMessage(message, handle) {
    cluster.emit('message', this, message, handle);
  });

  worker.process.once('exit', (exitCode, signalCode) => {
    // Remove the worker from the list only once it has also disconnected,
    // otherwise we might still want to access it.
    if (!worker.isConnected()) removeWorker(worker);
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'dead';
    worker.emit('exit', exitCode, signalCode);
    cluster.emit('exit', worker, exitCode, signalCode);
    supervisor.onExit(worker, exitCode, signalCode);
  });

  worker.process.once('disconnect', () => {
    if (worker.isDead()) removeWorker(worker);
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'disconnected';
    worker.emit('disconnect');
    cluster.emit('disconnect', worker);
  });

  if (workerProcess.pid !== undefined) live.set(id, worker);
  supervisor.onFork(worker, env);
  process.nextTick(emitForkNT, worker);
  cluster.workers[worker.id] = worker;
  return worker;
}

function emitForkNT(worker) {
  cluster.emit('fork', worker);
}

function removeWorker(worker) {
  delete cluster.workers[worker.id];
  if (Object.keys(cluster.workers).length === 0) intercom.emit('disconnect');
}

cluster.disconnect = function disconnect(cb) {
  const workers = Object.values(cluster.workers);
  if (workers.length === 0) {
    process.nextTick(() => intercom.emit('disconnect'));
  } else {
    for (const worker of workers) {
      if (worker.isConnected()) worker.disconnect();
    }
  }
  if (typeof cb === 'function') intercom.once('disconnect', cb);
};

// ---------------------------------------------------------------- supervision

const supervisor = supervise.install(cluster, {
  live,
  forkReplacing: forkWorker,
  watchdog: (timeout, grace) => native.watchdog(timeout, grace),
  // Nothing to ask the engine before the first fork starts it.
  stats: () => new Map(started ? native.workerStats().map((s) => [s.id, s]) : []),
  reapOrphans: (keep) => native.reapOrphans(keep),
  childSubreaper: () => native.childSubreaper(),
});

// ---------------------------------------------------------------- engine events

// Events after one whose listener threw, still to be delivered.
let leftover = null;

// In Node each message is emitted in its own process.nextTick: a listener
// that throws is an uncaught exception then and there, and the messages read
// with it still arrive after it. So here: the throw goes up as it is
// (index.js is called as a callback from the event loop), and the rest of the
// batch comes first in the next delivery, at the latest on setImmediate.
function onEvents(batch) {
  if (leftover !== null) {
    batch = leftover.concat(batch);
    leftover = null;
  }
  for (let i = 0; i < batch.length; i++) {
    try {
      onEvent(batch[i]);
    } catch (thrown) {
      let error = thrown;
      const rest = batch.slice(i + 1);
      if (thrown instanceof Interrupted) {
        error = thrown.error;
        if (thrown.rest.messages.length > 0) rest.unshift(thrown.rest);
      }
      if (rest.length > 0) {
        leftover = rest;
        setImmediate(onEvents, []);
      }
      throw error;
    }
  }
}

// From the engine, or from the JS thread's own channel reads: one worker's
// read of plain JSON messages as (id, jsonArray), the common case, without
// event objects; anything else as (0, undefined, events).
function onDelivery(id, data, events) {
  onEvents(events == null ? [{ kind: 'messages', id, data }] : events);
}

// The worker's own events here (as lib/internal/cluster/primary.js);
// its process's events in lib/process.js.
function onEvent(ev) {
  const worker = live.get(ev.id);
  if (worker === undefined) return;
  switch (ev.kind) {
    case 'online':
      worker.state = 'online';
      worker.emit('online');
      cluster.emit('online', worker);
      break;
    case 'listening':
      worker.state = 'listening';
      worker.emit('listening', ev.info);
      cluster.emit('listening', worker, ev.info);
      break;
    case 'exitedAfterDisconnect':
      worker.exitedAfterDisconnect = true;
      break;
    case 'unresponsive':
      supervisor.onUnresponsive(worker);
      break;
    case 'internal':
      if (ev.message.cmd === 'NODE_RCLUSTER') {
        supervisor.onMessage(worker, ev.message);
        break;
      }
    // falls through: child_process's own internal messages
    default: {
      if (ev.gone) live.delete(ev.id);
      const err = deliver(worker.process, ev);
      if (err) reportWorkerError(worker, err);
    }
  }
}

// Bad bytes from one worker must not take the primary down: they are that
// worker's 'error' when someone listens, a warning otherwise.
function reportWorkerError(worker, err) {
  if (worker.listenerCount('error') > 0 || worker.process.listenerCount('error') > 1) {
    worker.process.emit('error', err);
  } else {
    process.emitWarning(`worker ${worker.id}: ${err.message}`, { code: err.code || 'ERR_RCLUSTER_WORKER' });
  }
}

'use strict';
// rcluster's worker hook: extensions to Node's own worker-side cluster, the
// heartbeat the primary's watchdog listens for, the keep-alive drain, and the
// kill signal. The primary loads this file into every worker with
// NODE_OPTIONS=--require (and takes it out of the worker's environment here,
// so the worker's own child processes do not load it); require('rcluster')
// in a worker loads it too.

const cluster = require('node:cluster');

function send(act, extra) {
  if (typeof process.send === 'function' && process.connected) {
    process.send({ cmd: 'NODE_RCLUSTER', act, ...extra });
  }
}

function extendWorker() {
  if (!cluster.isWorker || !cluster.worker || cluster.worker.ready) return;
  /** Tells the primary this worker is ready (with `setupPrimary({ readiness: 'ready' })`). */
  cluster.worker.ready = function ready() {
    send('ready');
  };
}

let beating = false;
function startHeartbeat() {
  const interval = Number(process.env.RCLUSTER_HEARTBEAT_MS);
  if (beating || !cluster.isWorker || !(interval > 0)) return;
  beating = true;
  const { monitorEventLoopDelay } = require('node:perf_hooks');
  const RESOLUTION_MS = 10;
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  delay.enable();
  // Sent from the event loop itself: a loop that is stuck sends nothing.
  const beat = () => {
    send('heartbeat', {
      rss: process.memoryUsage.rss(),
      // The histogram measures the sampling timer's whole period; the delay
      // is what exceeds the resolution.
      eventLoopDelayMs: Number.isFinite(delay.mean) ? Math.max(0, delay.mean / 1e6 - RESOLUTION_MS) : 0,
    });
    delay.reset();
  };
  setInterval(beat, interval).unref();
  beat();
}

// Keep-alive connections across a disconnect (reload, shutdown). Node's
// worker closes its servers when the primary disconnects it, and an http
// server's close() destroys every idle keep-alive connection at once: a
// client that is already sending its next request on one gets ECONNRESET.
// While this worker leaves, its http and https servers instead keep those
// connections and answer each further request with `Connection: close`
// (the client then opens a new connection, which reaches another worker);
// a connection that stays idle is closed by the server's keepAliveTimeout,
// as any idle keep-alive connection is, or at the primary's deadline.
const kDrain = Symbol.for('rcluster.worker.drain');
function installDrain() {
  if (!cluster.isWorker || process[kDrain]) return;
  process[kDrain] = true;
  // Before Node's own handler, which closes the servers synchronously.
  process.prependListener('internalMessage', (msg) => {
    if (msg && msg.cmd === 'NODE_CLUSTER' && msg.act === 'disconnect') drain();
  });
}

let draining = false;
// Set by installKillSignal: what the primary's disconnect also starts.
let awaitKillSignal = null;
function drain() {
  if (draining) return;
  draining = true;
  if (awaitKillSignal) awaitKillSignal();
  require('node:diagnostics_channel').subscribe('http.server.request.start', ({ response }) => {
    response.shouldKeepAlive = false;
  });
  // https copies http's method when it loads; patch what is loaded now and
  // what https would copy later.
  const protos = [require('node:http').Server.prototype];
  if (process.moduleLoadList.includes('NativeModule https')) protos.push(require('node:https').Server.prototype);
  for (const proto of protos) {
    // While leaving, close() leaves idle connections be (see above).
    proto.closeIdleConnections = function closeIdleConnections() {};
  }
}

// A worker being stopped gets the kill signal (setupPrimary({ killSignal }),
// the command's --kill-signal) together with the disconnect. An app with a
// handler of its own for it runs that handler. An app without one would die
// at once under the signal's default action, its requests cut: here it
// drains first (servers closed, requests finished: the channel
// disconnects), then exits 0. The signal without a disconnect (a `kill` by
// hand) gets its default action after a second.
//
// The primary sends the signal right after the disconnect, and Node's worker
// leaves as soon as it has handled the disconnect (servers closed, channel
// gone, nothing left in its loop): the signal, already delivered, would
// then find no loop iteration left to run the app's handler in. So once the
// primary's disconnect arrives the hook holds the loop open until the
// signal has been handled (at most KILL_SIGNAL_HOLD_MS).
const KILL_SIGNAL_WAIT_MS = 1000;
const KILL_SIGNAL_HOLD_MS = 500;
function installKillSignal() {
  const sig = process.env.RCLUSTER_WORKER_KILL_SIGNAL;
  if (!cluster.isWorker || !sig || process[kKillSignal]) return;
  process[kKillSignal] = true;
  let leaving = false;
  let hold = null;
  // drain() calls this once, as the primary's disconnect arrives.
  awaitKillSignal = () => {
    hold = setTimeout(() => {}, KILL_SIGNAL_HOLD_MS);
  };
  const onSignal = () => {
    // After the app's own listeners (added later, called later): let go.
    if (hold !== null) setImmediate(() => clearTimeout(hold));
    if (process.listenerCount(sig) > 1 || leaving) return; // the app's own handler decides
    leaving = true;
    if (!process.connected) process.exit(0);
    process.once('disconnect', () => process.exit(0));
    if (draining) return;
    setTimeout(() => {
      if (draining) return;
      process.off(sig, onSignal);
      process.kill(process.pid, sig);
    }, KILL_SIGNAL_WAIT_MS).unref();
  };
  process.on(sig, onSignal);
}
const kKillSignal = Symbol.for('rcluster.worker.killSignal');

// The app's prom-client metrics, for the primary's /metrics
// (lib/supervise/appmetrics.js): every prom-client loaded in this worker,
// its default registry as JSON. None loaded: an empty answer, at once.
function installAppMetrics() {
  if (!cluster.isWorker || process[kAppMetrics]) return;
  process[kAppMetrics] = true;
  process.on('internalMessage', (msg) => {
    if (!msg || msg.cmd !== 'NODE_RCLUSTER' || msg.act !== 'appMetrics') return;
    const registries = Object.keys(require.cache)
      .filter((f) => /[\\/]prom-client[\\/]index\.js$/.test(f))
      .map((f) => require.cache[f].exports && require.cache[f].exports.register)
      .filter((r) => r && typeof r.getMetricsAsJSON === 'function');
    Promise.all(registries.map((r) => r.getMetricsAsJSON()))
      .then((lists) => send('appMetrics', { requestId: msg.requestId, metrics: lists.flat() }))
      .catch((err) => send('appMetrics', { requestId: msg.requestId, metrics: [], error: String(err && err.message) }));
  });
}
const kAppMetrics = Symbol.for('rcluster.worker.appMetrics');

// Open connections of this worker's servers, reported to the primary when
// they change (at most every REPORT_MS, and only while connected): its
// placement follows them (least-connections under SCHED_RR, the steering
// weights under SCHED_REUSEPORT) and metrics() shows them. `closed` counts
// the closes since the last report, for the primary's own +1-at-hand-off
// counts.
const REPORT_MS = 25;
function installConnectionCount() {
  if (!cluster.isWorker || process[kConnections]) return;
  process[kConnections] = true;
  let open = 0;
  let closed = 0;
  let timer = null;
  let reported = 0;
  const report = () => {
    timer = null;
    if (open === reported && closed === 0) return;
    send('connections', { open, closed });
    reported = open;
    closed = 0;
  };
  const changed = () => {
    if (timer === null) timer = setTimeout(report, REPORT_MS).unref();
  };
  require('node:diagnostics_channel').subscribe('net.server.socket', ({ socket }) => {
    open++;
    changed();
    socket.once('close', () => {
      open--;
      closed++;
      changed();
    });
  });
}
const kConnections = Symbol.for('rcluster.worker.connections');

// Put NODE_OPTIONS back as it was before the primary added this hook.
function restoreNodeOptions() {
  if (!cluster.isWorker || process.env.RCLUSTER_NODE_OPTIONS === undefined) return;
  if (process.env.RCLUSTER_NODE_OPTIONS) process.env.NODE_OPTIONS = process.env.RCLUSTER_NODE_OPTIONS;
  else delete process.env.NODE_OPTIONS;
  delete process.env.RCLUSTER_NODE_OPTIONS;
}

extendWorker();
startHeartbeat();
installDrain();
installKillSignal();
installAppMetrics();
installConnectionCount();
restoreNodeOptions();
// Under the rcluster command a terminal's Ctrl-C reaches the whole process
// group; the primary answers it with a graceful shutdown of the workers.
// (With --kill-signal SIGINT the kill-signal handler above does that.)
if (cluster.isWorker && process.env.RCLUSTER_CLI === '1' && process.env.RCLUSTER_WORKER_KILL_SIGNAL !== 'SIGINT') {
  process.on('SIGINT', () => {});
}

module.exports = { extendWorker, startHeartbeat };

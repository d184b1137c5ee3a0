'use strict';
// rcluster's worker side: extensions to Node's own worker-side cluster, and
// the heartbeat the primary's watchdog listens for. The primary loads this
// file with --require when heartbeats or readiness are on, so worker code
// needs no change; require('rcluster') in a worker loads it too.

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

extendWorker();
startHeartbeat();

module.exports = { extendWorker, startHeartbeat };

'use strict';
// cluster.metrics() and cluster.metricsText(): per-worker numbers from the
// engine (connections handed out, heartbeat age) and from the heartbeats.

const { prometheusText } = require('../prometheus');
const { kForkedAt, kRestarts, kHeartbeat } = require('./keys');

/** `started()`: whether the engine runs yet (nothing to ask it before the first fork). */
function installMetrics(cluster, native, started, restart) {
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
      cluster: { restartsTotal: restart.total() },
      workers,
    };
  };

  /** cluster.metrics() as Prometheus text exposition. */
  cluster.metricsText = function metricsText() {
    return prometheusText(cluster.metrics());
  };
}

module.exports = { installMetrics };

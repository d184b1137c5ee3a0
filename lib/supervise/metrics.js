'use strict';
// cluster.metrics() and cluster.metricsText(): per-worker numbers from the
// engine (connections handed out, heartbeat age) and from the heartbeats.
// The portable engine does not count connections: those are null there.

const { prometheusText } = require('../prometheus');
const { kForkedAt, kRestarts, kHeartbeat } = require('./keys');

/** `engine.stats()`: the engine's per-worker counters, a Map by id. */
function installMetrics(cluster, engine, restart) {
  cluster.metrics = function metrics() {
    const stats = engine.stats();
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
        connectionsDispatched: s.dispatched === undefined ? 0 : s.dispatched,
        connectionsInFlight: s.inFlight === undefined ? 0 : s.inFlight,
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

'use strict';
// cluster.metrics() and cluster.metricsText(): per-worker numbers from the
// engine (connections handed out, heartbeat age) and from the heartbeats.
// The portable engine does not count connections: those are null there.

const { prometheusText } = require('../prometheus');
const errors = require('../errors');
const { validateNumber } = require('./validate');
const { kForkedAt, kRestarts, kHeartbeat } = require('./keys');

/**
 * `engine.stats()`: the engine's per-worker counters, a Map by id;
 * `appMetrics`: the app's prom-client metrics across the workers (appmetrics.js).
 */
function installMetrics(cluster, engine, restart, appMetrics) {
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
        connectionsOpen: s.connectionsOpen ?? 0,
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

  /**
   * cluster.metrics() as Prometheus text exposition. With `{ app: true }`, a
   * Promise of that text followed by the app's own prom-client metrics
   * aggregated across the workers (`perWorker`: labelled by worker
   * instead; `timeout`: how long a worker may take to answer, ms) and
   * rcluster_metrics_workers_missing.
   */
  cluster.metricsText = function metricsText(options) {
    if (options === undefined) return prometheusText(cluster.metrics());
    errors.validateObject(options, 'options');
    const { app = false, perWorker = false, timeout = 1000 } = options;
    validateNumber(timeout, 'options.timeout');
    if (!app) return prometheusText(cluster.metrics());
    return appMetrics.collect({ timeout, perWorker }).then(({ text, missing }) => prometheusText(cluster.metrics()) +
      '# HELP rcluster_metrics_workers_missing Workers that did not answer this scrape in time (left out of the app\'s metrics).\n' +
      `# TYPE rcluster_metrics_workers_missing gauge\nrcluster_metrics_workers_missing ${missing}\n${text}`);
  };
}

module.exports = { installMetrics };

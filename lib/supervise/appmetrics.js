'use strict';
// The app's own Prometheus metrics, aggregated across the live workers
// (cluster.metricsText({ app: true }), the command's /metrics), with no code
// in the app: the worker hook answers { cmd: 'NODE_RCLUSTER', act:
// 'appMetrics' } with the JSON of every prom-client registry loaded in the
// worker (getMetricsAsJSON), and the primary merges them with the app's own
// prom-client — resolved from the app's directory, so that version's
// aggregators apply (AggregatorRegistry.aggregate: sum, first, min, max,
// average, omit, as each metric declares). rcluster itself depends on no
// prom-client. A worker that does not answer within the deadline (busy,
// dying) is left out of that scrape and counted in
// rcluster_metrics_workers_missing; the scrape never waits longer.

const path = require('node:path');

let requests = 0;

function createAppMetrics(cluster) {
  const pending = new Map(); // requestId -> { replies, waiting: Set of worker ids, done }
  let resolved; // { AggregatorRegistry } of the app's prom-client, or null

  // The app's prom-client, from the directory of the worker script (or the
  // primary's main module): null when the app has none.
  function promClient() {
    if (resolved !== undefined) return resolved;
    const from = [cluster.settings.exec, require.main && require.main.filename].filter(Boolean).map((f) => path.dirname(path.resolve(f)));
    resolved = null;
    try {
      resolved = require(require.resolve('prom-client', { paths: from }));
    } catch {
      // No prom-client in the app: rcluster's own series only.
    }
    return resolved;
  }

  // A worker's answer (through the worker hook's internal message).
  function onReply(worker, message) {
    const req = pending.get(message.requestId);
    if (!req || !req.waiting.delete(worker.id)) return;
    if (Array.isArray(message.metrics)) req.replies.push({ worker, metrics: message.metrics });
    if (req.waiting.size === 0) req.done();
  }

  /**
   * Resolves with { text, missing }: the app's metrics across the workers
   * as Prometheus text ('' without prom-client), and how many workers did
   * not answer within `timeout` ms. `perWorker`: each series labelled
   * `worker` instead of merged.
   */
  async function collect({ timeout = 1000, perWorker = false } = {}) {
    const client = promClient();
    if (!client) return { text: '', missing: 0 };
    const requestId = ++requests;
    const workers = Object.values(cluster.workers).filter((w) => w.isConnected() && !w.isDead());
    const req = { replies: [], waiting: new Set(), done: null };
    const settled = new Promise((resolve) => { req.done = resolve; });
    // A worker whose channel closed as it was asked (it died meanwhile) is
    // missing from this scrape: the error goes to the callback, never to the
    // worker's 'error' event, which nobody may listen to.
    const unreachable = (id) => {
      if (req.waiting.delete(id) && req.waiting.size === 0) req.done();
    };
    for (const w of workers) {
      req.waiting.add(w.id);
      w.send({ cmd: 'NODE_RCLUSTER', act: 'appMetrics', requestId }, (err) => {
        if (err) unreachable(w.id);
      });
    }
    pending.set(requestId, req);
    let timer;
    if (req.waiting.size > 0) {
      await Promise.race([settled, new Promise((r) => { timer = setTimeout(r, timeout); })]);
    }
    clearTimeout(timer);
    pending.delete(requestId);
    const missing = workers.length - req.replies.length;
    const arrays = req.replies.map(({ worker, metrics }) => (perWorker ? labelled(metrics, worker.id) : metrics));
    const registry = client.AggregatorRegistry.aggregate(arrays);
    return { text: await registry.metrics(), missing };
  }

  return { collect, onReply };
}

// Every sample of `metrics` (one worker's JSON) labelled worker="id".
function labelled(metrics, id) {
  return metrics.map((m) => ({
    ...m,
    values: (m.values || []).map((v) => ({ ...v, labels: { ...v.labels, worker: String(id) } })),
  }));
}

module.exports = { createAppMetrics };

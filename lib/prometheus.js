'use strict';
// cluster.metrics() as Prometheus text exposition (format 0.0.4): one
// family per number, each worker's sample labelled by worker id and pid.

const STATES = ['none', 'online', 'listening', 'disconnected', 'dead'];

function escapeLabel(v) {
  return String(v).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labels(obj) {
  const parts = Object.entries(obj).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function family(out, name, type, help, samples) {
  out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  for (const [l, value] of samples) {
    if (value === null || value === undefined) continue;
    out.push(`${name}${labels(l)} ${Number.isFinite(value) ? value : String(value)}`);
  }
}

/** Prometheus text for a `cluster.metrics()` snapshot. */
function prometheusText(m) {
  const out = [];
  const w = m.workers;
  const id = (x) => ({ worker: x.id, pid: x.pid ?? '' });
  family(out, 'rcluster_workers', 'gauge', 'Workers the primary has, in any state.', [[{}, w.length]]);
  family(out, 'rcluster_workers_listening', 'gauge', 'Workers whose servers are listening.',
    [[{}, w.filter((x) => x.state === 'listening').length]]);
  family(out, 'rcluster_restarts_total', 'counter', 'Workers replaced after a crash since the primary started.',
    [[{}, m.cluster.restartsTotal]]);
  family(out, 'rcluster_primary_rss_bytes', 'gauge', 'Resident memory of the primary.', [[{ pid: m.primary.pid }, m.primary.rssBytes]]);
  family(out, 'rcluster_worker_state', 'gauge', 'The state of each worker (1 for its current state).',
    w.flatMap((x) => STATES.map((s) => [{ ...id(x), state: s }, x.state === s ? 1 : 0])));
  family(out, 'rcluster_worker_uptime_seconds', 'gauge', 'Seconds since the worker was forked.',
    w.map((x) => [id(x), x.uptimeMs / 1000]));
  family(out, 'rcluster_worker_restarts', 'gauge', 'Crash restarts in this worker\'s line before it.',
    w.map((x) => [id(x), x.restarts]));
  family(out, 'rcluster_worker_rss_bytes', 'gauge', 'Resident memory of the worker (from its heartbeat).',
    w.map((x) => [id(x), x.rssBytes]));
  family(out, 'rcluster_worker_event_loop_delay_seconds', 'gauge', 'Mean event-loop delay of the worker (from its heartbeat).',
    w.map((x) => [id(x), x.eventLoopDelayMs === null ? null : x.eventLoopDelayMs / 1000]));
  family(out, 'rcluster_worker_connections_dispatched_total', 'counter', 'Connections the primary handed to the worker.',
    w.map((x) => [id(x), x.connectionsDispatched]));
  family(out, 'rcluster_worker_connections_open', 'gauge', 'Connections open on the worker\'s servers (from its worker hook).',
    w.map((x) => [id(x), x.connectionsOpen]));
  return `${out.join('\n')}\n`;
}

module.exports = { prometheusText };

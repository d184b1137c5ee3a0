'use strict';
// The app's own prom-client metrics at the command's /metrics, aggregated
// across the live workers with no code in the app (an express app that uses
// prom-client as a single process would), parsed by a real Prometheus text
// parser: counters and histograms summed, gauges by their aggregator, the
// default metrics; a busy worker left out and counted missing while the
// scrape answers within its deadline; an app without prom-client; per-worker
// series on request; and apps that run AggregatorRegistry themselves,
// unchanged (differential against node:cluster).
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const parsePrometheus = require('parse-prometheus-text-format');
const { ROOT, get, killGroup } = require('./helpers');
const { freePort, start, scrape, workersListening: listening } = require('./cli-helpers');

/** Families by name, samples as { labels, value }. */
async function families(metricsPort) {
  const { status, body } = await scrape(metricsPort);
  expect(status).toBe(200);
  return Object.fromEntries(parsePrometheus(body).map((f) => [f.name, f]));
}

const value = (f, labels = {}) => {
  const s = f.metrics.find((m) => Object.entries(labels).every(([k, v]) => (m.labels || {})[k] === v));
  return s === undefined ? undefined : Number(s.value);
};

for (const n of [2, 4]) {
  test(`${n} workers: counters and histograms are sums, gauges follow their aggregator, default metrics are there`, async () => {
    const port = await freePort();
    const metricsPort = await freePort();
    const app = start(['-i', String(n), '--metrics', `127.0.0.1:${metricsPort}`, 'prom-app.js'], { env: { PORT: String(port) } });
    try {
      expect(await listening(metricsPort, n)).toBe(true);
      const REQUESTS = 60;
      const served = new Set();
      for (let i = 0; i < REQUESTS; i++) served.add((await get(port, { path: '/work' })).split(' ')[1]);
      const f = await families(metricsPort);
      expect(value(f.rcluster_metrics_workers_missing)).toBe(0);
      expect(value(f.app_requests_total, { route: 'work' })).toBe(REQUESTS);
      expect(f.app_work_seconds.type).toBe('HISTOGRAM');
      const h = f.app_work_seconds.metrics[0];
      expect(Number(h.count)).toBe(REQUESTS);
      expect(Number(h.sum)).toBeCloseTo(0.3 * REQUESTS, 6);
      expect(Object.fromEntries(Object.entries(h.buckets).map(([le, c]) => [le, Number(c)])))
        .toEqual({ 0.1: 0, 0.5: REQUESTS, 1: REQUESTS, '+Inf': REQUESTS });
      expect(value(f.app_workers_up)).toBe(n); // sum
      expect(value(f.app_queue_depth_max)).toBe(10 * n); // max over worker ids 1..n
      expect(value(f.nodejs_heap_size_total_bytes)).toBeGreaterThan(n * 1e6); // summed default metric
      expect(served.size).toBeGreaterThan(1); // the requests really were spread
    } finally {
      app.kill();
    }
  }, 40000);
}

test('a worker blocked in a busy loop is left out and counted missing; the scrape answers within its deadline', async () => {
  const port = await freePort();
  const metricsPort = await freePort();
  const app = start(['-i', '2', '--metrics', `127.0.0.1:${metricsPort}`, 'prom-app.js'], { env: { PORT: String(port) } });
  try {
    expect(await listening(metricsPort, 2)).toBe(true);
    for (let i = 0; i < 20; i++) await get(port, { path: '/work' });
    const before = await families(metricsPort);
    expect(value(before.app_requests_total, { route: 'work' })).toBe(20);
    await get(port, { path: '/block?ms=6000' }); // that worker's loop stops 10 ms later, for 6 s
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    const f = await families(metricsPort);
    const took = Date.now() - t0;
    expect(took).toBeLessThan(4000); // the deadline is 1 s; the blocked worker would take 6
    expect(value(f.rcluster_metrics_workers_missing)).toBe(1);
    expect(value(f.app_workers_up)).toBe(1);
    expect(value(f.app_requests_total, { route: 'work' })).toBeLessThan(20);
  } finally {
    app.kill();
  }
}, 40000);

test('--metrics-per-worker labels each app series with its worker', async () => {
  const port = await freePort();
  const metricsPort = await freePort();
  const app = start(['-i', '2', '--metrics', `127.0.0.1:${metricsPort}`, '--metrics-per-worker', 'prom-app.js'], { env: { PORT: String(port) } });
  try {
    expect(await listening(metricsPort, 2)).toBe(true);
    for (let i = 0; i < 30; i++) await get(port, { path: '/work' });
    const f = await families(metricsPort);
    const samples = f.app_requests_total.metrics;
    expect(samples.map((s) => s.labels.worker).sort()).toEqual(['1', '2']);
    expect(samples.reduce((a, s) => a + Number(s.value), 0)).toBe(30);
    expect(f.app_queue_depth_max.metrics.map((s) => [s.labels.worker, Number(s.value)]).sort()).toEqual([['1', 10], ['2', 20]]);
  } finally {
    app.kill();
  }
}, 40000);

test('an app without prom-client: rcluster\'s series alone', async () => {
  const port = await freePort();
  const metricsPort = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-noprom-'));
  fs.writeFileSync(path.join(dir, 'app.js'),
    "require('node:http').createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT), '127.0.0.1');\n");
  const app = start(['-i', '2', '--metrics', `127.0.0.1:${metricsPort}`, path.join(dir, 'app.js')], { cwd: dir, env: { PORT: String(port) } });
  try {
    expect(await listening(metricsPort, 2)).toBe(true);
    const f = await families(metricsPort);
    expect(value(f.rcluster_workers)).toBe(2);
    expect(value(f.rcluster_metrics_workers_missing)).toBe(0);
    expect(Object.keys(f).filter((name) => !name.startsWith('rcluster_'))).toEqual([]);
  } finally {
    app.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 30000);

test('an app that runs AggregatorRegistry in its own primary gets the same numbers as under node:cluster', async () => {
  const fixture = path.join(__dirname, 'fixtures', 'prom-aggregator.js');
  const run = (module) => new Promise((resolve, reject) => {
    // -r rcluster/register: prom-client's own require('cluster') gets rcluster too.
    const args = module === 'rcluster' ? ['-r', path.join(ROOT, 'register.js'), fixture] : [fixture];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    const timer = setTimeout(() => { killGroup(child.pid); reject(new Error(`${module}: timed out: ${out}`)); }, 20000);
    child.on('close', (code) => { clearTimeout(timer); killGroup(child.pid); resolve({ code, out }); });
  });
  const [node, ours] = await Promise.all([run('node'), run('rcluster')]);
  expect(ours.code).toBe(0);
  expect(node.code).toBe(0);
  expect(ours.out).toBe(node.out);
  expect(JSON.parse(ours.out)).toEqual({ requests: 40, workersUp: 3 });
}, 30000);

test('library users: cluster.metricsText({ app: true }) merges the workers\' metrics, a worker dead under the scrape is missing (the primary carries on); bad options are Node-style errors', async () => {
  const { runFixture } = require('./helpers');
  const r = await runFixture('app-metrics.js');
  expect(r.code).toBe(0);
  expect(r.events).toEqual([
    { bad: 'x', error: 'ERR_INVALID_ARG_TYPE' },
    { bad: { timeout: -1 }, error: 'ERR_OUT_OF_RANGE' },
    { bad: { app: true, timeout: 'soon' }, error: 'ERR_INVALID_ARG_TYPE' },
    { requests: 15, missing: 0, workers: 2 },
    { afterKill: { requests: 5, missing: 1 } },
  ]);
});

test('rcluster_worker_connections_open follows the connections the workers hold', async () => {
  const net = require('node:net');
  const port = await freePort();
  const metricsPort = await freePort();
  const app = start(['-i', '2', '--metrics', `127.0.0.1:${metricsPort}`, 'prom-app.js'], { env: { PORT: String(port) } });
  const sockets = [];
  const openTotal = async () => {
    const f = await families(metricsPort);
    return f.rcluster_worker_connections_open.metrics.reduce((a, m) => a + Number(m.value), 0);
  };
  try {
    expect(await listening(metricsPort, 2)).toBe(true);
    for (let i = 0; i < 10; i++) {
      const s = net.connect(port, '127.0.0.1');
      await new Promise((resolve) => {
        s.once('data', resolve);
        s.write('GET /work HTTP/1.1\r\nHost: x\r\n\r\n');
      });
      sockets.push(s);
    }
    const { waitFor } = require('./helpers');
    expect(await waitFor(async () => (await openTotal()) === 10, 5000)).toBe(true);
    for (const s of sockets.splice(0, 4)) s.destroy();
    expect(await waitFor(async () => (await openTotal()) === 6, 5000)).toBe(true);
  } finally {
    for (const s of sockets) s.destroy();
    app.kill();
  }
}, 30000);

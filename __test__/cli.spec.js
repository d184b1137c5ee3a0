'use strict';
// The rcluster command on unmodified apps, with real processes: express and
// an ES module http app as N workers; flags, configuration files and the
// environment; reload under load (keep-alive and new-connection clients);
// SIGTTIN/SIGTTOU; SIGTERM leaving no process; -i max under a real CPU
// quota (cgroup v1); /metrics parsed by a Prometheus text parser; /readyz
// turning false during the drain delay.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const parsePrometheus = require('parse-prometheus-text-format');
const { ROOT, alive, waitFor, get, runFixture } = require('./helpers');

const { BIN, FIXTURES, freePort, start, pidsServing, scrape, metric, workerCount, run } = require('./cli-helpers');

describe('usage', () => {
  test('--help, --version, and errors that name the bad flag or value', () => {
    const help = run(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: rcluster \[options\]/);
    expect(help.stdout).toMatch(/SIGTTIN/);
    expect(run(['--version']).stdout.trim()).toBe(require('../package.json').version);
    const bogus = run(['--bogus', 'app.js']);
    expect(bogus.status).toBe(64);
    expect(bogus.stderr).toMatch(/--bogus/);
    const zero = run(['-i', '0', 'esm-app.mjs']);
    expect(zero.status).toBe(64);
    expect(zero.stderr).toMatch(/--instances: expected a positive integer or "max", got "0"/);
    const envBad = run(['esm-app.mjs'], { env: { ...process.env, RCLUSTER_INSTANCES: 'lots' } });
    expect(envBad.status).toBe(64);
    expect(envBad.stderr).toMatch(/RCLUSTER_INSTANCES: expected a positive integer or "max", got "lots"/);
    const metricsBad = run(['--metrics', 'nowhere', 'esm-app.mjs']);
    expect(metricsBad.status).toBe(64);
    expect(metricsBad.stderr).toMatch(/--metrics: expected HOST:PORT/);
    const missing = run(['no-such-app.js']);
    expect(missing.status).toBe(66);
    expect(missing.stderr).toMatch(/no such app file/);
    expect(run([]).status).toBe(64);
  });
});

test('an unmodified express app as 2 workers; SIGTERM leaves no process', async () => {
  const port = await freePort();
  const app = start(['-i', '2', 'express-app.js'], { env: { PORT: String(port) } });
  try {
    const pids = await pidsServing(port, 2);
    expect(pids.size).toBe(2);
    process.kill(app.child.pid, 'SIGTERM');
    expect(await app.exited).toEqual({ code: 0, signal: null });
    expect(await waitFor(() => [...pids].every((p) => !alive(p)), 3000)).toBe(true);
    expect(app.stderr()).toMatch(/\[rcluster\] express-app.js: starting 2 worker\(s\)/);
  } finally {
    app.kill();
  }
}, 30000);

test('an ES module app; rcluster.config.json, package.json and the environment, flags winning; app arguments after --', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-cli-'));
  try {
    fs.copyFileSync(path.join(FIXTURES, 'esm-app.mjs'), path.join(dir, 'app.mjs'));
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'x', rcluster: { instances: 3 } }));
    const cases = [
      // [args, env, expected workers]
      [['app.mjs'], {}, 3], // package.json's "rcluster" key
      [['app.mjs'], { RCLUSTER_INSTANCES: '1' }, 1], // the environment over it
      [['-i', '2', 'app.mjs'], { RCLUSTER_INSTANCES: '1' }, 2], // a flag over both
    ];
    for (const [args, env, want] of cases) {
      const port = await freePort();
      const metricsPort = await freePort();
      const app = start(['--metrics', `127.0.0.1:${metricsPort}`, ...args, '--', 'hi'], { cwd: dir, env: { ...env, PORT: String(port) } });
      try {
        const pids = await pidsServing(port, want);
        expect(pids.size).toBe(want);
        expect(await get(port)).toMatch(/^hi \d+$/);
        expect(await waitFor(async () => (await workerCount(metricsPort)) === want, 5000)).toBe(true);
        process.kill(app.child.pid, 'SIGTERM');
        expect((await app.exited).code).toBe(0);
      } finally {
        app.kill();
      }
    }
    // rcluster.config.json wins over package.json; a bad setting is named.
    fs.writeFileSync(path.join(dir, 'rcluster.config.json'), JSON.stringify({ instances: 'many' }));
    const bad = run(['app.mjs'], { cwd: dir });
    expect(bad.status).toBe(64);
    expect(bad.stderr).toMatch(/rcluster\.config\.json: instances: expected a positive integer or "max", got "many"/);
    fs.writeFileSync(path.join(dir, 'rcluster.config.json'), JSON.stringify({ workers: 2 }));
    expect(run(['app.mjs'], { cwd: dir }).stderr).toMatch(/unknown setting "workers"/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60000);

test('SIGHUP reloads under keep-alive and new-connection load with no failed request; SIGTTIN and SIGTTOU scale', async () => {
  const port = await freePort();
  const metricsPort = await freePort();
  const app = start(['-i', '2', '--metrics', `127.0.0.1:${metricsPort}`, 'esm-app.mjs'], { env: { PORT: String(port) } });
  try {
    const before = await pidsServing(port, 2);
    expect(before.size).toBe(2);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    let stop = false;
    let ok = 0;
    const failures = [];
    const seen = new Set();
    const keepAlive = async () => {
      while (!stop) {
        try {
          seen.add(Number((await get(port, { agent })).split(' ').pop()));
          ok++;
        } catch (e) {
          failures.push(`keep-alive: ${e.code}`);
        }
      }
    };
    const fresh = async () => {
      while (!stop) {
        try {
          seen.add(Number((await get(port)).split(' ').pop()));
          ok++;
        } catch (e) {
          failures.push(`new connection: ${e.code || e.message}`);
        }
      }
    };
    const loops = [keepAlive(), keepAlive(), keepAlive(), keepAlive(), fresh(), fresh()];
    await new Promise((r) => setTimeout(r, 300));
    process.kill(app.child.pid, 'SIGHUP');
    expect(await waitFor(() => /reloaded: 1->3, 2->4/.test(app.stderr()), 20000)).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(loops);
    agent.destroy();
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(100);
    expect([...seen].filter((p) => !before.has(p)).length).toBe(2); // the new code answered

    process.kill(app.child.pid, 'SIGTTIN');
    expect(await waitFor(async () => (await workerCount(metricsPort)) === 3, 5000)).toBe(true);
    // One at a time: two signals sent at once may arrive as one.
    process.kill(app.child.pid, 'SIGTTOU');
    expect(await waitFor(async () => (await workerCount(metricsPort)) === 2, 5000)).toBe(true);
    process.kill(app.child.pid, 'SIGTTOU');
    expect(await waitFor(async () => (await workerCount(metricsPort)) === 1, 5000)).toBe(true);
    expect((await pidsServing(port, 1)).size).toBe(1);
    process.kill(app.child.pid, 'SIGTERM');
    expect(await app.exited).toEqual({ code: 0, signal: null });
  } finally {
    app.kill();
  }
}, 60000);

test('/metrics parses as Prometheus text and names every worker; /readyz turns false at SIGTERM while the drain delay keeps serving', async () => {
  const port = await freePort();
  const probes = await freePort();
  const app = start(['-i', '2', '--metrics', `127.0.0.1:${probes}`, '--health', `127.0.0.1:${probes}`, '--drain-delay', '1500', 'esm-app.mjs'],
    { env: { PORT: String(port) } });
  try {
    const pids = await pidsServing(port, 2);
    expect(await waitFor(async () => (await scrape(probes, '/readyz').catch(() => ({}))).status === 200, 5000)).toBe(true);
    expect((await scrape(probes, '/livez')).status).toBe(200);
    const families = parsePrometheus((await scrape(probes)).body);
    expect(Number(metric(families, 'rcluster_workers')[0].value)).toBe(2);
    expect(Number(metric(families, 'rcluster_workers_listening')[0].value)).toBe(2);
    const listening = metric(families, 'rcluster_worker_state').filter((m) => m.labels.state === 'listening' && m.value === '1');
    expect(new Set(listening.map((m) => Number(m.labels.pid)))).toEqual(pids);
    process.kill(app.child.pid, 'SIGTERM');
    expect(await waitFor(async () => (await scrape(probes, '/readyz')).status === 503, 1000)).toBe(true);
    // Still serving during the drain delay.
    expect(pids.has(Number((await get(port)).split(' ').pop()))).toBe(true);
    expect((await scrape(probes, '/livez')).status).toBe(200);
    expect(await app.exited).toEqual({ code: 0, signal: null });
  } finally {
    app.kill();
  }
}, 30000);

test('cluster.metricsText() carries the numbers of cluster.metrics(); cluster.health()', async () => {
  const { events, code } = await runFixture('metrics-text.js');
  expect(code).toBe(0);
  const [{ metrics, text, health }] = events;
  expect(health).toEqual({ live: true, ready: true, listening: 2, shuttingDown: false });
  const families = parsePrometheus(text);
  const byWorker = (name) => Object.fromEntries(metric(families, name).map((m) => [m.labels.worker, Number(m.value)]));
  expect(Number(metric(families, 'rcluster_workers')[0].value)).toBe(metrics.workers.length);
  expect(Number(metric(families, 'rcluster_restarts_total')[0].value)).toBe(metrics.cluster.restartsTotal);
  expect(Number(metric(families, 'rcluster_primary_rss_bytes')[0].value)).toBeGreaterThan(0);
  const rss = byWorker('rcluster_worker_rss_bytes');
  const delay = byWorker('rcluster_worker_event_loop_delay_seconds');
  const dispatched = byWorker('rcluster_worker_connections_dispatched_total');
  const uptime = byWorker('rcluster_worker_uptime_seconds');
  for (const w of metrics.workers) {
    expect(w.rssBytes).toBeGreaterThan(0);
    expect(rss[w.id]).toBe(w.rssBytes);
    expect(delay[w.id]).toBeCloseTo(w.eventLoopDelayMs / 1000, 9);
    // null where the engine does not count (the portable one): no sample.
    expect(dispatched[w.id] ?? null).toBe(w.connectionsDispatched);
    expect(Math.abs(uptime[w.id] - w.uptimeMs / 1000)).toBeLessThan(0.05); // read a moment apart
  }
});

// cgroup v1's cpu controller, read-write here: a process in a cgroup whose
// quota is one CPU, on a machine with more.
const CPU_CGROUP = '/sys/fs/cgroup/cpu';
function makeCgroup() {
  const dir = path.join(CPU_CGROUP, `rcluster-test-${process.pid}`);
  try {
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'cpu.cfs_period_us'), '100000');
    fs.writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), '100000');
    return dir;
  } catch (err) {
    try { fs.rmdirSync(dir); } catch { /* never made */ }
    return { reason: `cannot make a cgroup under ${CPU_CGROUP}: ${err.code || err.message}` };
  }
}

test('-i max inside a cgroup with a 1-CPU quota starts 1 worker (os.availableParallelism() says more)', async () => {
  const cg = makeCgroup();
  if (typeof cg !== 'string') {
    console.log(`skipped: ${cg.reason}`);
    return;
  }
  if (os.availableParallelism() < 2) {
    console.log('skipped: this machine has one CPU, so a 1-CPU quota changes nothing');
    fs.rmdirSync(cg);
    return;
  }
  const port = await freePort();
  const metricsPort = await freePort();
  const app = start(['-i', 'max', '--metrics', `127.0.0.1:${metricsPort}`, 'esm-app.mjs'],
    { env: { PORT: String(port) }, wrap: `echo $$ > ${cg}/cgroup.procs` });
  try {
    expect(await waitFor(async () => (await workerCount(metricsPort)) === 1, 10000)).toBe(true);
    expect(app.stderr()).toMatch(/starting 1 worker\(s\)/);
    const inside = spawnSync('sh', ['-c', `echo $$ > ${cg}/cgroup.procs; exec "$0" -e "$1"`, process.execPath,
      `console.log(JSON.stringify([require(${JSON.stringify(ROOT)}).availableParallelism(), require('os').availableParallelism()]))`], { encoding: 'utf8' });
    expect(JSON.parse(inside.stdout)).toEqual([1, os.availableParallelism()]);
    process.kill(app.child.pid, 'SIGTERM');
    expect((await app.exited).code).toBe(0);
  } finally {
    app.kill();
    await waitFor(() => {
      try { fs.rmdirSync(cg); return true; } catch { return false; }
    }, 3000);
  }
}, 30000);

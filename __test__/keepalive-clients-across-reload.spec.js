'use strict';
// Keep-alive clients across cluster.reload() and cluster.shutdown(): eight
// clients on one http.Agent({ keepAlive: true }) send requests back to back
// while every worker is replaced three times: not one request fails, under
// every policy. The workers are a plain http app that loads nothing of
// rcluster. Then shutdown() under the same load: no request on a kept-alive
// connection fails; a request either gets its answer or, once no worker
// listens, is refused at connect (or, on a new connection that races the
// last listener's close, reset, as under Node: at most one per client).
// wrk is a prerequisite (npm test installs it: scripts/test-tools.sh).
const http = require('node:http');
const { spawnSync } = require('node:child_process');
const { startFixture, waitFor, get } = require('./helpers');

function keepAliveLoad(port, clients = 8) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const result = { ok: 0, failures: [], refused: 0, lateResets: 0, pids: new Set(), stop: false, phase: 'reload' };
  const once = async () => {
    try {
      result.pids.add(await get(port, { agent }));
      result.ok++;
    } catch (err) {
      if (err.code === 'ECONNREFUSED') result.refused++;
      // A request on a kept-alive connection that fails is what this spec is
      // about; a new connection that races the last listener's close at
      // shutdown is reset as under Node (counted apart, see the README).
      else if (result.phase === 'shutdown' && !err.reusedSocket) result.lateResets++;
      else result.failures.push(`${result.phase}: ${err.code || err.message}${err.reusedSocket ? ' (kept-alive)' : ''}`);
    }
  };
  const loop = async () => {
    while (!result.stop && result.refused === 0) await once();
  };
  const loops = Array.from({ length: clients }, loop);
  result.finish = async () => {
    result.stop = true;
    await Promise.all(loops);
    agent.destroy();
    return result;
  };
  return result;
}

// Until the clients have had `n` more answers.
const answers = (load, n) => {
  const want = load.ok + n;
  return waitFor(() => load.ok >= want, 10000);
};

describe.each(['rr', 'none', 'reuseport'])('policy %s', (policy) => {
  test('three reloads, then shutdown, under keep-alive load: no request fails', async () => {
    const app = startFixture('keepalive-app.js', { env: { NODE_CLUSTER_SCHED_POLICY: policy } });
    try {
      const { ready } = await app.next((e) => e.ready);
      const load = keepAliveLoad(ready);
      expect(await answers(load, 50)).toBe(true); // the load is on
      for (let i = 0; i < 3; i++) {
        const seen = app.events.filter((e) => e.reloaded || e.reloadError).length;
        process.kill(app.child.pid, 'SIGHUP');
        await app.next((e) => (e.reloaded || e.reloadError) && app.events.filter((x) => x.reloaded || x.reloadError).length > seen, 30000);
        expect(await answers(load, 20)).toBe(true); // the new workers answer
      }
      const reloads = app.events.filter((e) => e.reloaded || e.reloadError);
      expect(reloads.map((e) => e.reloadError)).toEqual([undefined, undefined, undefined]);
      expect(reloads.flatMap((e) => e.reloaded.map((r) => r.forced))).toEqual([false, false, false, false, false, false]);
      expect(load.failures).toEqual([]);
      // Replacements answered (under SCHED_NONE the kernel may give a short-lived pair nothing).
      expect(load.pids.size).toBeGreaterThanOrEqual(4);
      load.phase = 'shutdown';
      process.kill(app.child.pid, 'SIGUSR1');
      const { shutdown } = await app.next((e) => e.shutdown, 30000);
      const res = await load.finish();
      expect(res.failures).toEqual([]);
      // A client's loop ends at its first refusal: each can race the last
      // listener's close once at most.
      expect(res.lateResets).toBeLessThanOrEqual(8);
      expect(shutdown.map((r) => r.forced)).toEqual([false, false]);
      expect(res.ok).toBeGreaterThan(200);
    } finally {
      app.kill();
    }
  }, 120000);
});

test('wrk with its default keep-alive sees no socket errors across two reloads', async () => {
  // A prerequisite, not an option: npm test installs it (scripts/test-tools.sh).
  expect(spawnSync('wrk', ['--version']).error).toBeUndefined();
  const app = startFixture('keepalive-app.js');
  try {
    const { ready } = await app.next((e) => e.ready);
    const { spawn } = require('node:child_process');
    const run = spawn('wrk', ['-t2', '-c16', '-d5s', `http://127.0.0.1:${ready}/`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    run.stdout.on('data', (d) => { out += d; });
    const done = new Promise((r) => run.on('close', r));
    // Until wrk's 16 connections are open on the workers (their hook's count).
    const open = async () => {
      const seen = app.events.length;
      process.kill(app.child.pid, 'SIGWINCH');
      const { metrics } = await app.next((e) => e.metrics && app.events.indexOf(e) >= seen);
      return metrics.workers.reduce((n, w) => n + w.connectionsOpen, 0) >= 16;
    };
    expect(await waitFor(open, 5000)).toBe(true);
    for (let i = 0; i < 2; i++) {
      const seen = app.events.filter((e) => e.reloaded).length;
      process.kill(app.child.pid, 'SIGHUP');
      await app.next(() => app.events.filter((x) => x.reloaded).length > seen, 30000);
    }
    await done;
    expect(out).toMatch(/requests in/);
    expect(out).not.toMatch(/Socket errors/);
    expect(out).not.toMatch(/Non-2xx/);
  } finally {
    app.kill();
  }
}, 60000);

'use strict';
// cluster.reload(): a rolling restart under steady load with zero failed requests.
const { startFixture, get } = require('./helpers');

describe.each(['rr', 'none', 'reuseport'])('policy %s', (policy) => {
  test('every worker is replaced and no request fails', async () => {
    const app = startFixture('supervised.js', { env: { SCENARIO: 'serve', WORKERS: '2', NODE_CLUSTER_SCHED_POLICY: policy } });
    try {
      const { ready } = await app.next((e) => e.ready);
      let stop = false;
      let ok = 0;
      const failures = [];
      const pids = new Set();
      const loop = async () => {
        while (!stop) {
          try {
            pids.add(await get(ready));
            ok++;
          } catch (err) {
            failures.push(err.message);
          }
        }
      };
      const loops = [loop(), loop(), loop()];
      await new Promise((r) => setTimeout(r, 300));
      process.kill(app.child.pid, 'SIGHUP');
      const { reloaded } = await app.next((e) => e.reloaded || e.reloadError, 15000);
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await Promise.all(loops);
      expect(failures).toEqual([]);
      expect(ok).toBeGreaterThan(50);
      expect(reloaded.map((r) => [r.old, r.new, r.forced])).toEqual([[1, 3, false], [2, 4, false]]);
      expect(pids.size).toBe(4); // served by the old two, then the new two
      expect((await app.stop('SIGTERM')).signal).toBe('SIGTERM');
    } finally {
      app.kill();
    }
  });
});

test('readiness "ready": the old worker leaves only after the new one calls cluster.worker.ready()', async () => {
  const app = startFixture('supervised.js', {
    env: { SCENARIO: 'serve', WORKERS: '1', READY_LATE: '1', SETTINGS: JSON.stringify({ readiness: 'ready' }) },
  });
  try {
    await app.next((e) => e.ready);
    process.kill(app.child.pid, 'SIGHUP');
    const { reloaded } = await app.next((e) => e.reloaded || e.reloadError, 10000);
    expect(reloaded).toEqual([{ old: 1, new: 2, code: 0, signal: null, forced: false }]);
    // The old worker's exit comes after the new one said ready (300 ms after listening).
    const order = app.events.filter((e) => e.ev).map((e) => `${e.ev}:${e.id}`);
    expect(order).toContain('ready:2');
    expect(order.indexOf('ready:2')).toBeLessThan(order.indexOf('exit:1'));
  } finally {
    app.kill();
  }
});

test("an old worker whose channel closes while its replacement is on the way is not restarted after the replacement takes over", async () => {
  const settings = { readiness: 'ready', restart: { minUptime: 0, backoff: { initial: 0 } } };
  const app = startFixture('supervised.js', {
    env: { SCENARIO: 'serve', WORKERS: '1', READY_LATE: '1', DROP_OLD_ON_RELOAD: '1', RELOAD_TIMEOUT: '1000', METRICS: '1', SETTINGS: JSON.stringify(settings) },
  });
  try {
    await app.next((e) => e.ready);
    process.kill(app.child.pid, 'SIGHUP');
    await app.next((e) => e.ev === 'disconnect' && e.id === 1); // before worker 2 is ready
    const { reloaded } = await app.next((e) => e.reloaded || e.reloadError, 10000);
    // Nothing stopped it on purpose (its channel was gone): killed at the deadline.
    expect(reloaded).toEqual([{ old: 1, new: 2, code: null, signal: 'SIGKILL', forced: true }]);
    process.kill(app.child.pid, 'SIGWINCH'); // after any restart would have been forked
    const { metrics } = await app.next((e) => e.metrics);
    expect(metrics.workers.map((w) => w.id)).toEqual([2]);
    expect(app.events.filter((e) => e.ev === 'restart')).toEqual([]);
  } finally {
    app.kill();
  }
});

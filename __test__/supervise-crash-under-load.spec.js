'use strict';
// A connection handed to a worker that dies before accepting it goes to
// another worker: SIGKILL a hung worker holding connections and no client
// sees a reset. Also: cluster.metrics() counts them.
const { startFixture, get, nativeOnly, waitFor } = require('./helpers');

if (nativeOnly("connection hand-off counts and the stealer are the native engine's")) return;

// Under SCHED_RR the connections wait in the hung worker's window (in
// flight, never acked); under SCHED_REUSEPORT in its socket's queue, from
// which the primary takes them for the other worker.
test.each(['rr', 'reuseport'])('%s: connections a killed worker never accepted are served by another; metrics show them', async (policy) => {
  const settings = { restart: true, heartbeat: { interval: 100, timeout: 60000 } };
  const app = startFixture('supervised.js', {
    env: { SCENARIO: 'serve', WORKERS: '2', BLOCK_MS: '30000', SETTINGS: JSON.stringify(settings), NODE_CLUSTER_SCHED_POLICY: policy },
  });
  try {
    const { ready } = await app.next((e) => e.ready);
    for (let i = 0; i < 10; i++) await get(ready);
    process.kill(app.child.pid, 'SIGUSR2');
    await app.next((e) => e.blocking === 1); // worker 1's event loop hangs from here
    const burst = Array.from({ length: 20 }, () => get(ready, { timeout: 15000 }));
    // Until the engine's counts show the burst placed: held in the hung
    // worker's window (rr), or taken off its queue for the other (reuseport).
    let metrics;
    const placed = (m) => {
      const [a, b] = m.workers;
      return policy === 'rr' ? a.connectionsInFlight > 0 && a.connectionsDispatched + b.connectionsDispatched >= 30 :
        b.connectionsDispatched > 0;
    };
    expect(await waitFor(async () => {
      const seen = app.events.length;
      process.kill(app.child.pid, 'SIGWINCH');
      ({ metrics } = await app.next((e) => e.metrics && app.events.indexOf(e) >= seen));
      return placed(metrics);
    }, 10000)).toBe(true);
    const [w1, w2] = metrics.workers;
    expect(w1).toMatchObject({ id: 1, restarts: 0, state: 'listening' });
    if (policy === 'rr') {
      expect(w1.connectionsInFlight).toBeGreaterThan(0); // held, never accepted
      expect(w1.connectionsDispatched + w2.connectionsDispatched).toBeGreaterThanOrEqual(30);
    } else {
      // The workers accept their own; the primary only hands over what it
      // took off the hung worker's queue, to the other worker.
      expect(w1.connectionsDispatched).toBe(0);
      expect(w2.connectionsDispatched).toBeGreaterThan(0);
    }
    expect(w2.rssBytes).toBeGreaterThan(1e6);
    expect(w2.heartbeatAgeMs).toBeLessThan(5000);
    process.kill(w1.pid, 'SIGKILL');
    const bodies = await Promise.all(burst);
    expect(bodies).toHaveLength(20);
    expect(bodies.every((b) => Number(b) === w2.pid)).toBe(true);
    const restart = await app.next((e) => e.ev === 'restart');
    expect(restart).toMatchObject({ id: 3, old: 1, info: { signal: 'SIGKILL', code: null } });
    process.kill(app.child.pid, 'SIGWINCH');
    const later = await app.next((e) => e.metrics && e.metrics.workers.some((w) => w.id === 3));
    expect(later.metrics.workers.find((w) => w.id === 3).restarts).toBe(1);
  } finally {
    app.kill();
  }
});

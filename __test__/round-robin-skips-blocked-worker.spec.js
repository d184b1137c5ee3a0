'use strict';
// SCHED_RR: a worker whose event loop is blocked stops getting connections
// (it holds at most its small window of un-acked ones); the others take them.
// SCHED_REUSEPORT: the kernel keeps queueing on the blocked worker's socket,
// and the primary takes those connections from the stuck queue and hands
// them to the others.
const { startFixture, get, waitFor } = require('./helpers');

const BLOCK_MS = 6000;

test.each(['rr', 'reuseport'])('%s: requests keep being served while one worker is hung', async (policy) => {
  const app = startFixture('http-server.js', { env: { NODE_CLUSTER_SCHED_POLICY: policy, WORKERS: '2', BLOCK_MS: String(BLOCK_MS) } });
  try {
    const { ready } = await app.next((e) => e.ready);
    const pids = new Set();
    for (let i = 0; i < 10; i++) pids.add(await get(ready));
    expect(pids.size).toBe(2);
    process.kill(app.child.pid, 'SIGUSR2');
    await app.next((e) => e.blocking === 1); // worker 1's loop is hung from here
    const woke = app.next((e) => e.unblocked === 1, BLOCK_MS + 5000);
    const answered = [];
    const pending = [];
    for (let i = 0; i < 20; i++) {
      pending.push(get(ready, { timeout: BLOCK_MS + 5000 }).then((pid) => answered.push(pid)));
      await new Promise((r) => setTimeout(r, 20)); // spaced, so each finds the windows as they are
    }
    // All but the hung worker's window are served by the other worker
    // before the hung one wakes up.
    await Promise.race([waitFor(() => answered.length >= 16, BLOCK_MS), woke]);
    const answeredWhileHung = [...answered];
    expect(answeredWhileHung.length).toBeGreaterThanOrEqual(16);
    expect(new Set(answeredWhileHung).size).toBe(1);
    await woke;
    await Promise.all(pending); // the few it held are served once it wakes: none lost
    expect(answered).toHaveLength(20);
    expect((await app.stop('SIGTERM')).code).toBe(0);
  } finally {
    app.kill();
  }
});

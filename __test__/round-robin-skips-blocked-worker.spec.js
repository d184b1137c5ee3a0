'use strict';
// SCHED_RR: a worker whose event loop is blocked stops getting connections
// (it holds at most its small window of un-acked ones); the others take them.
// SCHED_REUSEPORT: the kernel keeps queueing on the blocked worker's socket,
// and the primary takes those connections from the stuck queue and hands
// them to the others.
const { startFixture, get } = require('./helpers');

test.each(['rr', 'reuseport'])('%s: requests keep being served while one worker is hung', async (policy) => {
  const app = startFixture('http-server.js', { env: { NODE_CLUSTER_SCHED_POLICY: policy, WORKERS: '2', BLOCK_MS: '4000' } });
  try {
    const { ready } = await app.next((e) => e.ready);
    const pids = new Set();
    for (let i = 0; i < 10; i++) pids.add(await get(ready));
    expect(pids.size).toBe(2);
    process.kill(app.child.pid, 'SIGUSR2');
    await new Promise((r) => setTimeout(r, 300)); // the block has begun
    const answered = [];
    const pending = [];
    for (let i = 0; i < 20; i++) {
      pending.push(get(ready, { timeout: 10000 }).then((pid) => answered.push(pid)));
      await new Promise((r) => setTimeout(r, 20));
    }
    // Well before the hung worker wakes up, all but its window were served.
    await new Promise((r) => setTimeout(r, 1500));
    expect(answered.length).toBeGreaterThanOrEqual(16);
    expect(new Set(answered).size).toBe(1);
    await Promise.all(pending); // the few it held are served once it wakes: none lost
    expect(answered).toHaveLength(20);
    expect((await app.stop('SIGTERM')).code).toBe(0);
  } finally {
    app.kill();
  }
});

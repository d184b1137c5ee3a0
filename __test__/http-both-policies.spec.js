'use strict';
// Both scheduling policies serve real HTTP from every worker, and the
// primary stops cleanly when its workers disconnect.
const { startFixture, get } = require('./helpers');

async function serve(policy) {
  const app = startFixture('http-server.js', { env: { NODE_CLUSTER_SCHED_POLICY: policy, WORKERS: '2' } });
  try {
    const { ready } = await app.next((e) => e.ready);
    const pids = new Map();
    for (let i = 0; i < 200; i++) {
      const pid = await get(ready);
      pids.set(pid, (pids.get(pid) || 0) + 1);
    }
    const { code } = await app.stop('SIGTERM');
    return { pids, code, events: app.events };
  } finally {
    app.kill();
  }
}

test('SCHED_RR (the default on Linux): every worker answers, the primary hands out connections', async () => {
  const { pids, code, events } = await serve('rr');
  expect(events[0]).toEqual({ policy: 2 });
  expect(pids.size).toBe(2);
  // Round-robin with a least-loaded pick: nobody starves.
  for (const count of pids.values()) expect(count).toBeGreaterThanOrEqual(40);
  expect(code).toBe(0);
  expect(events).toContainEqual({ disconnected: true });
});

test('SCHED_NONE: workers share the listen socket and serve every request', async () => {
  const { pids, code, events } = await serve('none');
  expect(events[0]).toEqual({ policy: 1 });
  expect([...pids.values()].reduce((a, b) => a + b, 0)).toBe(200);
  expect(code).toBe(0);
});

'use strict';
// Differential: under SCHED_RR a connection a worker refuses (its
// maxConnections is reached) is handed to another worker; none is lost.
const net = require('node:net');
const { startFixture, get } = require('./helpers');

test.each(['node', 'rcluster'])('connections refused by one worker are served by the other (%s)', async (module) => {
  const app = startFixture('http-server.js', {
    module, env: { NODE_CLUSTER_SCHED_POLICY: 'rr', WORKERS: '2', MAXCONN_WORKER: '1' },
  });
  try {
    const { ready } = await app.next((e) => e.ready);
    // Idle connections fill worker 1's single slot; the rest of what the
    // primary offers it is refused and must reach worker 2.
    const idle = [];
    for (let i = 0; i < 4; i++) {
      idle.push(await new Promise((resolve) => { const c = net.connect(ready, '127.0.0.1', () => resolve(c)); }));
    }
    await new Promise((r) => setTimeout(r, 200));
    const pids = new Set();
    for (let i = 0; i < 30; i++) pids.add(await get(ready));
    expect(pids.size).toBe(1);
    for (const c of idle) c.destroy();
    expect((await app.stop('SIGTERM')).code).toBe(0);
  } finally {
    app.kill();
  }
});

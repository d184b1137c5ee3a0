'use strict';
// listen(path) in workers: a unix socket the primary creates, both policies.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startFixture, get } = require('./helpers');

describe.each(['rr', 'none'])('policy %s', (policy) => {
  test('every worker serves HTTP on one unix socket path', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-'));
    const socket = path.join(dir, 'app.sock');
    const app = startFixture('http-server.js', { env: { SOCKET: socket, NODE_CLUSTER_SCHED_POLICY: policy } });
    try {
      const ready = await app.next((e) => e.ready !== undefined || e.addressType !== undefined);
      expect(ready.addressType).toBe(-1);
      const pids = new Set();
      for (let i = 0; i < 40; i++) pids.add(await get(socket));
      if (policy === 'rr') expect(pids.size).toBe(2);
      else expect(pids.size).toBeGreaterThanOrEqual(1);
      expect((await app.stop('SIGTERM')).code).toBe(0);
      // As Node (libuv unlinks a pipe server's path on close): no file left behind.
      expect(fs.existsSync(socket)).toBe(false);
    } finally {
      app.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

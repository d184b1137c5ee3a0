'use strict';
// Differential: two servers on one port in one worker, listen again after
// close(), and a unix socket path longer than sun_path, under both policies.
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { runBoth } = require('./helpers');

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

describe.each(['rr', 'none'])('policy %s', (policy) => {
  test('listen forms behave as in node:cluster', async () => {
    // A directory deep enough that its absolute socket path exceeds 108 bytes.
    let dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-forms-'));
    const root = dir;
    while (dir.length < 120) {
      dir = path.join(dir, 'deeper-directory');
      fs.mkdirSync(dir);
    }
    try {
      const env = { NODE_CLUSTER_SCHED_POLICY: policy, PORT: String(await freePort()), LONG_SOCKET: path.join(dir, 's.sock') };
      const { node, ours } = await runBoth('listen-forms.js', { env, spawnOptions: { cwd: dir } });
      expect(ours.events).toEqual(node.events);
      expect(ours.code).toBe(0);
      expect(ours.events).toContainEqual({ listenAgainAfterClose: { ok: true } });
      expect(ours.events.find((e) => e.longUnixPath)).toMatchObject({ longUnixPath: { ok: true }, len: true });
      expect(ours.events).toContainEqual({ relativeUnixPath: { ok: true }, exists: true });
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

'use strict';
// Differential: two servers on one port in one worker, listen again after
// close(), a unix socket path longer than sun_path and a relative one, under
// both policies. Each module gets its own port and directory (they would
// collide if run side by side).
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { runFixture } = require('./helpers');

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

async function run(module, policy, extra = {}) {
  // A directory deep enough that its absolute socket path exceeds 108 bytes.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-forms-'));
  let dir = root;
  while (dir.length < 120) {
    dir = path.join(dir, 'deeper-directory');
    fs.mkdirSync(dir);
  }
  try {
    const env = { NODE_CLUSTER_SCHED_POLICY: policy, PORT: String(await freePort()), LONG_SOCKET: path.join(dir, 's.sock'), ...extra };
    return await runFixture('listen-forms.js', { module, env, spawnOptions: { cwd: dir } });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

describe.each(['rr', 'none'])('policy %s', (policy) => {
  // Under SCHED_NONE, Node 22 and 24's own workers die of an internal
  // assertion on a second server on the same port (their primary reuses one
  // key for both); Node 20's and rcluster's give it EADDRINUSE, as SCHED_RR
  // does everywhere. So that case is compared under SCHED_RR only.
  const two = policy === 'rr' ? { TWO_SERVERS: '1' } : {};
  test('listen forms behave as in node:cluster', async () => {
    const node = await run('node', policy, two);
    const ours = await run('rcluster', policy, two);
    expect(ours.events).toEqual(node.events);
    expect(ours.code).toBe(0);
    expect(ours.events).toContainEqual({ listenAgainAfterClose: { ok: true } });
    expect(ours.events.find((e) => e.longUnixPath)).toMatchObject({ longUnixPath: { ok: true }, len: true });
    expect(ours.events).toContainEqual({ relativeUnixPath: { ok: true }, exists: true });
  });

  test('a second server on the same port in one worker gets EADDRINUSE', async () => {
    const ours = await run('rcluster', policy, { TWO_SERVERS: '1' });
    expect(ours.events).toContainEqual({ twoServersOnOnePort: [{ ok: true }, { error: 'EADDRINUSE' }] });
  });
});

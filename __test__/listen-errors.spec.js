'use strict';
// Differential: EADDRINUSE and EACCES reach the worker's server as Node's own listen errors.
const net = require('node:net');
const { runBoth, runFixture, startFixture } = require('./helpers');

const holdPort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => resolve(s));
});

describe.each(['rr', 'none'])('policy %s', (policy) => {
  test('EADDRINUSE: the port is taken by another process', async () => {
    const holder = await holdPort();
    try {
      const env = { PORT: String(holder.address().port), HOST: '127.0.0.1', NODE_CLUSTER_SCHED_POLICY: policy };
      const { node, ours } = await runBoth('listen-error.js', { env });
      expect(ours.code).toBe(0);
      expect(ours.events).toEqual(node.events);
      expect(ours.events[0]).toMatchObject({ code: 'EADDRINUSE', errno: -98 });
    } finally {
      holder.close();
    }
  });

  test('a unix socket path in a missing directory: EACCES, as libuv reports it', async () => {
    const env = { UNIX_PATH: 'no-such-directory/server.sock', NODE_CLUSTER_SCHED_POLICY: policy };
    const { node, ours } = await runBoth('listen-error.js', { env });
    expect(ours.code).toBe(0);
    expect(ours.events).toEqual(node.events);
    expect(ours.events[0]).toMatchObject({ code: 'EACCES', errno: -13, syscall: 'bind' });
  });

  const asRoot = process.getuid && process.getuid() === 0;
  (asRoot ? test : test.skip)('EACCES: a primary running as nobody asks for port 80', async () => {
    const env = { PORT: '80', HOST: '127.0.0.1', NODE_CLUSTER_SCHED_POLICY: policy };
    const spawnOptions = { uid: 65534, gid: 65534, cwd: '/' };
    const { node, ours } = await runBoth('listen-error.js', { env, spawnOptions });
    expect(ours.stderr).toBe('');
    expect(ours.code).toBe(0);
    expect(ours.events).toEqual(node.events);
    expect(ours.events[0]).toMatchObject({ code: 'EACCES', errno: -13 });
  });
});

test('SCHED_REUSEPORT: a port another SO_REUSEPORT app holds is EADDRINUSE, as Node\'s round-robin says, not shared', async () => {
  // The holder is another rcluster primary under SCHED_REUSEPORT: its sockets
  // would let any SO_REUSEPORT socket of the same user join their group.
  const holder = startFixture('http-server.js', { env: { NODE_CLUSTER_SCHED_POLICY: 'reuseport', WORKERS: '1' } });
  try {
    const { ready } = await holder.next((e) => e.ready);
    const env = { PORT: String(ready), HOST: '127.0.0.1' };
    const [node, ours] = await Promise.all([
      runFixture('listen-error.js', { module: 'node', env: { ...env, NODE_CLUSTER_SCHED_POLICY: 'rr' } }),
      runFixture('listen-error.js', { env: { ...env, NODE_CLUSTER_SCHED_POLICY: 'reuseport' } }),
    ]);
    expect(ours.code).toBe(0);
    expect(ours.events).toEqual(node.events);
    expect(ours.events[0]).toMatchObject({ code: 'EADDRINUSE', errno: -98 });
  } finally {
    holder.kill();
  }
});

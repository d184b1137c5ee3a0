'use strict';
// Differential: listen({ fd }) in a worker uses the primary's descriptor,
// under both policies; a descriptor that is not a socket is a listen error.
const net = require('node:net');
const { startFixture, get } = require('./helpers');

async function exercise(module, policy) {
  // The listening socket is made here and handed down as the primary's fd 3;
  // our copy closes at once so only the app accepts on it.
  const holder = net.createServer();
  await new Promise((r) => holder.listen(0, '127.0.0.1', r));
  const { port } = holder.address();
  const app = startFixture('listen-fd.js', {
    module,
    env: { NODE_CLUSTER_SCHED_POLICY: policy },
    spawnOptions: { stdio: ['ignore', 'pipe', 'pipe', holder._handle.fd] },
  });
  holder.close();
  try {
    const { listening } = await app.next((e) => e.listening);
    const { badFd } = await app.next((e) => e.badFd);
    const pids = new Set();
    for (let i = 0; i < 20; i++) pids.add(await get(port));
    return { listening, badFd, served: pids.size >= 1 };
  } finally {
    app.kill();
  }
}

describe.each(['rr', 'none'])('policy %s', (policy) => {
  test('workers serve on a socket the primary inherited as fd 3', async () => {
    const node = await exercise('node', policy);
    const ours = await exercise('rcluster', policy);
    expect(ours).toEqual(node);
    expect(ours).toEqual({ listening: { fd: 3, port: 'number' }, badFd: ours.badFd, served: true });
    expect(typeof ours.badFd).toBe('string');
  });
});

'use strict';
// Differential: a port only one worker listened on (its own admin port) refuses
// connections once that worker is dead and no other worker took its place
// there, under every policy, as under node:cluster; after 50 kill/replace
// cycles only the live workers' own ports listen and the primary holds no
// more fds than before.
const { runFixture } = require('./helpers');

describe.each(['rr', 'none', 'reuseport'])('policy %s', (policy) => {
  test('a dead worker\'s own port refuses; 50 cycles leak no port and no fd', async () => {
    // node:cluster has no reuseport policy: its default (rr) stands in.
    const [node, ours] = await Promise.all([
      runFixture('per-worker-port.js', { module: 'node', env: { CYCLES: '50', NODE_CLUSTER_SCHED_POLICY: policy === 'reuseport' ? 'rr' : policy }, timeout: 60000 }),
      runFixture('per-worker-port.js', { env: { CYCLES: '50', NODE_CLUSTER_SCHED_POLICY: policy }, timeout: 60000 }),
    ]);
    expect(ours.stderr).toBe('');
    const [n] = node.events;
    const [o] = ours.events;
    expect(o.firstDeadPort).toBe(n.firstDeadPort);
    expect(o.firstDeadPort).toBe('ECONNREFUSED');
    expect(o.open).toEqual(o.live);
    expect(n.open).toEqual(n.live);
    expect(o.fdGrowth).toBe(0);
  }, 90000);
});

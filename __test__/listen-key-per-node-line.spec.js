'use strict';
// Differential: the primary keys a worker's listen as the Node line it runs
// on does. Since Node 22 (nodejs/node#60141) a fixed-port listen is keyed
// without the worker's listen index, so a worker whose listen index moved on
// (an earlier listen there failed) still shares the port with the others.
// One worker listening twice on one address gets EADDRINUSE on every line.
const { runFixture } = require('./helpers');

const major = Number(process.versions.node.split('.')[0]);

describe.each(['rr', 'none', 'reuseport'])('policy %s', (policy) => {
  test(`a listen after a failed one shares the port as Node ${major} does`, async () => {
    // Against node:cluster's SCHED_RR under every policy: under SCHED_NONE
    // a Node 22-26 worker that listens twice dies of an internal assertion
    // (nodejs/node#64869; its fix #65020 makes it EADDRINUSE, as SCHED_RR
    // and rcluster say), and node:cluster has no reuseport policy.
    const nodePolicy = 'rr';
    const [node, ours] = await Promise.all([
      runFixture('listen-key.js', { module: 'node', env: { NODE_CLUSTER_SCHED_POLICY: nodePolicy } }),
      runFixture('listen-key.js', { env: { NODE_CLUSTER_SCHED_POLICY: policy } }),
    ]);
    expect(ours.stderr).toBe('');
    expect(ours.code).toBe(0);
    expect(ours.events).toEqual(node.events);
    expect(ours.events.slice(0, 4)).toEqual([
      { worker: 1, step: 'listen', listening: true },
      { worker: 1, step: 'twice', error: 'EADDRINUSE' },
      { worker: 1, step: 'closed' },
      { worker: 2, step: 'listen', listening: true },
    ]);
    // On Node 22+ the shifted listen shares worker 2's port.
    if (major >= 22) expect(ours.events[4]).toEqual({ worker: 1, step: 'again', listening: true });
  });
});

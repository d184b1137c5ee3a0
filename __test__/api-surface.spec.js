'use strict';
// Every key of node:cluster exists on rcluster with the same type and value
// for constants; Worker has the same methods.
const nodeCluster = require('node:cluster');
const rcluster = require('..');
const { PORTABLE } = require('./helpers');

test('same keys and types as node:cluster in the primary', () => {
  for (const key of Object.keys(nodeCluster)) {
    expect([key, typeof rcluster[key]]).toEqual([key, typeof nodeCluster[key]]);
  }
  for (const key of ['isPrimary', 'isMaster', 'isWorker', 'SCHED_NONE', 'SCHED_RR']) {
    expect([key, rcluster[key]]).toEqual([key, nodeCluster[key]]);
  }
  // rcluster's one chosen difference: the default policy (README, "Scheduling"),
  // on the native engine; the portable engine keeps Node's.
  expect(nodeCluster.schedulingPolicy).toBe(nodeCluster.SCHED_RR);
  expect(rcluster.schedulingPolicy).toBe(PORTABLE ? rcluster.SCHED_RR : rcluster.SCHED_REUSEPORT);
  expect(rcluster.engine).toBe(PORTABLE ? 'node' : 'native');
  expect(rcluster.setupMaster).toBe(rcluster.setupPrimary);
  expect(rcluster.workers).toEqual({});
  expect(rcluster.settings).toEqual({});
  expect(rcluster).toBeInstanceOf(require('node:events'));
});

test('Worker has node:cluster\'s methods and defaults', () => {
  const ours = new rcluster.Worker({ id: 7 });
  const theirs = new nodeCluster.Worker({ id: 7 });
  for (const m of ['kill', 'send', 'isDead', 'isConnected', 'disconnect', 'destroy', 'on', 'emit']) {
    expect([m, typeof ours[m]]).toEqual([m, typeof theirs[m]]);
  }
  expect({ id: ours.id, state: ours.state, eAD: ours.exitedAfterDisconnect })
    .toEqual({ id: theirs.id, state: theirs.state, eAD: theirs.exitedAfterDisconnect });
  // Callable without new, as Node's is.
  expect(rcluster.Worker({ id: 2 })).toBeInstanceOf(rcluster.Worker);
});

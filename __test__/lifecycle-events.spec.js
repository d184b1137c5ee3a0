'use strict';
// Differential: the same app under node:cluster and rcluster shows the same
// events, in the same order per worker, with the same arguments.
const { runBoth } = require('./helpers');

function perWorker(events) {
  const by = {};
  for (const e of events) {
    if (e.src === 'primary') continue;
    const key = `${e.src}:${e.id}`;
    (by[key] ||= []).push(e);
  }
  return by;
}

describe('fork/online/listening/message/disconnect/exit match node:cluster', () => {
  let node;
  let ours;
  beforeAll(async () => {
    ({ node, ours } = await runBoth('lifecycle.js'));
  });

  test('the primary exits by itself, code 0, once the workers are gone', () => {
    expect(node.code).toBe(0);
    expect(ours.code).toBe(0);
    expect(ours.events).toContainEqual({ src: 'primary', allGone: true });
    expect(ours.events).toContainEqual({ src: 'primary', exiting: 0 });
  });

  test('workers on port 0 share one real port', () => {
    expect(ours.events).toContainEqual({ src: 'primary', samePort: true });
    expect(node.events).toContainEqual({ src: 'primary', samePort: true });
  });

  test('fork() returns a worker in state none, already in cluster.workers', () => {
    const forked = ours.events.filter((e) => e.forked);
    expect(forked).toEqual(node.events.filter((e) => e.forked));
    expect(forked[0]).toEqual({ src: 'primary', forked: 1, state: 'none', hasPid: true, inWorkers: true });
  });

  test('per-worker event sequences are identical', () => {
    expect(perWorker(ours.events)).toEqual(perWorker(node.events));
  });

  test('setup is emitted once per fork() (fork calls setupPrimary), before fork', () => {
    const order = ours.events.filter((e) => e.src === 'cluster').map((e) => e.ev);
    const nodeOrder = node.events.filter((e) => e.src === 'cluster').map((e) => e.ev);
    expect(order.filter((e) => e === 'setup')).toHaveLength(2);
    expect(nodeOrder.filter((e) => e === 'setup')).toHaveLength(2);
    expect(order.indexOf('setup')).toBeLessThan(order.indexOf('fork'));
    expect(nodeOrder.indexOf('setup')).toBeLessThan(nodeOrder.indexOf('fork'));
  });
});

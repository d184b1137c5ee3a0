'use strict';
// Differential: worker.process is a ChildProcess with Node's channel
// lifecycle, and every worker is published on the 'child_process'
// diagnostics channel (and traced on 'child_process.spawn' on Node 24+), as
// node:cluster's fork() does.
const { runBoth, runFixture } = require('./helpers');

describe.each(['disconnect-first', 'exit-first'])('%s', (order) => {
  test('instanceof ChildProcess, the channel and the fields at each event match node:cluster', async () => {
    const { node, ours } = await runBoth('child-process.js', { env: { ORDER: order } });
    expect(ours.stderr).toBe('');
    expect(ours.code).toBe(node.code);
    expect(ours.events).toEqual(node.events);
    const fork = ours.events.find((e) => e.label === 'fork');
    expect(fork.isChildProcess).toBe(true);
    expect(ours.events.find((e) => 'published' in e)).toMatchObject({ published: 1, publishedIsWorkerProcess: true });
    expect(ours.events.find((e) => e.label === 'spawn').pidMatches).toBe(true);
    expect(ours.events.find((e) => e.label === 'close').channel).toBe(null);
  });
});

test('worker.process.unref() and channel.unref() let the primary exit, as in Node', async () => {
  const [node, ours] = await Promise.all([
    runFixture('unref.js', { module: 'node' }),
    runFixture('unref.js'),
  ]);
  expect(ours.stderr).toBe('');
  expect(ours.events).toEqual(node.events);
  expect(ours.events).toEqual([{ pid: 'number' }, { primaryExited: true }]);
  expect(ours.code).toBe(0);
});

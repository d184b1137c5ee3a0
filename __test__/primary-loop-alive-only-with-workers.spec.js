'use strict';
// Node's primary stays alive while it has workers and exits after the last;
// a primary that never forks exits at once.
const { runFixture } = require('./helpers');

test('a primary that never forks exits by itself', async () => {
  const res = await runFixture('no-fork.js', { timeout: 5000 });
  expect(res.code).toBe(0);
  expect(res.events).toEqual([{ isPrimary: true }]);
});

'use strict';
// The restart policy as a plain function (lib/supervise/restart.js), the one
// both engines use: backoff along a worker's line, the crash-loop window.
const { crashTracker, DEFAULT_POLICY } = require('../lib/supervise/restart');

test('a worker that lived long enough is replaced at once, and its line starts over', () => {
  const t = crashTracker({});
  expect(t.onCrash(0, 5000, 3)).toEqual({ restart: true, delay: 0, streak: 0 });
});

test('quick deaths back off exponentially, up to the maximum', () => {
  const t = crashTracker({ maxRestarts: 100 });
  let streak = 0;
  const delays = [];
  for (let i = 0; i < 10; i++) {
    const d = t.onCrash(i, 10, streak);
    expect(d.restart).toBe(true);
    delays.push(d.delay);
    streak = d.streak;
  }
  expect(delays.slice(0, 5)).toEqual([100, 200, 400, 800, 1600]);
  expect(delays[9]).toBe(DEFAULT_POLICY.backoffMax);
});

test('more than maxRestarts restarts inside the window is a crash loop, until the window moves on', () => {
  const t = crashTracker({ maxRestarts: 3, window: 1000 });
  for (let i = 0; i < 3; i++) expect(t.onCrash(i * 100, 0, 0).restart).toBe(true);
  expect(t.onCrash(300, 0, 0)).toEqual({ restart: false });
  expect(t.onCrash(1150, 0, 0).restart).toBe(true);
});

test('the options given override the defaults, and the policy says what is in force', () => {
  const t = crashTracker({ backoffInitial: 10, backoffFactor: 3 });
  expect(t.policy).toEqual({ ...DEFAULT_POLICY, backoffInitial: 10, backoffFactor: 3 });
  expect(t.onCrash(0, 0, 1)).toEqual({ restart: true, delay: 30, streak: 2 });
});

'use strict';
// setupPrimary({ heartbeat }): a worker whose event loop hangs is detected,
// aborted (SIGABRT, then SIGKILL) and, with restart on, replaced.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startFixture, get } = require('./helpers');

test('a worker stuck in while(true) is reported unresponsive, aborted and replaced', async () => {
  // Any core file an abort might leave lands in a directory we remove.
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-watchdog-'));
  const settings = { heartbeat: { interval: 100, timeout: 800, grace: 500 }, restart: true };
  const app = startFixture('supervised.js', {
    env: { SCENARIO: 'hang', WORKERS: '2', SETTINGS: JSON.stringify(settings) },
    spawnOptions: { cwd },
  });
  try {
    const { ready } = await app.next((e) => e.ready);
    await expect(app.next((e) => e.ev === 'unresponsive', 5000)).resolves.toEqual({ ev: 'unresponsive', id: 1 });
    const exit = await app.next((e) => e.ev === 'exit' && e.id === 1, 5000);
    expect(exit.signal === 'SIGABRT' || exit.signal === 'SIGKILL').toBe(true);
    expect(exit.eAD).toBe(false);
    const restart = await app.next((e) => e.ev === 'restart', 5000);
    expect(restart).toMatchObject({ ev: 'restart', id: 3, old: 1 });
    // The healthy worker was never touched and the app still answers.
    expect(app.events.filter((e) => e.ev === 'unresponsive')).toHaveLength(1);
    expect(Number(await get(ready))).toBeGreaterThan(0);
  } finally {
    app.kill();
    fs.rmSync(cwd, { recursive: true, force: true });
  }
});

test('healthy workers are not aborted while the primary\'s own JS is busy past the timeout', async () => {
  // The primary's JS thread reads the channels; while it is busy the engine
  // reads them for the heartbeats, and the messages it read still reach JS
  // in order.
  const settings = { heartbeat: { interval: 100, timeout: 600, grace: 300 } };
  const app = startFixture('supervised.js', {
    env: { SCENARIO: 'busyprimary', WORKERS: '2', BLOCK_MS: '2000', SETTINGS: JSON.stringify(settings) },
  });
  try {
    const { ticks } = await app.next((e) => e.ticks, 10000);
    expect(app.events.filter((e) => e.ev === 'unresponsive' || e.ev === 'exit')).toEqual([]);
    for (const id of ['1', '2']) {
      // 2.5 s of ticks every 20 ms, none lost or out of order.
      expect(ticks[id].length).toBeGreaterThan(50);
      expect(ticks[id]).toEqual(ticks[id].map((_, i) => ticks[id][0] + i));
    }
  } finally {
    app.kill();
  }
});

'use strict';
// The README's example: every worker answers on its port (3000, or PORT:
// here a free one), and Ctrl-C (SIGINT to the terminal's process group)
// stops the primary and every worker.
const { spawn } = require('node:child_process');
const path = require('node:path');
const os = require('node:os');
const { get, alive, waitFor, killGroup, freePort, ROOT } = require('./helpers');

test('hello-worker answers from every worker and stops on Ctrl-C', async () => {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(ROOT, 'examples', 'hello-worker.js')], {
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const exited = new Promise((r) => child.on('close', (code, signal) => r({ code, signal })));
  try {
    const n = os.cpus().length;
    const started = () => (out.match(/Worker \d+ started/g) || []).length === n;
    expect(await waitFor(started, 10000)).toBe(true);
    const pids = new Set();
    for (let i = 0; i < 20 * n && pids.size < n; i++) {
      const body = await get(port);
      expect(body).toMatch(/^Hello from Worker \d+\n$/);
      pids.add(body.match(/\d+/)[0]);
    }
    expect(pids.size).toBe(n);
    process.kill(-child.pid, 'SIGINT');
    expect(await exited).toEqual({ code: null, signal: 'SIGINT' });
    expect(await waitFor(() => [...pids].every((p) => !alive(Number(p))), 2000)).toBe(true);
  } finally {
    killGroup(child.pid);
  }
});

'use strict';
// index.d.ts: an app typed against node:cluster compiles with only the import
// changed, and rcluster's additions are typed. Runs the real TypeScript compiler.
const { spawnSync } = require('node:child_process');
const path = require('node:path');

test('TypeScript accepts a node:cluster app and the rcluster extensions', () => {
  const tsc = require.resolve('typescript/bin/tsc');
  const files = ['node-cluster-app.ts', 'rcluster-extensions.ts'].map((f) => path.join(__dirname, 'types', f));
  const res = spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--types', 'node', ...files], {
    encoding: 'utf8', timeout: 60000,
  });
  expect(res.stdout + res.stderr).toBe('');
  expect(res.status).toBe(0);
});

test('a type error in such an app is caught (the check can fail)', () => {
  const tsc = require.resolve('typescript/bin/tsc');
  const fs = require('node:fs');
  const os = require('node:os');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-types-'));
  const file = path.join(dir, 'bad.ts');
  fs.writeFileSync(file, `import cluster = require(${JSON.stringify(path.resolve(__dirname, '..'))});\nconst n: string = cluster.SCHED_RR;\n`);
  try {
    const res = spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--types', 'node', file], { encoding: 'utf8', timeout: 60000 });
    expect(res.status).not.toBe(0);
    expect(res.stdout).toMatch(/TS2322/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

'use strict';
// import cluster from 'rcluster' and import { isPrimary, fork } from 'rcluster'.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { ROOT } = require('./helpers');

test('default and named ESM imports work in the primary and the worker', () => {
  // A throwaway package that depends on rcluster, so the bare specifier resolves.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-esm-'));
  try {
    fs.mkdirSync(path.join(dir, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'rcluster'));
    fs.copyFileSync(path.join(__dirname, 'fixtures', 'esm-app.mjs'), path.join(dir, 'app.mjs'));
    const res = spawnSync(process.execPath, [path.join(dir, 'app.mjs')], { encoding: 'utf8', timeout: 15000 });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({ m: { from: 1, isPrimary: false }, same: true, rr: true });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

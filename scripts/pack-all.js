#!/usr/bin/env node
'use strict';
// npm run pack:all — builds the engine for the four Linux targets and writes
//   dist/rcluster-<version>.tgz                      (no binary, no install script)
//   dist/rcluster-linux-<x64|arm64>-<gnu|musl>-<version>.tgz
// as napi-rs packages are laid out: each platform package holds one binary
// and says its os, cpu and libc; the main package names them all in
// optionalDependencies, so a package manager installs the one that fits.
// Cross-builds with cargo-zigbuild (napi build -x); the gnu builds are pinned
// to glibc 2.17. Installs its own tools (scripts/platform-tools.sh build).
//   RCLUSTER_TARGETS=linux-x64-musl,linux-arm64-gnu npm run pack:all   (a subset)

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const DIST = path.join(ROOT, 'dist');
const pkg = require('../package.json');

/** napi-rs platform name → the target napi builds (a gnu target carries zig's glibc pin). */
const TARGETS = {
  'linux-x64-gnu': 'x86_64-unknown-linux-gnu.2.17',
  'linux-x64-musl': 'x86_64-unknown-linux-musl',
  'linux-arm64-gnu': 'aarch64-unknown-linux-gnu.2.17',
  'linux-arm64-musl': 'aarch64-unknown-linux-musl',
};

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], ...opts });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.error ? r.error.message : r.signal || `exit ${r.status}`})`);
  }
  return r;
}

function npmPack(dir) {
  const r = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', DIST], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm pack in ${dir} failed:\n${r.stderr}`);
  return path.join(DIST, JSON.parse(r.stdout)[0].filename);
}

function buildPlatform(platform) {
  const dir = path.join(ROOT, 'npm', platform);
  console.log(`\n=== ${platform} (${TARGETS[platform]}) ===`);
  run('npx', ['napi', 'build', '--platform', '--release', '--no-js', '-x', '--target', TARGETS[platform],
    '--output-dir', dir, '--dts', '.binding.d.ts']);
  fs.rmSync(path.join(dir, '.binding.d.ts'), { force: true }); // the root's binding.d.ts is the one kept
  const binary = path.join(dir, `rcluster.${platform}.node`);
  if (!fs.existsSync(binary)) throw new Error(`napi build left no ${binary}`);
  return npmPack(dir);
}

// The main package as published: the files `npm pack` would take, less any
// binary a local build left in the clone, with the platform packages as
// optionalDependencies and without the development scripts.
function packMain() {
  const dry = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
  if (dry.status !== 0) throw new Error(`npm pack --dry-run failed:\n${dry.stderr}`);
  const stage = fs.mkdtempSync(path.join(DIST, '.stage-'));
  try {
    for (const { path: file } of JSON.parse(dry.stdout)[0].files) {
      if (file.endsWith('.node') || file === 'package.json') continue;
      fs.mkdirSync(path.dirname(path.join(stage, file)), { recursive: true });
      fs.copyFileSync(path.join(ROOT, file), path.join(stage, file));
    }
    const published = { ...pkg };
    delete published.devDependencies;
    delete published.jest;
    delete published.scripts;
    published.optionalDependencies = Object.fromEntries(Object.keys(TARGETS).map((p) => [`rcluster-${p}`, pkg.version]));
    fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(published, null, 2)}\n`);
    return npmPack(stage);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

function main() {
  const wanted = process.env.RCLUSTER_TARGETS ? process.env.RCLUSTER_TARGETS.split(',').map((s) => s.trim()) : Object.keys(TARGETS);
  for (const p of wanted) if (!TARGETS[p]) throw new Error(`unknown target ${p} (one of ${Object.keys(TARGETS).join(', ')})`);
  run('bash', [path.join(__dirname, 'platform-tools.sh'), 'build']);
  fs.mkdirSync(DIST, { recursive: true });
  const written = wanted.map(buildPlatform);
  written.unshift(packMain());
  console.log(`\n${written.map((f) => path.relative(ROOT, f)).join('\n')}`);
}

try {
  main();
} catch (err) {
  console.error(`pack:all: ${err.message}`);
  process.exit(1);
}

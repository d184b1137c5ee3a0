#!/usr/bin/env node
'use strict';
// npm's `install` step for rcluster, as napi-rs packages do it: use a
// prebuilt binary when one fits, build from source only when none does.
//
// 1. A development checkout (a git clone: it has .git or __test__/, which
//    the package never ships) does nothing here: `prepare` builds it with
//    `napi build` and the devDependencies.
// 2. A binary that loads — the one bundled in the tarball, or the platform
//    package rcluster-<triple> — means there is nothing to do.
// 3. Otherwise, with cargo and rustc >= 1.88 on PATH, build the addon with
//    plain cargo (no @napi-rs/cli needed) into a temporary target dir and
//    keep only the .node file.
// 4. Otherwise fail with one message: the platform, and what is needed.
// RCLUSTER_BUILD_FROM_SOURCE=1 skips step 2.

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { platformTriple, MIN_RUST } = require('../lib/platform');

const ROOT = path.resolve(__dirname, '..');
const triple = platformTriple();

function say(line) {
  process.stderr.write(`rcluster: ${line}\n`);
}

function fail(line) {
  say(line);
  process.exit(1);
}

function loads() {
  // In a child: a binary that crashes on load must not take npm down, and
  // this process must not keep a half-loaded addon.
  const r = spawnSync(process.execPath, ['-e', "require('./lib/native')"], { cwd: ROOT, encoding: 'utf8' });
  return r.status === 0 ? null : (r.stderr || '').trim().split('\n').slice(0, 3).join('\n');
}

function version(cmd) {
  const r = spawnSync(cmd, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  const m = /(\d+)\.(\d+)\.(\d+)/.exec(r.stdout);
  return m ? m.slice(1, 4).map(Number) : null;
}

function atLeast(v, min) {
  const [a, b] = min.split('.').map(Number);
  return v[0] > a || (v[0] === a && v[1] >= b);
}

function buildFromSource() {
  const noToolchain =
    `no prebuilt binary fits this platform (${triple}, Node ${process.version}), ` +
    `and building from source needs a Rust toolchain (Rust >= ${MIN_RUST}, https://rustup.rs) on PATH. ` +
    `Install Rust and run npm rebuild rcluster, or install the prebuilt package rcluster-${triple} where one is published.`;
  if (process.platform !== 'linux') fail(`rcluster runs on Linux only; this is ${triple}.`);
  const cargo = version('cargo');
  const rustc = version('rustc');
  if (!cargo || !rustc) fail(noToolchain);
  if (!atLeast(rustc, MIN_RUST)) fail(`${noToolchain} (found rustc ${rustc.join('.')})`);

  // A target dir of the user's own is kept; ours is temporary, so that no
  // 100+ MB of build output stays inside node_modules.
  const own = process.env.CARGO_TARGET_DIR;
  const target = own || fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-build-'));
  say(`no prebuilt binary fits ${triple}: building from source with cargo (rustc ${rustc.join('.')}), this takes a minute or two`);
  try {
    const r = spawnSync('cargo', ['build', '--release', '--lib', '--locked'], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, CARGO_TARGET_DIR: target },
    });
    if (r.status !== 0) fail(`cargo build failed (exit ${r.status ?? r.signal}); see its output above.`);
    const built = path.join(target, 'release', 'librcluster.so');
    const dest = path.join(ROOT, `rcluster.${triple}.node`);
    fs.copyFileSync(built, dest + '.tmp');
    fs.renameSync(dest + '.tmp', dest); // never a half-written binary under the loader's name
  } finally {
    if (!own) fs.rmSync(target, { recursive: true, force: true });
  }
  const err = loads();
  if (err) fail(`built from source, but the binary does not load:\n${err}`);
  say(`built rcluster.${triple}.node`);
}

if (fs.existsSync(path.join(ROOT, '.git')) || fs.existsSync(path.join(ROOT, '__test__'))) {
  process.exit(0); // a development checkout: `prepare` builds
}
if (process.env.RCLUSTER_BUILD_FROM_SOURCE !== '1' && loads() === null) process.exit(0);
buildFromSource();

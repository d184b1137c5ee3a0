#!/usr/bin/env node
'use strict';
// npx rcluster-build — builds rcluster's native engine from source, for a
// platform no prebuilt binary fits (the package has no install script: npm
// never runs this by itself; without it such a platform runs the portable
// engine on node:cluster).
//
// 1. A binary that already loads (a platform package, or an earlier build)
//    means there is nothing to do; --force builds anyway.
// 2. With cargo and rustc >= 1.88 on PATH, build the addon with plain cargo
//    (no @napi-rs/cli needed) into a temporary target dir and keep only the
//    .node file, beside package.json, where the loader looks first.
// 3. Otherwise fail with one message: the platform, and what is needed.
// In a clone of the repository, `npm run build` is the build.

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
  // In a child: a binary that crashes on load must not take this process
  // down, and this process must not keep a half-loaded addon.
  const r = spawnSync(process.execPath, ['-e', "require('./lib/native').load()"], { cwd: ROOT, encoding: 'utf8' });
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
    `building the native engine for this platform (${triple}, Node ${process.version}) ` +
    `needs a Rust toolchain (Rust >= ${MIN_RUST}, https://rustup.rs) on PATH. ` +
    'Install Rust and run npx rcluster-build again; meanwhile rcluster runs on its portable engine (node:cluster).';
  if (process.platform !== 'linux') {
    fail(`the native engine is for Linux; ${triple} runs the portable engine (node:cluster), with nothing to build.`);
  }
  const cargo = version('cargo');
  const rustc = version('rustc');
  if (!cargo || !rustc) fail(noToolchain);
  if (!atLeast(rustc, MIN_RUST)) fail(`${noToolchain} (found rustc ${rustc.join('.')})`);

  // A target dir of the user's own is kept; ours is temporary, so that no
  // 100+ MB of build output stays inside node_modules.
  const own = process.env.CARGO_TARGET_DIR;
  const target = own || fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-build-'));
  say(`building the native engine for ${triple} from source with cargo (rustc ${rustc.join('.')}), this takes a minute or two`);
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

const force = process.argv.includes('--force');
for (const arg of process.argv.slice(2)) {
  if (arg !== '--force') fail(`unknown option ${arg} (usage: rcluster-build [--force])`);
}
if (!force && loads() === null) {
  say(`a native engine already loads on ${triple}: nothing to build (--force builds anyway)`);
  process.exit(0);
}
buildFromSource();

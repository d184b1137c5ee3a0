'use strict';
// npm run flows: which of rcluster's files a flow runs through in the
// primary — a worker's listen, a crash to its restart (and to its 'exit'
// alone), a user message —
// measured, not read off the code. Each flow runs in bench/flow-app.js
// twice, with it and without it (the same run up to where the flow starts,
// ending as soon as it is over); a file is in the flow when some function
// of it ran more often with the flow than without, in every round (the
// smallest count of the rounds with it against the largest of those
// without, so timers that tick a different number of times in one round do
// not count). Rust: LLVM's source-based coverage of a build of the engine
// made for this (`-C instrument-coverage`, in target/flows); JS: V8's
// (NODE_V8_COVERAGE). The worker runs Node's own cluster code plus the
// worker hook; only the primary is counted.
//
// Needs the llvm-tools rustup component (llvm-profdata, llvm-cov): it is
// added when missing. Env: ROUNDS (default 3), FLOWS (comma-separated),
// NODE_CLUSTER_SCHED_POLICY (the policy the flows run under), CHECKOUT (a
// directory with another checkout of rcluster to measure instead, say an
// older commit's `git worktree`).

const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { platformTriple } = require('../lib/platform');

const ROOT = path.resolve(process.env.CHECKOUT || path.join(__dirname, '..'));
const ROUNDS = Number(process.env.ROUNDS || 3);
const FLOWS = (process.env.FLOWS || 'listen,crash,exit,message').split(',');

// The host triple and the LLVM tools that match rustc (rustup's
// llvm-tools, added when missing), looked up once.
let toolchain = null;
function rust() {
  if (toolchain) return toolchain;
  const host = /host: (\S+)/.exec(execFileSync('rustc', ['-vV'], { encoding: 'utf8' }))[1];
  const sysroot = execFileSync('rustc', ['--print', 'sysroot'], { encoding: 'utf8' }).trim();
  const bin = path.join(sysroot, 'lib', 'rustlib', host, 'bin');
  if (!fs.existsSync(path.join(bin, 'llvm-cov'))) execFileSync('rustup', ['component', 'add', 'llvm-tools'], { stdio: 'inherit' });
  toolchain = { host, profdata: path.join(bin, 'llvm-profdata'), cov: path.join(bin, 'llvm-cov') };
  return toolchain;
}

// The engine built with coverage counters, in a copy of the package.
function buildPackage() {
  const targetDir = path.join(ROOT, 'target', 'flows');
  // With --target, RUSTFLAGS leave build scripts and proc macros alone (no
  // profiles of the build itself).
  const { host } = rust();
  execFileSync('cargo', ['build', '--lib', '--target', host, '--target-dir', targetDir], {
    cwd: ROOT,
    stdio: 'inherit',
    env: { ...process.env, RUSTFLAGS: '-C instrument-coverage' },
  });
  const pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-flows-'));
  fs.cpSync(path.join(ROOT, 'lib'), path.join(pkg, 'lib'), { recursive: true });
  for (const f of ['index.js', 'package.json']) fs.copyFileSync(path.join(ROOT, f), path.join(pkg, f));
  const lib = path.join(targetDir, host, 'debug', 'librcluster.so');
  fs.copyFileSync(lib, path.join(pkg, `rcluster.${platformTriple()}.node`));
  return { pkg, lib };
}

// Per function, how often it ran in the primary: `file\0function` -> count.
function runOnce(pkg, lib, flow, variant) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rcluster-flow-run-'));
  try {
    const out = spawnSync(process.execPath, [path.join(__dirname, 'flow-app.js'), flow, variant], {
      cwd: pkg,
      encoding: 'utf8',
      timeout: 20000,
      env: {
        ...process.env,
        NODE_V8_COVERAGE: path.join(dir, 'v8'),
        LLVM_PROFILE_FILE: path.join(dir, 'llvm', '%p.profraw'),
      },
    });
    const pid = /pid (\d+)/.exec(out.stdout || '')?.[1];
    if (out.status !== 0 || !pid) throw new Error(`${flow} ${variant}: exit ${out.status}\n${out.stderr}`);
    const counts = new Map();
    // JS: the primary's V8 coverage, our package's files only.
    const v8File = fs.readdirSync(path.join(dir, 'v8')).find((f) => f.startsWith(`coverage-${pid}-`));
    for (const script of JSON.parse(fs.readFileSync(path.join(dir, 'v8', v8File), 'utf8')).result) {
      if (!script.url.startsWith(`file://${pkg}/`)) continue;
      const file = script.url.slice(`file://${pkg}/`.length);
      for (const fn of script.functions) {
        counts.set(`${file}\0${fn.functionName}@${fn.ranges[0].startOffset}`, fn.ranges[0].count);
      }
    }
    // Rust: the primary's profile (workers do not load the engine).
    const raw = path.join(dir, 'llvm', `${pid}.profraw`);
    const data = path.join(dir, 'flow.profdata');
    execFileSync(rust().profdata, ['merge', '-sparse', raw, '-o', data]);
    const json = execFileSync(rust().cov, ['export', '--format=text', '--skip-expansions', lib, `--instr-profile=${data}`], {
      maxBuffer: 1 << 30,
      encoding: 'utf8',
    });
    for (const fn of JSON.parse(json).data[0].functions) {
      const file = path.relative(ROOT, fn.filenames[0]);
      if (file.startsWith('src/')) counts.set(`${file}\0${fn.name}`, (counts.get(`${file}\0${fn.name}`) || 0) + fn.count);
    }
    return counts;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// The names in a Rust symbol (v0 mangling), roughly: enough to read which
// function it is (closures show as their function's name).
function demangle(name) {
  if (!name.startsWith('_R')) return name;
  const names = [];
  for (let i = 2; i < name.length;) {
    if (name.startsWith('Cs', i)) {
      i = name.indexOf('_', i) + 1; // a crate's disambiguator
      continue;
    }
    const n = /^(\d+)_?/.exec(name.slice(i));
    if (!n) {
      i++;
      continue;
    }
    const ident = name.slice(i + n[0].length, i + n[0].length + Number(n[1]));
    if (/^[A-Za-z_]\w*$/.test(ident) && ident !== 'rcluster') names.push(ident);
    i += n[0].length + Math.max(Number(n[1]), 1);
  }
  return names.join('::');
}

function measure(pkg, lib, flow) {
  const runs = { with: [], without: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const variant of ['without', 'with']) runs[variant].push(runOnce(pkg, lib, flow, variant));
  }
  const keys = new Set(runs.with.flatMap((m) => [...m.keys()]));
  const files = new Map(); // file -> functions of it in the flow
  for (const key of keys) {
    const least = Math.min(...runs.with.map((m) => m.get(key) || 0));
    const most = Math.max(...runs.without.map((m) => m.get(key) || 0));
    if (least > most) {
      const [file, fn] = key.split('\0');
      if (!files.has(file)) files.set(file, []);
      files.get(file).push(fn);
    }
  }
  return files;
}

function main() {
  const { pkg, lib } = buildPackage();
  try {
    const policy = process.env.NODE_CLUSTER_SCHED_POLICY || '(default)';
    for (const flow of FLOWS) {
      const files = measure(pkg, lib, flow);
      const names = [...files.keys()].sort();
      const fns = [...files.values()].reduce((n, f) => n + f.length, 0);
      console.log(`\n${flow} (policy ${policy}, ${ROUNDS} rounds): ${names.length} files, ${fns} functions`);
      for (const name of names) {
        console.log(`  ${name.padEnd(32)} ${files.get(name).length}`);
        if (process.env.VERBOSE) for (const fn of files.get(name).sort()) console.log(`      ${demangle(fn)}`);
      }
    }
  } finally {
    fs.rmSync(pkg, { recursive: true, force: true });
  }
}

main();

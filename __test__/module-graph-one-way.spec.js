'use strict';
// The engine's module graph runs one way, as the README's Layout says:
// binding → primary → sched and supervise → ipc → error/sync, with no
// import cycle between files. Reads src/ as text: `use` paths (with brace
// groups), `crate::`/`super::` paths in code, and a mod.rs naming its own
// child modules. Test modules (`#[cfg(test)] mod tests`) count too, with
// `super` meaning their own file.
const fs = require('node:fs');
const path = require('node:path');
const { ROOT } = require('./helpers');

const SRC = path.join(ROOT, 'src');

function sources() {
  const files = new Map(); // module path ('primary/state', '' for lib) -> text
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.rs')) {
        let m = path.relative(SRC, p).slice(0, -3).split(path.sep).join('/');
        if (m === 'lib') m = '';
        else if (m.endsWith('/mod')) m = m.slice(0, -4);
        files.set(m, fs.readFileSync(p, 'utf8'));
      }
    }
  };
  walk(SRC);
  return files;
}

function graph() {
  const files = sources();
  const resolve = (cur, segs) => {
    const parts = cur ? cur.split('/') : [];
    let base;
    if (segs[0] === 'crate') base = [];
    else if (segs[0] === 'super') base = parts.slice(0, -1);
    else if (segs[0] === 'self') base = parts;
    else return null;
    let rest = segs.slice(1);
    while (rest[0] === 'super') { base = base.slice(0, -1); rest = rest.slice(1); }
    for (let i = rest.length; i >= 0; i--) {
      const m = [...base, ...rest.slice(0, i)].join('/');
      if (files.has(m)) return m;
    }
    return null;
  };
  const edges = new Map([...files.keys()].map((m) => [m, new Set()]));
  for (const [m, text] of files) {
    const main = text.split(/#\[cfg\(test\)\]\s*mod tests/)[0];
    const tests = text.slice(main.length);
    const add = (t) => { if (t !== null && t !== m) edges.get(m).add(t); };
    for (const [, child] of main.matchAll(/^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;/gm)) {
      const t = (m ? `${m}/` : '') + child;
      if (files.has(t) && new RegExp(`(?<![:\\w])${child}::`).test(main)) add(t);
    }
    for (const [chunk, inTests] of [[main, false], [tests, true]]) {
      const fix = (segs) => (inTests && segs[0] === 'super' ? ['self', ...segs.slice(1)] : segs);
      for (const [, head, items] of chunk.matchAll(/\buse\s+((?:crate|super|self)(?:::[A-Za-z_0-9]+)*)::\{([^}]*)\}/g)) {
        for (let item of items.split(',')) {
          item = item.trim().split(' as ')[0].trim();
          if (!item || item === '*') continue;
          add(resolve(m, fix(item === 'self' ? head.split('::') : `${head}::${item}`.split('::'))));
        }
      }
      for (const [p] of chunk.matchAll(/\b(?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+/g)) {
        add(resolve(m, fix(p.split('::'))));
      }
    }
  }
  return edges;
}

function cycles(edges) {
  // Tarjan's strongly connected components of more than one file.
  const index = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const found = [];
  let n = 0;
  const strong = (v) => {
    index.set(v, n); low.set(v, n); n++;
    stack.push(v); on.add(v);
    for (const w of edges.get(v)) {
      if (!index.has(w)) { strong(w); low.set(v, Math.min(low.get(v), low.get(w))); }
      else if (on.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) === index.get(v)) {
      const comp = [];
      let w;
      do { w = stack.pop(); on.delete(w); comp.push(w); } while (w !== v);
      if (comp.length > 1) found.push(comp.sort());
    }
  };
  for (const v of edges.keys()) if (!index.has(v)) strong(v);
  return found;
}

const layer = (m) => m.split('/')[0];

test('no import cycle between the files of src/', () => {
  const edges = graph();
  expect(edges.get('primary/protocol').has('sched/handle')).toBe(true); // the reader sees edges at all
  expect(cycles(edges)).toEqual([]);
});

test('dependencies run binding → primary → sched and supervise → ipc → error/sync', () => {
  // What each top-level part may use, besides itself.
  const allowed = {
    binding: ['primary', 'sched', 'supervise', 'ipc', 'error', 'sync'],
    primary: ['sched', 'supervise', 'ipc', 'error', 'sync'],
    sched: ['ipc', 'error', 'sync'],
    supervise: [],
    ipc: ['error', 'sync'],
    error: [],
    sync: [],
    '': [],
  };
  const wrong = [];
  for (const [from, tos] of graph()) {
    for (const to of tos) {
      if (layer(to) !== layer(from) && !allowed[layer(from)].includes(layer(to))) wrong.push(`${from} -> ${to}`);
    }
  }
  expect(wrong).toEqual([]);
});

test("src/primary/mod.rs's file list is true: each file uses only those listed before it", () => {
  const text = fs.readFileSync(path.join(SRC, 'primary', 'mod.rs'), 'utf8');
  const doc = text.split('\n').filter((l) => l.startsWith('//!')).map((l) => l.slice(3).trim()).join(' ');
  const listed = [...doc.slice(doc.indexOf('The files')).matchAll(/`([a-z_]+)` \(/g)].map((m) => m[1]);
  const files = fs.readdirSync(path.join(SRC, 'primary')).filter((f) => f !== 'mod.rs').map((f) => f.slice(0, -3));
  expect([...listed].sort()).toEqual(files.sort()); // every file, once
  const edges = graph();
  const wrong = [];
  listed.forEach((file, i) => {
    for (const to of edges.get(`primary/${file}`)) {
      if (layer(to) === 'primary' && !listed.slice(0, i).includes(to.slice('primary/'.length))) {
        wrong.push(`${file} uses ${to}, listed after it`);
      }
    }
  });
  expect(wrong).toEqual([]);
});

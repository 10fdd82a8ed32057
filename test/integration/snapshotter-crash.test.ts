// A snapshotter killed (SIGKILL) at any moment of Prepare, Commit or Remove leaves its
// root consistent: every snapshot in the database has its directory, every parent
// exists, and Cleanup removes exactly the directories no snapshot owns.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { Snapshotter } from '../../src/snapshotter/snapshots';
import { tempDir } from '../lib/tmp';
import { REPO_ROOT } from '../lib/mounts';

// runs in a child (the built module): a busy loop of every changing call, reporting each
// finished one, until killed
const WORKER = `
const { Snapshotter } = require(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'src', 'snapshotter', 'snapshots.js'))});
const fs = require('node:fs');
const s = new Snapshotter(process.argv[1]);
let n = Number(process.argv[2]);
for (;;) {
  const i = n++;
  const parent = s.list(['kind==committed']).map((x) => x.name).pop() ?? '';
  const m = s.create('ACTIVE', 'k' + i, parent, { i: String(i) });
  const own = m[0].options.find((o) => o.startsWith('upperdir='))?.slice(9) ?? m[0].source;
  fs.writeFileSync(own + '/f' + i, 'x');
  if (i % 3 === 0) s.remove('k' + i);
  else s.commit('c' + i, 'k' + i);
  const committed = s.list(['kind==committed']);
  if (committed.length > 4) {
    const leaf = committed.find((c) => s.list(['parent==' + c.name]).length === 0);
    if (leaf) s.remove(leaf.name);
  }
  process.stdout.write(i + '\\n');
}
`;

t.test('SIGKILL during Prepare/Commit/Remove leaves old or new state', async (t) => {
  const dir = await tempDir(t, 'snap-crash');
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  let next = 0;
  for (let round = 0; round < 8; round++) {
    const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, '-e', WORKER, root, String(next)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let done = 0;
    let err = '';
    child.stdout.on('data', (d: Buffer) => (done += d.toString().split('\n').length - 1));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    // once it works (module loading takes a while on a busy machine), let it go on a
    // varying while, then kill it wherever it is
    for (let i = 0; i < 600 && done === 0 && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 50 + round * 97));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    t.ok(done > 0, `round ${round}: the worker got through ${done} operations ${err}`);
    next += done + 1000;

    const s = new Snapshotter(root);
    try {
      const rows = s.store.all();
      const names = new Set(rows.map((r) => r.name));
      for (const r of rows) {
        if (!fs.existsSync(path.join(root, 'snapshots', String(r.id), 'fs'))) t.fail(`round ${round}: ${r.name} has no directory`);
        if (r.parent !== '' && !names.has(r.parent)) t.fail(`round ${round}: ${r.name} has a missing parent ${r.parent}`);
      }
      s.cleanup();
      const dirs = fs.readdirSync(path.join(root, 'snapshots')).sort();
      t.same(dirs, rows.map((r) => String(r.id)).sort(), `round ${round}: after Cleanup, one directory per snapshot (${rows.length})`);
    } finally {
      s.close();
    }
  }
});

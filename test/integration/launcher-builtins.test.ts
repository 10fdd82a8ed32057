/**
 * What Node.js modules a mount's start loads (README "What each lever gave"): the
 * bundle bin/stratafs.js runs (dist/src/cli/main.bundle.js), with its module bodies run
 * and a mount's first requests served (its warmMountPath, what `npm run build` makes the
 * code cache with), never loads node:perf_hooks, which took 3-5 ms of every start. The
 * bundle has no `performance` global (scripts/bundle.mjs: lru-cache then keeps time with
 * Date, for the TTLs no cache here has) and the daemon reads its monotonic clock with
 * process.uptime().
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { plainExec, run } from '../lib/proc';

const BUNDLE = path.resolve(__dirname, '..', '..', 'dist', 'src', 'cli', 'main.bundle.js');

/** runs the bundle's mount path in a fresh node; prints the builtins loaded, one a line */
const PROBE = `
const b = require(process.argv[1]);
b.warmMountPath().then(() => {
  process.stdout.write(process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).join('\\n') + '\\n');
  process.exit(0);
}, (e) => {
  process.stderr.write('warm-up failed: ' + e.message + '\\n');
  process.exit(1);
});
`;

t.test('the bundle\'s mount path and first requests load no node:perf_hooks', { skip: fs.existsSync(BUNDLE) ? false : 'no bundle (npm run build makes it)' }, async (t) => {
  const r = await run(...plainExec([process.execPath, '-e', PROBE, BUNDLE]), { timeoutMs: 30000 });
  t.equal(r.code, 0, `the mount path ran: ${r.stderr.trim()}`);
  const loaded = r.stdout.split('\n').filter((l) => l !== '');
  t.ok(loaded.includes('NativeModule fs'), 'the list of builtins loaded was read');
  t.ok(loaded.some((m) => m.startsWith('NativeModule internal/fs')), 'and holds what the mount path loaded');
  t.same(loaded.filter((m) => m.includes('perf_hooks')), [], 'no perf_hooks module was loaded');
});

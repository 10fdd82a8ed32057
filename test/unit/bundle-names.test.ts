/**
 * The start-up bundle's keepNames helper (scripts/bundle-names.mjs): a closure made per
 * call gets no Object.defineProperty (its properties stay fast, which is what the
 * helper costs per lookup), while classes keep the names their modules give them, even
 * where esbuild renamed one (two modules with a class of the same name).
 */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = path.resolve(__dirname, '..', '..');

interface Names {
  NAME_HELPER_CLASSES: string;
  namesForClassesOnly(bundle: string): string | undefined;
}
interface Esbuild {
  build(o: Record<string, unknown>): Promise<{ outputFiles: { text: string }[] }>;
}

const load = async <T>(spec: string): Promise<T> => (await import(spec)) as T;

/** two modules, each with a class Thing; b makes a named closure per call */
async function sampleBundle(t: Test): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-names-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // ES modules: esbuild hoists them into one scope, so one Thing must be renamed
  fs.writeFileSync(path.join(dir, 'a.mjs'), 'export class Thing {}\n');
  fs.writeFileSync(path.join(dir, 'b.mjs'),
    'export class Thing {}\nexport function plain() {}\nexport const make = (x) => { const undo = () => x; return undo; };\n');
  fs.writeFileSync(path.join(dir, 'entry.mjs'),
    'import { Thing as A } from "./a.mjs";\nimport { Thing as B, plain, make } from "./b.mjs";\nexport { A, B, plain, make };\n');
  const esbuild = await load<Esbuild>('esbuild');
  const r = await esbuild.build({
    entryPoints: [path.join(dir, 'entry.mjs')], bundle: true, platform: 'node', format: 'cjs',
    keepNames: true, write: false, logLevel: 'error',
  });
  return (r.outputFiles[0] as { text: string }).text;
}

/** runs `bundle` in a child node: the names it exports and whether a made closure's properties are fast */
function probe(t: Test, bundle: string): { a: string; b: string; plain: string; closureFast: boolean } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-names-run-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'bundle.js');
  fs.writeFileSync(file, bundle);
  const code = `const m = require(${JSON.stringify(file)}); const f = m.make(1);
    console.log(JSON.stringify({ a: m.A.name, b: m.B.name, plain: m.plain.name, closureFast: %HasFastProperties(f) }));`;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '-e', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { a: string; b: string; plain: string; closureFast: boolean };
}

t.test('the helper leaves closures alone and keeps class names', async (t) => {
  const names = await load<Names>(pathToFileURL(path.join(ROOT, 'scripts', 'bundle-names.mjs')).href);
  const bundle = await sampleBundle(t);
  t.match(bundle, /\bThing2\b/, 'esbuild renamed one of the classes (what keepNames is for)');
  const before = probe(t, bundle);
  t.equal(before.closureFast, false, "esbuild's own helper makes each closure's properties a dictionary");
  const after = names.namesForClassesOnly(bundle);
  if (after === undefined) {
    t.fail("esbuild's helper is not the one expected");
    return;
  }
  const seen = probe(t, after);
  t.equal(seen.closureFast, true, 'a closure made per call keeps fast properties');
  t.equal(seen.a, 'Thing');
  t.equal(seen.b, 'Thing', 'the renamed class still has its module name');
  t.equal(seen.plain, 'plain');
});

t.test('the built bundle carries the helper', async (t) => {
  const names = await load<Names>(pathToFileURL(path.join(ROOT, 'scripts', 'bundle-names.mjs')).href);
  const built = fs.readFileSync(path.join(ROOT, 'dist', 'src', 'cli', 'main.bundle.js'), 'utf8');
  t.ok(built.includes(names.NAME_HELPER_CLASSES), 'dist/src/cli/main.bundle.js uses the classes-only helper');
});

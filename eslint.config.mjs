import * as fs from 'node:fs';
import * as path from 'node:path';
import tseslint from 'typescript-eslint';

/**
 * The layering of src/ (README, "How it is built"): each unit may import only the units
 * listed for it (and node builtins and npm packages). Every .ts file under src/ must
 * belong to a unit: a new folder fails the lint until it is given its place here.
 */
/** single modules at the bottom that import nothing of ours: errors, numbers, privilege, caller creds, the mount table */
const LEAVES = ['src/errors', 'src/int64', 'src/privilege', 'src/creds', 'src/mountinfo'];
const LAYERS = {
  'src/cli': ['src/graphdriver', 'src/snapshotter', 'src/server', 'src/mount', ...LEAVES],
  'src/snapshotter': ['src/server', 'src/mount', 'src/layers', 'src/native', ...LEAVES],
  'src/graphdriver': ['src/server', 'src/mount', 'src/layers', 'src/native', ...LEAVES],
  'src/server': ['src/mount', 'src/overlay', 'src/layers', 'src/fuse/bridge', 'src/fuse/api', 'src/native', ...LEAVES],
  'src/mount': ['src/overlay', 'src/native', ...LEAVES],
  'src/overlay': ['src/fuse/api', 'src/layers', 'src/native', ...LEAVES],
  'src/layers': ['src/native', ...LEAVES],
  'src/fuse/bridge': ['src/fuse/api', 'src/fuse/wire', 'src/native', ...LEAVES],
  'src/fuse/api': ['src/fuse/wire', 'src/int64'],
  'src/fuse/wire': ['src/int64'],
  'src/native': ['src/errors', 'src/int64'],
  'src/errors': [],
  'src/int64': [],
  'src/privilege': [],
  'src/creds': [],
  'src/mountinfo': [],
};

const root = path.dirname(new URL(import.meta.url).pathname);
const isFileUnit = (u) => fs.existsSync(path.join(root, `${u}.ts`));

function unitOf(file) {
  const noExt = file.replace(/\.ts$/, '');
  const u = Object.keys(LAYERS)
    .filter((k) => noExt === k || file.startsWith(`${k}/`))
    .sort((a, b) => b.length - a.length)[0];
  if (u === undefined) throw new Error(`eslint.config.mjs: ${file} belongs to no unit of LAYERS: give its folder a place in the layering`);
  return u;
}

function sourceFiles(dir) {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Regex sources matching every way `file` can name the units it must not import. */
function forbidden(file) {
  const unit = unitOf(file);
  const allowed = new Set([unit, ...LAYERS[unit]]);
  return Object.keys(LAYERS).filter((u) => !allowed.has(u)).map((u) => {
    let rel = path.posix.relative(path.posix.dirname(file), u);
    if (!rel.startsWith('.')) rel = `./${rel}`;
    return { unit: u, source: `^${escape(rel)}${isFileUnit(u) ? '(\\.js|\\.ts)?$' : '(/.*)?$'}` };
  });
}

function layering(file) {
  const unit = unitOf(file);
  const rules = forbidden(file);
  if (rules.length === 0) return [];
  const message = (u) => `${unit} must not import ${u} (layering: README "How it is built"; eslint.config.mjs LAYERS)`;
  // esquery regexes cannot contain '/': spell it \x2F there
  const q = (s) => s.replace(/\//g, '\\x2F');
  const syntax = rules.flatMap(({ unit: u, source }) => [
    { selector: `ImportExpression[source.value=/${q(source)}/]`, message: message(u) },
    { selector: `CallExpression[callee.name='require'][arguments.0.value=/${q(source)}/]`, message: message(u) },
    { selector: `TSImportType[argument.literal.value=/${q(source)}/]`, message: message(u) },
  ]);
  return [{
    files: [file],
    rules: {
      'no-restricted-imports': ['error', { patterns: rules.map(({ unit: u, source }) => ({ regex: source, message: message(u) })) }],
      'no-restricted-syntax': ['error', ...syntax],
    },
  }];
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'native-bindings/build/**', '.tap/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // the start-up bundle has no `performance` (scripts/bundle.mjs: loading node:perf_hooks
    // took 3-5 ms of every mount's start); a monotonic clock is process.uptime()
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-globals': ['error', { name: 'performance', message: 'not in the start-up bundle (scripts/bundle.mjs): use process.uptime()' }],
    },
  },
  ...sourceFiles('src').flatMap(layering),
);

// The daemon's `mount-argv` request (src/server/argv.ts, protocol.ts): bytes carried one
// per character, decoded exactly; the CLI's parser with the caller's cwd; refusals of
// anything that is not a mount. No mounting here.
import t from 'tap';
import { decodeBytes, mountFromArgv } from '../../src/server/argv';
import { parseRequest, parseSpec } from '../../src/server/protocol';

/** How the C client sends a string: one character per byte of its UTF-8. */
const asBytes = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

t.test('strings come back exactly from one byte per character', async (t) => {
  t.equal(decodeBytes(asBytes('/srv/läyer/日本'), 'x'), '/srv/läyer/日本', 'UTF-8 text survives');
  t.throws(() => decodeBytes('l/\u00ff', 'argument 2'), { message: /argument 2 is not valid UTF-8: "l\/\\xff"/, code: 'STRATAFS_ERR_USAGE' });
  t.throws(() => decodeBytes('\u0100', 'cwd'), { message: /above U\+00FF/, code: 'STRATAFS_ERR_SERVER' });
});

t.test('the argv is parsed as the CLI does, relative paths against the cwd', async (t) => {
  const spec = mountFromArgv(['-o', asBytes('lowerdir=l/A:l/B,upperdir=C/diff,workdir=C/work,,volatile,metacopy=on,server=/s'), 'C/merged'], asBytes('/var/lib/containers/storage/overlay'));
  const home = '/var/lib/containers/storage/overlay';
  t.same(spec.lowerdirs, [`${home}/l/A`, `${home}/l/B`]);
  t.equal(spec.upperdir, `${home}/C/diff`);
  t.equal(spec.workdir, `${home}/C/work`);
  t.equal(spec.mountpoint, `${home}/C/merged`);
  t.equal(spec.volatile, true);
  t.equal(spec.metacopy, true);
  t.equal(spec.readOnly, false);
  t.notOk('server' in spec || 'foreground' in spec, 'only the fields of a mount');
  t.equal(mountFromArgv(['-o', 'lowerdir=/l', '/m'], '/').readOnly, true, 'no upper: read-only');
});

t.test('what is not a mount is refused', async (t) => {
  t.throws(() => mountFromArgv(['--help'], '/'), { code: 'STRATAFS_ERR_USAGE', message: /not a mount request/ });
  t.throws(() => mountFromArgv(['--version'], '/'), { code: 'STRATAFS_ERR_USAGE' });
  t.throws(() => mountFromArgv(['-f', '-o', 'lowerdir=/l', '/m'], '/'), { code: 'STRATAFS_ERR_USAGE', message: /-f and -d/ });
  t.throws(() => mountFromArgv(['-d', '-o', 'lowerdir=/l', '/m'], '/'), { code: 'STRATAFS_ERR_USAGE' });
  t.throws(() => mountFromArgv(['-o', 'lowerdir=/l,nope', '/m'], '/'), { code: 'STRATAFS_ERR_OPTION', message: /unknown option "nope"/ });
  t.throws(() => mountFromArgv(['-o', 'lowerdir=l', 'm'], 'relative'), { code: 'STRATAFS_ERR_SERVER', message: /cwd must be an absolute path/ });
});

t.test('parseRequest checks the shape of mount-argv', async (t) => {
  t.same(parseRequest('{"op":"mount-argv","argv":["-o","lowerdir=/l","/m"],"cwd":"/"}'), { op: 'mount-argv', argv: ['-o', 'lowerdir=/l', '/m'], cwd: '/' });
  t.throws(() => parseRequest('{"op":"mount-argv","argv":"-o","cwd":"/"}'), { message: /argv must be a list of strings/ });
  t.throws(() => parseRequest('{"op":"mount-argv","argv":[1],"cwd":"/"}'), { message: /argv must be a list of strings/ });
  t.throws(() => parseRequest('{"op":"mount-argv","argv":[]}'), { message: /cwd must be a string/ });
});

t.test('a mount spec keeps metacopy', async (t) => {
  const base = { lowerdirs: ['/l'], mountpoint: '/m', timeout: 1, passthrough: 'off' };
  t.equal(parseSpec({ ...base, metacopy: true }).metacopy, true);
  t.equal(parseSpec(base).metacopy, false);
});

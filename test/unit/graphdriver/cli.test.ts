/**
 * Command lines of `stratafs graphdriver` and `stratafs daemon`, and the daemon's
 * request checks: every mistake is one StratafsError naming it.
 */
import t from 'tap';
import { parseGraphdriverArgs } from '../../../src/cli/graphdriver';
import { parseDaemonArgs } from '../../../src/cli/server';
import { parseRequest } from '../../../src/server/protocol';
import { parseArgs } from '../../../src/mount/options';
import { checkSpec, type MountSpec } from '../../../src/mount/spec';
import { DEFAULT_MOUNT_FLAGS } from '../../../src/mount/flags';

t.test('stratafs graphdriver arguments', async (t) => {
  const none = { access: {}, limits: {} };
  t.same(parseGraphdriverArgs([]), { socket: '/run/docker/plugins/stratafs.sock', home: undefined, debug: false, ...none });
  t.same(parseGraphdriverArgs(['--name', 'sfs2', '-d']), { socket: '/run/docker/plugins/sfs2.sock', home: undefined, debug: true, ...none });
  t.same(parseGraphdriverArgs(['--socket', '/tmp/x.sock', '--home', '/var/lib/x']),
    { socket: '/tmp/x.sock', home: '/var/lib/x', debug: false, ...none });
  t.same(parseGraphdriverArgs(['--allow-uid', '1000', '--max-connections', '9', '--max-request-bytes', '4096', '--idle-timeout', '5']),
    { socket: '/run/docker/plugins/stratafs.sock', home: undefined, debug: false, access: { allowUid: 1000 },
      limits: { maxConnections: 9, maxRequestBytes: 4096, idleTimeoutMs: 5000 } });
  t.throws(() => parseGraphdriverArgs(['--max-connections', '0']), { code: 'STRATAFS_ERR_USAGE', message: /--max-connections must be a positive integer/ });
  t.throws(() => parseGraphdriverArgs(['--allow-uid', 'bob']), { code: 'STRATAFS_ERR_USAGE', message: /--allow-uid must be a uid/ });
  t.equal(parseGraphdriverArgs(['--help']), 'help');
  t.throws(() => parseGraphdriverArgs(['--name', '../evil']), { code: 'STRATAFS_ERR_USAGE', message: /invalid plugin name/ });
  t.throws(() => parseGraphdriverArgs(['--name']), { message: /--name needs a value/ });
  t.throws(() => parseGraphdriverArgs(['--bogus']), { message: /unknown argument "--bogus"/ });
});

t.test('stratafs daemon arguments', async (t) => {
  t.same(parseDaemonArgs(['--socket', '/run/s.sock']), { kind: 'serve', socket: '/run/s.sock', debug: false, access: {}, limits: {} });
  t.same(parseDaemonArgs(['--socket', '/run/s.sock', '--list']), { kind: 'list', socket: '/run/s.sock', debug: false, access: {}, limits: {} });
  t.same(parseDaemonArgs(['--socket', '/run/s.sock', '--allow-uid', '0', '--idle-timeout', '2']),
    { kind: 'serve', socket: '/run/s.sock', debug: false, access: { allowUid: 0 }, limits: { idleTimeoutMs: 2000 } });
  t.throws(() => parseDaemonArgs(['--socket', '/s', '--max-request-bytes', '-1']), { message: /--max-request-bytes must be a positive integer/ });
  t.same(parseDaemonArgs(['--socket', '/run/s.sock', '--unmount', '/mnt/a']), { kind: 'unmount', socket: '/run/s.sock', target: '/mnt/a' });
  t.throws(() => parseDaemonArgs([]), { message: /needs --socket/ });
  t.equal(parseDaemonArgs(['-h']), 'help');
});

t.test('-o server=PATH is carried to the mount options', async (t) => {
  const c = parseArgs(['-o', 'server=/run/s.sock,lowerdir=/l', '/mnt'], '/');
  t.equal(c.kind === 'mount' && c.options.server, '/run/s.sock');
  t.throws(() => parseArgs(['-o', 'server=,lowerdir=/l', '/mnt']), { message: /server needs a value/ });
});

t.test('-o affinity=off is carried to the mount spec (default auto)', async (t) => {
  const off = parseArgs(['-o', 'affinity=off,lowerdir=/l', '/mnt'], '/');
  t.equal(off.kind === 'mount' && off.options.affinity, 'off');
  const auto = parseArgs(['-o', 'lowerdir=/l', '/mnt'], '/');
  t.equal(auto.kind === 'mount' && auto.options.affinity, 'auto');
  const r = parseRequest(JSON.stringify({ op: 'mount', spec: { lowerdirs: ['/l'], mountpoint: '/m', timeout: 1, passthrough: 'auto', affinity: 'off' } }));
  t.equal(r.op === 'mount' && r.spec.affinity, 'off', 'through the daemon socket too');
});

t.test('daemon requests are checked field by field', async (t) => {
  const spec = { lowerdirs: ['/l'], mountpoint: '/m', timeout: 1, passthrough: 'auto' };
  const r = parseRequest(JSON.stringify({ op: 'mount', spec }));
  t.match(r, { op: 'mount', spec: { lowerdirs: ['/l'], mountpoint: '/m', readOnly: true, acl: true } }, 'no upper: read-only');
  t.same(parseRequest('{"op":"list"}'), { op: 'list' });
  t.throws(() => parseRequest('{"op":'), { code: 'STRATAFS_ERR_SERVER', message: /malformed JSON/ });
  t.throws(() => parseRequest('{"op":"format"}'), { message: /unknown op "format"/ });
  t.throws(() => parseRequest(JSON.stringify({ op: 'mount', spec: { ...spec, lowerdirs: '/l' } })), { code: 'STRATAFS_ERR_SERVER', message: /lowerdirs must be a list/ });
  t.throws(() => parseRequest(JSON.stringify({ op: 'mount', spec: { ...spec, lowerdirs: [] } })), { code: 'STRATAFS_ERR_OPTION', message: /lowerdir= is required/ });
  t.throws(() => parseRequest(JSON.stringify({ op: 'mount', spec: { ...spec, lowerdirs: ['rel'] } })), { message: /lowerdir "rel" is not an absolute path/ });
  t.throws(() => parseRequest(JSON.stringify({ op: 'mount', spec: { ...spec, upperdir: '/u' } })), { message: /upperdir= needs workdir= too/ });
  t.throws(() => parseRequest(JSON.stringify({ op: 'mount', spec: { ...spec, timeout: -1 } })), { message: /timeout needs a number of seconds/ });
  t.throws(() => parseRequest(JSON.stringify({ op: 'mount', spec: { ...spec, passthrough: 'on' } })), { message: /passthrough takes auto or off/ });
  t.throws(() => parseRequest(JSON.stringify({ op: 'mount', spec: { ...spec, uidMap: [{ inside: 0, host: -1, count: 1 }] } })), { message: /uidMap has a bad range/ });
  t.throws(() => parseRequest(JSON.stringify({ op: 'unmount', mountpoint: 'rel' })), { message: /absolute/ });
});

/** one lower more than kernel overlayfs' limit */
const MANY = Array.from({ length: 501 }, (_x, i) => `/l${i}`);

t.test('one MountSpec, one validator: the command line, a socket request and a MountServer caller get the same answer', async (t) => {
  const base = { lowerdirs: ['/l'], mountpoint: '/m', readOnly: false, volatile: false, timeout: 5, passthrough: 'auto' as const, acl: true, metacopy: false };
  t.same(checkSpec({ ...base, upperdir: '/u', workdir: '/w' }), { ...base, upperdir: '/u', workdir: '/w', uidMap: undefined, gidMap: undefined, squashToUid: undefined, squashToGid: undefined, writeback: 'off', uring: 'auto', affinity: 'auto', redirectDir: true });
  t.equal(checkSpec(base).readOnly, true, 'no upper: read-only');
  const cases: [Partial<MountSpec>, string[], RegExp][] = [
    [{ lowerdirs: [] }, ['/m'], /^lowerdir= is required$/],
    [{ upperdir: '/u' }, ['-o', 'lowerdir=/l,upperdir=/u', '/m'], /^upperdir= needs workdir= too$/],
    [{ workdir: '/w' }, ['-o', 'lowerdir=/l,workdir=/w', '/m'], /^workdir= given without upperdir=$/],
    [{ timeout: -2 }, ['-o', 'lowerdir=/l,timeout=-2', '/m'], /timeout needs a number of seconds/],
    [{ uidMap: [{ inside: 0, host: 1, count: 0 }] }, ['-o', 'lowerdir=/l,uidmapping=0:1:0', '/m'], /uidmapping has a range of length 0/],
    [{ lowerdirs: MANY }, ['-o', `lowerdir=${MANY.join(':')}`, '/m'], /^too many lowerdirs: 501 \(the limit is 500, as kernel overlayfs\)$/],
    [{ writeback: 'maybe' as 'on' }, ['-o', 'lowerdir=/l,writeback=maybe', '/m'], /writeback takes on or off/],
    [{ affinity: 'on' as 'off' }, ['-o', 'lowerdir=/l,affinity=on', '/m'], /affinity takes auto or off/],
  ];
  for (const [change, argv, message] of cases) {
    const spec = { ...base, ...change };
    t.throws(() => checkSpec(spec), { code: 'STRATAFS_ERR_OPTION', message }, `checkSpec ${JSON.stringify(change)}`);
    t.throws(() => parseArgs(argv, '/'), { code: 'STRATAFS_ERR_OPTION', message }, `command line ${argv.join(' ')}`);
    t.throws(() => parseRequest(JSON.stringify({ op: 'mount', spec })), { code: 'STRATAFS_ERR_OPTION', message }, `socket request ${JSON.stringify(change)}`);
  }
  const o = parseArgs(['-f', '-o', 'lowerdir=/l,upperdir=/u,workdir=/w,timeout=5', '/m'], '/');
  // the command line states the default mount flags that a bare spec leaves implicit
  t.same(o.kind === 'mount' && checkSpec(o.options), checkSpec({ ...base, upperdir: '/u', workdir: '/w', flags: { ...DEFAULT_MOUNT_FLAGS } }), 'the CLI\'s extra fields stay behind');
});

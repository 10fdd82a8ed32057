// openNoatime (src/layers/access.ts): O_NOATIME refused (EPERM: a daemon that does not
// own the file) is remembered per layer, so the layer's next open makes one openat.
import t from 'tap';
import { C } from '../../../src/native';
import { E } from '../../../src/errors';
import { openNoatime, type Layer } from '../../../src/layers/access';

const layer = (index: number): Layer => ({ index, path: `/l${index}`, rootFd: -1, devMajor: 0, devMinor: 0, upper: false });

/** an open that refuses O_NOATIME, recording the flags of every call */
function refusing(calls: number[]): (flags: number) => number {
  return (flags) => {
    calls.push(flags);
    if ((flags & C.O_NOATIME) !== 0) throw Object.assign(new Error('EPERM'), { errno: E.EPERM, code: 'EPERM' });
    return 42;
  };
}

t.test('after one EPERM the next open of the same layer makes one openat', async (t) => {
  const l1 = layer(1);
  const calls: number[] = [];
  t.equal(openNoatime(refusing(calls), 0, l1), 42);
  t.same(calls.map((f) => (f & C.O_NOATIME) !== 0), [true, false], 'first: refused, then without O_NOATIME');
  calls.length = 0;
  t.equal(openNoatime(refusing(calls), 0, l1), 42);
  t.same(calls.map((f) => (f & C.O_NOATIME) !== 0), [false], 'then one openat, without O_NOATIME (failed before: two)');

  const l2 = layer(2);
  calls.length = 0;
  openNoatime(refusing(calls), 0, l2);
  t.equal(calls.length, 2, 'another layer tries O_NOATIME itself');
  calls.length = 0;
  openNoatime(refusing(calls), 0);
  t.equal(calls.length, 2, 'without a layer nothing is remembered');
});

t.test('O_NOATIME granted: kept; other errors are thrown, not remembered', async (t) => {
  const l = layer(3);
  const seen: number[] = [];
  t.equal(openNoatime((f) => (seen.push(f), 7), 0, l), 7);
  t.ok((seen[0]! & C.O_NOATIME) !== 0, 'opened with O_NOATIME');
  t.throws(() => openNoatime(() => {
    throw Object.assign(new Error('ENOENT'), { errno: E.ENOENT, code: 'ENOENT' });
  }, 0, l), /ENOENT/);
  seen.length = 0;
  openNoatime((f) => (seen.push(f), 7), 0, l);
  t.ok((seen[0]! & C.O_NOATIME) !== 0, 'still tried with O_NOATIME');
});

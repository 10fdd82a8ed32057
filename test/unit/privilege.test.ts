// Privilege by capability, not uid (src/privilege.ts): the identity uid_map of the
// initial user namespace against rootless podman's, and CAP_SYS_ADMIN in CapEff.
import t from 'tap';
import { hasCapSysAdmin, isIdentityMap, privilege } from '../../src/privilege';

t.test('uid_map: only the identity map is the initial namespace', async (t) => {
  t.ok(isIdentityMap('         0          0 4294967295\n'), 'the host map');
  t.notOk(isIdentityMap('         0       1001          1\n         1     100000      65536\n'), 'rootless podman: uid 0 is 1001');
  t.notOk(isIdentityMap('         0          0      65536\n'), 'a partial identity map is a user namespace');
  t.notOk(isIdentityMap(''), 'nothing is not the identity');
});

t.test('CapEff: bit 21 is CAP_SYS_ADMIN', async (t) => {
  t.ok(hasCapSysAdmin('Name:\tx\nCapEff:\t000001fffeffffff\n'), 'root');
  t.ok(hasCapSysAdmin('CapEff:\t0000000000200000\n'), 'CAP_SYS_ADMIN alone');
  t.notOk(hasCapSysAdmin('CapEff:\t00000000001fffff\n'), 'every capability below it');
  t.notOk(hasCapSysAdmin('CapEff:\t0000000000000000\n'), 'none');
  t.notOk(hasCapSysAdmin('Name:\tx\n'), 'no CapEff line');
});

t.test('this test process (root on the host) is host admin', async (t) => {
  const p = privilege();
  t.same(p, { initialUserNs: true, capSysAdmin: true, hostAdmin: true });
});

/**
 * Xattr names on disk and as shown (src/layers/xattr-names.ts), both directions, for
 * both prefixes: what the mount stores for a user's name is listed back as that name,
 * and the overlay's own names are neither shown nor settable.
 */
import t from 'tap';
import { isPrivateXattr, storedXattrName, visibleXattrName } from '../../../src/layers';

for (const prefix of ['trusted.overlay.', 'user.overlay.']) {
  const other = prefix === 'trusted.overlay.' ? 'user.overlay.' : 'trusted.overlay.';
  t.test(`prefix ${prefix}`, async (t) => {
    t.equal(storedXattrName(prefix, `${prefix}foo`), `${prefix}overlay.foo`, 'a user name under the prefix is escaped on disk');
    t.equal(storedXattrName(prefix, `${prefix}overlay.x`), `${prefix}overlay.overlay.x`, 'an already escaped-looking name is escaped again');
    for (const name of [`${prefix}foo`, `${prefix}opaque`, `${prefix}overlay.x`, 'user.mime', 'security.capability', 'system.posix_acl_access', 'trusted.x']) {
      const disk = storedXattrName(prefix, name);
      t.not(disk, null, `${name} can be stored`);
      t.equal(visibleXattrName(prefix, disk as string), name, `${name} is shown back as itself`);
    }
    for (const priv of [`${prefix}opaque`, `${prefix}redirect`, `${prefix}whiteout`, `${prefix}origin`]) {
      t.equal(visibleXattrName(prefix, priv), null, `the overlay's own ${priv} is never shown`);
      t.ok(isPrivateXattr(priv), `${priv} is private`);
    }
    t.equal(storedXattrName(prefix, `${other}opaque`), null, 'the other prefix is refused');
    t.equal(visibleXattrName(prefix, `${other}opaque`), null, 'the other prefix is never shown');
    t.equal(visibleXattrName(prefix, 'user.mime'), 'user.mime', 'a plain name passes unchanged');
  });
}

import t from 'tap';
import { C } from '../../../src/native';
import { aclForCreate, encodeAcl, parseAcl, type AclEntry } from '../../../src/overlay/acl';

const U = 0xffffffff; // ACL_UNDEFINED_ID as stored (-1 as u32)

/** `d:u::rwx,d:u:1234:rwx,d:g::r-x,d:m::rwx,d:o::r-x` as setfacl writes it */
const defaults: AclEntry[] = [
  { tag: C.ACL_USER_OBJ, perm: 7, id: U },
  { tag: C.ACL_USER, perm: 7, id: 1234 },
  { tag: C.ACL_GROUP_OBJ, perm: 5, id: U },
  { tag: C.ACL_MASK, perm: 7, id: U },
  { tag: C.ACL_OTHER, perm: 5, id: U },
];

t.test('xattr format round trip', async (t) => {
  const buf = encodeAcl(defaults);
  t.equal(buf.length, 4 + 5 * 8);
  t.equal(buf.readUInt32LE(0), C.POSIX_ACL_XATTR_VERSION);
  t.same(parseAcl(buf), defaults);
  t.equal(parseAcl(Buffer.from([1, 2, 3])), undefined, 'too short');
  t.equal(parseAcl(Buffer.alloc(12)), undefined, 'wrong version');
});

t.test('without a default ACL only the umask applies', async (t) => {
  t.same(aclForCreate(0o666, 0o022, false, undefined), { mode: 0o644 });
  t.same(aclForCreate(0o4777, 0o027, true, undefined), { mode: 0o4750 });
});

t.test('a default ACL replaces the umask (what the kernel shows for the same setfacl)', async (t) => {
  // file created with mode 0666 (touch) under the default ACL: kernel overlayfs shows
  // user::rw- user:1234:rwx (effective rw-) group::r-x (effective r--) mask::rw- other::r--, mode 0664
  const f = aclForCreate(0o666, 0o022, false, encodeAcl(defaults));
  t.equal(f.mode, 0o664, 'umask ignored; group bits from the mask');
  t.same(parseAcl(f.access!), [
    { tag: C.ACL_USER_OBJ, perm: 6, id: U },
    { tag: C.ACL_USER, perm: 7, id: 1234 },
    { tag: C.ACL_GROUP_OBJ, perm: 5, id: U },
    { tag: C.ACL_MASK, perm: 6, id: U },
    { tag: C.ACL_OTHER, perm: 4, id: U },
  ]);
  t.equal(f.default, undefined, 'files get no default ACL');
  // mkdir with 0777: drwxrwxr-x, access ACL = the default one, default ACL inherited
  const d = aclForCreate(0o777, 0o022, true, encodeAcl(defaults));
  t.equal(d.mode, 0o775);
  t.same(parseAcl(d.access!), defaults);
  t.same(parseAcl(d.default!), defaults, 'directories inherit the default ACL');
});

t.test('a minimal default ACL yields a mode and no access ACL', async (t) => {
  const minimal: AclEntry[] = [
    { tag: C.ACL_USER_OBJ, perm: 7, id: U },
    { tag: C.ACL_GROUP_OBJ, perm: 0, id: U },
    { tag: C.ACL_OTHER, perm: 0, id: U },
  ];
  const r = aclForCreate(0o666, 0o000, false, encodeAcl(minimal));
  t.equal(r.mode, 0o600);
  t.equal(r.access, undefined);
});

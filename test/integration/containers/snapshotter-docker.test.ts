// Docker 26 (Debian trixie's) with the containerd image store on containerd 1.7, with
// "storage-driver": "stratafs" (the stratafs snapshotter): docker load, run with writes
// and deletes of lower files, diff, commit, a classic docker build with RUN and COPY
// steps, save. The same steps on a second dockerd using containerd's built-in overlayfs
// snapshotter must give the same outputs and saved images with the same files
// (checksums, modes, owners, link targets, xattrs).
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { tempDir } from '../../lib/tmp';
import { runOk } from '../../lib/proc';
import { busyboxRootfs } from '../../lib/rootfs';
import { dockerArchive } from '../../lib/image-archive';
import { mountsUnder, startContainerd, startDockerd26, startSnapshotterProc, type Dockerd26 } from '../../lib/containerd';

const IMAGE = 'stratafs-test/two:latest';
/** a vfs_cap_data (revision 2) granting cap_net_bind_service, as setcap writes it */
const CAP_NET_BIND_SERVICE = '0sAQAAAgAEAAAAAAAAAAAAAAAAAAA=';

const WRITE = 'ls -a /data; test -e /etc/motd || echo motd-gone; echo new > /tmp/x; rm /etc/issue; echo more >> /etc/passwd; ' +
  'mkdir -p /newdir/deep; echo d > /newdir/deep/f; rm -r /data/fresh; echo tagged >> /etc/tagged';

const DOCKERFILE = `FROM ${IMAGE}
RUN echo built > /built && rm /etc/passwd && mkdir -p /d/e && chmod 0700 /d && chown 65534:65534 /d/e && ln -s /built /d/link && ln /built /d/hard
COPY file.txt /copied.txt
RUN rm -r /data && echo more >> /built && chmod 4755 /copied.txt && echo appended >> /etc/tagged && chmod 640 /etc/tagged && chmod 750 /bin/capped
`;

// every layer of a `docker save` archive (OCI layout or not), each entry as
// name type mode uid gid size sha256 linkname xattrs, sorted; times left out
const LISTING = `
import json, sys, tarfile, hashlib, os
root = sys.argv[1]
out = []
for layer in json.load(open(os.path.join(root, 'manifest.json')))[0]['Layers']:
    rows = []
    with tarfile.open(os.path.join(root, layer), 'r:*') as tf:
        for m in tf:
            digest = hashlib.sha256(tf.extractfile(m).read()).hexdigest() if m.isfile() else ''
            xattrs = sorted((k, v) for k, v in m.pax_headers.items() if k.startswith('SCHILY.xattr.'))
            rows.append([m.name.lstrip('./').rstrip('/'), m.type.decode(), oct(m.mode), m.uid, m.gid, m.size, digest, m.linkname, xattrs])
    out.append(sorted(rows))
print(json.dumps(out))
`;

interface Outcome {
  write: string;
  diff: string[];
  committed: string;
  built: string;
  savedBuilt: unknown;
  savedCommitted: unknown;
}

async function steps(t: Test, d: Dockerd26, work: string, archive: string, ctx: string): Promise<Outcome> {
  await d.dockerOk(['load', '-i', archive]);
  const write = await d.dockerOk(['run', '--name', 'writer', IMAGE, '/bin/sh', '-c', WRITE]);
  const diff = (await d.dockerOk(['diff', 'writer'])).split('\n').filter(Boolean).sort();
  await d.dockerOk(['commit', 'writer', 'committed:1']);
  const committed = await d.dockerOk(['run', '--rm', 'committed:1', '/bin/sh', '-c',
    'cat /tmp/x /newdir/deep/f /etc/tagged; tail -n1 /etc/passwd; test -e /etc/issue || echo issue-gone; ls -a /data']);
  await d.dockerOk(['build', '-q', '-t', 'built:1', ctx]);
  const built = await d.dockerOk(['run', '--rm', 'built:1', '/bin/sh', '-c',
    'cat /built /d/hard /d/link /copied.txt /etc/tagged; ls -lnd /copied.txt /d /d/e /etc/tagged /bin/capped | awk "{print \\$1, \\$3, \\$4}"; test -e /data || echo data-gone; test -e /etc/passwd || echo passwd-gone']);
  const saved = async (image: string, name: string): Promise<unknown> => {
    const dir = join(work, name);
    await mkdir(dir, { recursive: true });
    await d.dockerOk(['save', '-o', join(dir, 'image.tar'), image]);
    await runOk('tar', ['-C', dir, '-xf', join(dir, 'image.tar')]);
    return JSON.parse(await runOk('python3', ['-c', LISTING, dir], { timeoutMs: 120_000 })) as unknown;
  };
  const savedBuilt = await saved('built:1', 'saved-built');
  const savedCommitted = await saved('committed:1', 'saved-committed');
  t.pass('every step ran');
  return { write, diff, committed, built, savedBuilt, savedCommitted };
}

t.test('Docker 26 on the stratafs snapshotter, compared with the overlayfs snapshotter', async (t) => {
  const base = await tempDir(t, 'snap-docker');
  const snap = await startSnapshotterProc(t, base);
  const cd = await startContainerd(t, base, snap);

  const rootfs = await busyboxRootfs(join(base, 'img', 'rootfs'));
  const top = join(base, 'img', 'top');
  await mkdir(join(top, 'data'), { recursive: true });
  await mkdir(join(top, 'etc'), { recursive: true });
  await writeFile(join(top, 'data', '.wh..wh..opq'), '');
  await writeFile(join(top, 'data', 'fresh'), 'fresh\n');
  await writeFile(join(top, 'etc', '.wh.motd'), '');
  await writeFile(join(top, 'etc', 'tagged'), 'tag\n');
  // xattrs on lower files the container and the build then change: containerd's tar
  // writer keeps security.capability (and drops user.*, with any snapshotter)
  await runOk('setfattr', ['-n', 'user.stratafs-test', '-v', 'kept', join(top, 'etc', 'tagged')]);
  await mkdir(join(top, 'bin'));
  await writeFile(join(top, 'bin', 'capped'), '#!/bin/sh\necho capped\n', { mode: 0o755 });
  await runOk('setfattr', ['-n', 'security.capability', '-v', CAP_NET_BIND_SERVICE, join(top, 'bin', 'capped')]);
  const archive = await dockerArchive(join(base, 'img'), IMAGE, [rootfs, top]);
  const ctx = join(base, 'ctx');
  await mkdir(ctx);
  await writeFile(join(ctx, 'Dockerfile'), DOCKERFILE);
  await writeFile(join(ctx, 'file.txt'), 'copied\n');

  const a = await startDockerd26(t, base, 'a', cd, 'stratafs');
  const info = await a.dockerOk(['info', '--format', '{{.Driver}} {{json .DriverStatus}}']);
  t.match(info, /^stratafs .*io\.containerd\.snapshotter\.v1/, `dockerd uses the stratafs snapshotter: ${info.trim()}`);
  const onStratafs = await steps(t, a, join(base, 'out-a'), archive, ctx);

  t.equal(onStratafs.write, '.\n..\nfresh\nmotd-gone\n', 'the image as layered: opaque dir and whiteout honoured');
  t.same(onStratafs.diff, ['A /newdir', 'A /newdir/deep', 'A /newdir/deep/f', 'A /tmp/x', 'C /data', 'C /etc', 'C /etc/passwd',
    'C /etc/tagged', 'C /tmp', 'D /data/fresh', 'D /etc/issue'], 'docker diff lists exactly the changes');
  t.equal(onStratafs.committed, 'new\nd\ntag\ntagged\nmore\nissue-gone\n.\n..\n', 'the committed image has the changes and deletions');
  // /d/hard was linked to /built in one layer; /built changed in the next (a copy-up
  // there, as with overlayfs without index): the link keeps the old content
  t.equal(onStratafs.built, 'built\nmore\nbuilt\nbuilt\nmore\ncopied\ntag\nappended\n' +
    '-rwxr-x--- 0 0\n-rwsr-xr-x 0 0\ndrwx------ 0 0\ndrwxr-xr-x 65534 65534\n-rw-r----- 0 0\ndata-gone\npasswd-gone\n', 'the built image');
  const builtLayers = onStratafs.savedBuilt as unknown[][][];
  const capped = builtLayers[builtLayers.length - 1].find((r) => r[0] === 'bin/capped');
  t.same(capped?.[8], [['SCHILY.xattr.security.capability', Buffer.from(CAP_NET_BIND_SERVICE.slice(2), 'base64').toString('latin1')]],
    'the capability of a copied-up lower file is in the saved layer');
  const a2 = snap.root;
  t.ok(fs.readdirSync(join(a2, 'snapshots')).length > 0, 'the layers are in the snapshotter');

  const b = await startDockerd26(t, base, 'b', cd, 'overlayfs');
  const onOverlayfs = await steps(t, b, join(base, 'out-b'), archive, ctx);
  t.equal(onStratafs.write, onOverlayfs.write, 'run output as on overlayfs');
  t.same(onStratafs.diff, onOverlayfs.diff, 'docker diff as on overlayfs');
  t.equal(onStratafs.committed, onOverlayfs.committed, 'committed image as on overlayfs');
  t.equal(onStratafs.built, onOverlayfs.built, 'built image as on overlayfs');
  t.same(onStratafs.savedCommitted, onOverlayfs.savedCommitted, 'saved committed image: the same files, modes, owners, xattrs');
  t.same(onStratafs.savedBuilt, onOverlayfs.savedBuilt, 'saved built image: the same files, modes, owners, xattrs');

  // dockerd's containers gone, nothing of stratafs stays mounted
  await a.dockerOk(['rm', '-f', 'writer']);
  await a.dockerOk(['rmi', 'built:1', 'committed:1', IMAGE]);
  t.same(await mountsUnder([base], 'fuse.stratafs'), [], 'no stratafs mounts left');
});

// A docker-archive (the format of `docker save`, read by `podman load`) made from layer
// directories, so that a test can give podman an image whose upper layers carry
// deletions (`.wh.NAME`) and opaque directories (`.wh..wh..opq`) without a registry.
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runOk } from './proc';
import { tarDir } from './rootfs';

/**
 * Write DIR/image.tar holding LAYERS (directories, bottom first) as an image named TAG.
 * Returns the archive's path.
 */
export async function dockerArchive(dir: string, tag: string, layers: readonly string[]): Promise<string> {
  const content = join(dir, 'archive');
  await mkdir(content, { recursive: true });
  const tars: string[] = [];
  for (const [i, layer] of layers.entries()) tars.push(await tarDir(layer, join(content, `layer${i}.tar`)));
  return dockerArchiveOfTars(dir, tag, tars);
}

/**
 * The same from layer tars (uncompressed, bottom first), e.g. a diff containerd made:
 * copied into DIR/archive, then DIR/image.tar as above.
 */
export async function dockerArchiveOfTars(dir: string, tag: string, tars: readonly string[]): Promise<string> {
  const content = join(dir, 'archive');
  await mkdir(content, { recursive: true });
  const names: string[] = [];
  const diffIds: string[] = [];
  for (const [i, tar] of tars.entries()) {
    const name = `layer${i}.tar`;
    const data = await readFile(tar);
    if (tar !== join(content, name)) await writeFile(join(content, name), data);
    diffIds.push(`sha256:${createHash('sha256').update(data).digest('hex')}`);
    names.push(name);
  }
  const config = {
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: tars.map(() => ({ created_by: 'stratafs test layer' })),
  };
  const configJson = JSON.stringify(config);
  const configName = `${createHash('sha256').update(configJson).digest('hex')}.json`;
  await writeFile(join(content, configName), configJson);
  await writeFile(join(content, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [tag], Layers: names }]));
  const archive = join(dir, 'image.tar');
  await runOk('tar', ['-C', content, '-cf', archive, 'manifest.json', configName, ...names], { timeoutMs: 120_000 });
  return archive;
}

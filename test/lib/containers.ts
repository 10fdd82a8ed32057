// podman and buildah with a private store: storage.conf (overlay driver, mount_program =
// stratafs or another program) and containers.conf in a temp dir, selected through
// CONTAINERS_STORAGE_CONF and CONTAINERS_CONF, so that nothing touches the machine's
// own containers and runs of several people do not collide. Cleanup removes containers
// and images with the tools themselves, then whatever is still mounted under the store.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mountTable, STRATAFS_BIN } from './mounts';
import { run, runOk, type RunOptions, type RunResult } from './proc';
import { tempDir, type Teardown } from './tmp';

/** runc fails to start containers with these VMs' huge default limits (DESIGN.md, Clients). */
export const CONTAINER_ULIMITS = ['nofile=1024:1024', 'nproc=1024:1024'];
/** mountProgram for a store on kernel overlayfs (no mount_program) */
export const KERNEL_DRIVER = '';
/** One podman or buildah command: pulls nothing, so a minute is plenty. */
const TOOL_TIMEOUT_MS = 120_000;
export const HOST_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

export interface ContainerStore {
  /** The temp dir holding the configuration files, graphroot, runroot and tmp dirs. */
  readonly dir: string;
  readonly graphroot: string;
  /** The environment that points podman and buildah at this store. */
  readonly env: NodeJS.ProcessEnv;
  podman(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** podman ARGS, throwing with its stderr when it fails; returns stdout. */
  podmanOk(args: readonly string[], opts?: RunOptions): Promise<string>;
  buildah(args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  buildahOk(args: readonly string[], opts?: RunOptions): Promise<string>;
  /** Mount points below the store (must be empty once containers and images are gone). */
  mounts(): Promise<string[]>;
  /** Remove buildah's and podman's containers and all images; idempotent. */
  clean(): Promise<void>;
}

export interface StoreOptions {
  /** mount_program of the overlay driver (default: this worktree's stratafs; KERNEL_DRIVER: none). */
  mountProgram?: string;
  /** temp dir name prefix (default "podman"). */
  prefix?: string;
}

function toml(s: string): string {
  return JSON.stringify(s);
}

/** Write the store's configuration; DIR must exist. Shared with the benchmark's layout. */
export async function writeStoreConfig(dir: string, mountProgram: string): Promise<NodeJS.ProcessEnv> {
  const graphroot = join(dir, 'root');
  for (const d of ['root', 'run', 'tmp', 'libpod']) await mkdir(join(dir, d), { recursive: true });
  const storageConf = join(dir, 'storage.conf');
  const containersConf = join(dir, 'containers.conf');
  await writeFile(
    storageConf,
    [
      '[storage]',
      'driver = "overlay"',
      `graphroot = ${toml(graphroot)}`,
      `runroot = ${toml(join(dir, 'run'))}`,
      // no mount program: the kernel's overlayfs (the reference)
      ...(mountProgram === KERNEL_DRIVER ? [] : ['[storage.options.overlay]', `mount_program = ${toml(mountProgram)}`]),
      '',
    ].join('\n'),
  );
  await writeFile(
    containersConf,
    [
      '[containers]',
      `default_ulimits = [${CONTAINER_ULIMITS.map(toml).join(', ')}]`,
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "none"',
      `tmp_dir = ${toml(join(dir, 'libpod'))}`,
      '',
    ].join('\n'),
  );
  return {
    PATH: HOST_PATH,
    HOME: process.env.HOME ?? '/root',
    CONTAINERS_STORAGE_CONF: storageConf,
    CONTAINERS_CONF: containersConf,
    TMPDIR: join(dir, 'tmp'),
  };
}

/**
 * A private podman/buildah store in a fresh temp dir. Teardown (registered here, so it
 * runs after the test's own teardowns) removes containers and images, then unmounts
 * leftovers below the store and removes the dir (tempDir).
 */
export async function containerStore(t: Teardown, opts: StoreOptions = {}): Promise<ContainerStore> {
  const dir = await tempDir(t, opts.prefix ?? 'podman');
  const env = await writeStoreConfig(dir, opts.mountProgram ?? STRATAFS_BIN);
  const tool =
    (cmd: string) =>
    (args: readonly string[], o: RunOptions = {}) =>
      run(cmd, args, { timeoutMs: TOOL_TIMEOUT_MS, ...o, env: { ...env, ...o.env } });
  const toolOk =
    (cmd: string) =>
    (args: readonly string[], o: RunOptions = {}) =>
      runOk(cmd, args, { timeoutMs: TOOL_TIMEOUT_MS, ...o, env: { ...env, ...o.env } });
  const mounts = () => mountsBelow(dir);
  let cleaned: Promise<void> | undefined;
  const clean = () =>
    (cleaned ??= (async () => {
      await tool('buildah')(['rm', '--all']);
      await tool('podman')(['rm', '--all', '--force', '--time', '0']);
      await tool('podman')(['image', 'unmount', '--all', '--force']);
      await tool('podman')(['rmi', '--all', '--force']);
    })());
  t.teardown(clean);
  return {
    dir,
    graphroot: join(dir, 'root'),
    env,
    podman: tool('podman'),
    podmanOk: toolOk('podman'),
    buildah: tool('buildah'),
    buildahOk: toolOk('buildah'),
    mounts,
    clean,
  };
}

/** Mount points below DIR whose fs type is FSTYPE (or any type). */
export async function mountsBelow(dir: string, fstype?: string): Promise<string[]> {
  return [...(await mountTable()).entries()].filter(([m, type]) => m.startsWith(`${dir}/`) && (fstype === undefined || type === fstype)).map(([m]) => m);
}

/** Rlimits for runc bundles: the same low limits as CONTAINER_ULIMITS. */
const RUNC_RLIMITS = [
  { type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 },
  { type: 'RLIMIT_NPROC', hard: 1024, soft: 1024 },
];

/**
 * An OCI bundle in BUNDLE (made by `runc spec`, then edited): root.path = ROOTFS
 * (writable), no terminal, ARGS as the process, the default namespaces (network
 * included), no hooks, low rlimits.
 */
export async function runcBundle(bundle: string, rootfs: string, args: readonly string[]): Promise<string> {
  await mkdir(bundle, { recursive: true });
  await runOk('runc', ['spec', '--bundle', bundle], { timeoutMs: 30_000 });
  const file = join(bundle, 'config.json');
  const spec = JSON.parse(await readFile(file, 'utf8')) as RuntimeSpec;
  spec.root = { path: rootfs, readonly: false };
  spec.process.terminal = false;
  spec.process.args = [...args];
  spec.process.rlimits = RUNC_RLIMITS;
  delete spec.hooks;
  await writeFile(file, JSON.stringify(spec, null, 2));
  return bundle;
}

/** The parts of an OCI runtime spec (config.json) runcBundle edits. */
interface RuntimeSpec {
  root: { path: string; readonly: boolean };
  process: { terminal: boolean; args: string[]; rlimits: { type: string; hard: number; soft: number }[] };
  hooks?: unknown;
}

/**
 * mount --bind SRC DST (or, with fstype, `mount -t FSTYPE FSTYPE DST`), as a container
 * runtime puts /dev, /proc and volumes into a rootfs; unmounted in teardown (and by the
 * returned function, idempotent).
 */
export async function hostMount(t: Teardown, dst: string, src: string | { fstype: string }): Promise<() => Promise<void>> {
  const args = typeof src === 'string' ? ['--bind', src, dst] : ['-t', src.fstype, src.fstype, dst];
  await runOk('mount', args, { timeoutMs: 30_000 });
  let done: Promise<void> | undefined;
  const unmount = () =>
    (done ??= (async () => {
      if ((await mountTable()).has(dst)) await runOk('umount', [dst], { timeoutMs: 30_000 });
    })());
  t.teardown(unmount);
  return unmount;
}

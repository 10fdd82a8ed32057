// Mount helpers shared by the tests that mount for real: kernel overlayfs (the oracle)
// and stratafs. All mount and unmount work runs in child processes; the test process
// never touches the mounted tree itself (see test/differential/agent.mjs).
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { plainExec, run } from './proc';

/** A mounted overlay. unmount() is idempotent and never throws for "not mounted". */
export interface Mounted {
  readonly mnt: string;
  readonly target: TargetName;
  /** The options string handed to mount(8) or to stratafs (for reports). */
  readonly options: string;
  unmount(): Promise<void>;
}

export type TargetName = 'kernel' | 'stratafs';

export interface OverlaySpec {
  /** Lower layer directories, top first (like overlayfs lowerdir=). */
  lowers: readonly string[];
  upper?: string;
  work?: string;
  mnt: string;
  /**
   * Feature options. For the kernel they replace KERNEL_DEFAULT_OPTIONS; for stratafs they
   * are appended to the layer options as given.
   */
  options?: readonly string[];
}

export interface StratafsSpec extends OverlaySpec {
  /** Options appended verbatim (e.g. from STRATAFS_DIFF_STRATAFS_OPTS). */
  extraOptions?: readonly string[];
}

/**
 * The oracle's feature set (DESIGN.md, "The oracle"): directory renames write
 * trusted.overlay.redirect; index keeps lower hard links intact across copy-up.
 * Callers that compare hard-link behaviour with stratafs pass index=off instead.
 */
export const KERNEL_DEFAULT_OPTIONS: readonly string[] = ['redirect_dir=on', 'index=on'];

export const REPO_ROOT = resolve(__dirname, '..', '..');
/** The stratafs executable (override with STRATAFS_BIN). */
export const STRATAFS_BIN = process.env.STRATAFS_BIN ?? resolve(REPO_ROOT, 'bin', 'stratafs');
/** How long stratafs may take to mount and detach. */
const STRATAFS_MOUNT_TIMEOUT_MS = 30_000;

function layerOptions(spec: OverlaySpec): string[] {
  const opts = [`lowerdir=${spec.lowers.join(':')}`];
  if (spec.upper !== undefined) {
    if (spec.work === undefined) throw new Error('an upper layer needs a work directory');
    opts.push(`upperdir=${spec.upper}`, `workdir=${spec.work}`);
  }
  return opts;
}

/** Mount points currently listed in /proc/self/mountinfo, with their fs type. */
export async function mountTable(): Promise<Map<string, string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const table = new Map<string, string>();
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    if (sep < 0) continue;
    // Mount points escape space, tab, newline and backslash as \ooo.
    const mnt = fields[4].replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    table.set(mnt, fields[sep + 1]);
  }
  return table;
}

export async function isMounted(mnt: string): Promise<boolean> {
  return (await mountTable()).has(resolve(mnt));
}

function makeUnmount(mnt: string, fuse: boolean): () => Promise<void> {
  let done: Promise<void> | undefined;
  const attempt = async (): Promise<void> => {
    const tries: [string, string[]][] = [
      ...(fuse ? ([['fusermount3', ['-u', mnt]]] as [string, string[]][]) : []),
      ['umount', [mnt]],
      // A stale FUSE mount (daemon gone: ENOTCONN) or a busy one: detach it at least.
      ['umount', ['-l', mnt]],
    ];
    const errors: string[] = [];
    for (const [cmd, args] of tries) {
      if (!(await isMounted(mnt))) return;
      const r = await run(cmd, args, { timeoutMs: 20_000 });
      if (r.code !== 0) errors.push(`${cmd} ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
    }
    if (await isMounted(mnt)) throw new Error(`could not unmount ${mnt}:\n${errors.join('\n')}`);
  };
  return () => (done ??= attempt());
}

/** mount -t overlay with KERNEL_DEFAULT_OPTIONS (or spec.options). */
export async function mountKernelOverlay(spec: OverlaySpec): Promise<Mounted> {
  const options = [...layerOptions(spec), ...(spec.options ?? KERNEL_DEFAULT_OPTIONS)].join(',');
  const r = await run('mount', ['-t', 'overlay', 'overlay', '-o', options, spec.mnt], { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`mount -t overlay -o ${options} ${spec.mnt} failed: ${r.stderr.trim()}`);
  return { mnt: spec.mnt, target: 'kernel', options, unmount: makeUnmount(spec.mnt, false) };
}

/**
 * Run `stratafs -o OPTS MNT`, which must exit 0 once the mount is ready (the daemon
 * detaches). Its stdout and stderr go to MNT.log (next to the mount point), not to a
 * pipe: the detached daemon may keep them and write later, and a pipe whose reader is
 * gone would turn its logging into EPIPE errors. We wait for the process to exit.
 */
export async function mountStratafs(spec: StratafsSpec): Promise<Mounted> {
  const options = [...layerOptions(spec), ...(spec.options ?? []), ...(spec.extraOptions ?? [])].join(',');
  const unmount = makeUnmount(spec.mnt, true);
  const log = `${resolve(spec.mnt)}.log`;
  const logFd = openSync(log, 'a');
  const [cmd, args] = plainExec([STRATAFS_BIN, '-o', options, spec.mnt]);
  let child;
  try {
    child = spawn(cmd, args, { stdio: ['ignore', logFd, logFd] });
  } finally {
    closeSync(logFd);
  }
  const exit = await new Promise<{ code: number | null; signal: string | null; error?: Error }>((done) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      done({ code: null, signal: 'timeout', error: new Error(`no exit within ${STRATAFS_MOUNT_TIMEOUT_MS} ms`) });
    }, STRATAFS_MOUNT_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      done({ code: null, signal: null, error });
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      done({ code, signal });
    });
  });
  const mounted = await isMounted(spec.mnt);
  if (exit.code !== 0 || !mounted) {
    await unmount().catch(() => undefined);
    const why = exit.error?.message ?? (exit.code !== 0 ? `exit ${exit.code ?? exit.signal}` : 'exit 0 but nothing mounted');
    const output = await readFile(log, 'utf8').catch(() => '');
    throw new Error(`stratafs -o ${options} ${spec.mnt}: ${why}\n${log}:\n${output.trim().slice(-4000)}`);
  }
  return { mnt: spec.mnt, target: 'stratafs', options, unmount };
}

/** `fuse-overlayfs -o LAYERS[,OPTIONS] MNT` (the reference for its own options; it detaches). */
export async function mountFuseOverlayfs(spec: OverlaySpec): Promise<Omit<Mounted, 'target'>> {
  const options = [...layerOptions(spec), ...(spec.options ?? [])].join(',');
  const unmount = makeUnmount(spec.mnt, true);
  const r = await run('fuse-overlayfs', ['-o', options, spec.mnt], { timeoutMs: STRATAFS_MOUNT_TIMEOUT_MS });
  if (r.code !== 0 || !(await isMounted(spec.mnt))) {
    await unmount().catch(() => undefined);
    throw new Error(`fuse-overlayfs -o ${options} ${spec.mnt}: exit ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  }
  return { mnt: spec.mnt, options, unmount };
}

/**
 * The graph driver: a LayerStore on disk plus the mounts of the layers in use, all served
 * by this process's MountServer (no process per container).
 *
 * Get/Put nest: the first Get of a layer mounts its chain on HOME/ID/merged, later Gets
 * only count; the Put that brings the count to zero unmounts. Operations on one layer
 * run one at a time (`locks`: a promise chain per ID guards `refs` of that ID and the
 * layer's dirs), so a Get never races the unmount of a Put, nor a Remove.
 *
 * The driver reads and writes layer dirs directly, never through a merged dir it serves.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import createDebug from 'debug';
import { MountServer } from '../server/mount-server';
import { DEFAULT_TIMEOUT } from '../mount/spec';
import { LayerStore, checkId, pluginError } from './store';
import { importTar, type ImportResult } from './tar-import';
import { exportTar } from './tar-export';
import { changes, type ChangesResult } from './changes';
import { LayerStack } from '../layers';

const log = createDebug('stratafs:graphdriver:driver');

export interface DriverOptions {
  /** progress of long ApplyDiff imports */
  onProgress?: (id: string, bytes: number, entries: number) => void;
  onImported?: (id: string, result: ImportResult) => void;
  /** something an import skipped (an xattr the filesystem refused) */
  onWarning?: (id: string, message: string) => void;
  /** after each Init from dockerd, with the Home it set (to remember it across restarts) */
  onInit?: (home: string) => void;
}

/** the real path of `p` if it exists, else `p` resolved */
function canonical(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

export class Driver {
  private storeState: LayerStore | undefined;
  /** set by dockerd's Init: the Home can no longer change */
  private initialised = false;
  private readonly refs = new Map<string, number>();
  private readonly locks = new Map<string, Promise<unknown>>();
  readonly xattrPrefix = process.getuid?.() === 0 ? 'trusted.overlay.' : 'user.overlay.';

  constructor(readonly server: MountServer, private readonly opts: DriverOptions = {}) {}

  get store(): LayerStore {
    if (!this.storeState) throw pluginError('the driver is not initialised (GraphDriver.Init first)');
    return this.storeState;
  }

  /**
   * Opens the layer store at `home`. dockerd's Init (`from: 'init'`) fixes it for the
   * life of the process: Init again with the same Home is fine (dockerd restarted), with
   * another it is refused. A Home opened at start (`--home`, or the one remembered from
   * the last Init: `from: 'start'`) may still be replaced by dockerd's first Init, as long
   * as no layer of it is mounted.
   */
  init(home: string, from: 'init' | 'start' = 'init'): void {
    if (typeof home !== 'string' || !home.startsWith('/')) throw pluginError(`Init needs an absolute Home, got ${JSON.stringify(home)}`);
    const wanted = canonical(home);
    const current = this.storeState?.home;
    if (current !== undefined && current !== wanted) {
      if (this.initialised) {
        throw pluginError(`Init: this plugin serves Home ${current}; another Home (${wanted}) is refused (restart the plugin to change it)`);
      }
      if (this.server.size > 0 || this.refs.size > 0) {
        throw pluginError(`Init: layers of ${current} are mounted; another Home (${wanted}) is refused`);
      }
    }
    if (current !== wanted) {
      fs.mkdirSync(wanted, { recursive: true, mode: 0o700 });
      this.storeState = new LayerStore(canonical(wanted));
      log('home %s: %d layers', wanted, this.storeState.list().length);
    }
    if (from === 'init') {
      this.initialised = true;
      this.opts.onInit?.(this.store.home);
    }
  }

  private locked<T>(id: string, fn: () => Promise<T> | T): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return next;
  }

  create(id: string, parent: string | undefined): Promise<void> {
    checkId(id);
    return this.locked(id, () => this.store.create(id, parent === '' ? undefined : parent));
  }

  exists(id: string): boolean {
    return this.store.exists(checkId(id));
  }

  remove(id: string): Promise<void> {
    checkId(id);
    return this.locked(id, async () => {
      if (this.server.has(this.store.merged(id))) {
        log('remove %s while mounted (%d refs): unmounting', id, this.refs.get(id) ?? 0);
        await this.server.unmount(this.store.merged(id));
      }
      this.refs.delete(id);
      this.store.remove(id);
    });
  }

  get(id: string): Promise<string> {
    checkId(id);
    return this.locked(id, async () => {
      const store = this.store;
      store.need(id);
      const merged = store.merged(id);
      const n = this.refs.get(id) ?? 0;
      if (n > 0 && this.server.has(merged)) {
        this.refs.set(id, n + 1);
        return merged;
      }
      const lowers = store.lowers(id);
      if (!this.server.has(merged)) {
        const stale = store.detach(id);
        if (stale > 0) log('get %s: detached %d stale mount(s) of an earlier process', id, stale);
      }
      await this.server.mount({
        lowerdirs: lowers.length > 0 ? lowers : [store.empty],
        upperdir: store.diff(id),
        workdir: store.work(id),
        mountpoint: merged,
        readOnly: false,
        volatile: false,
        timeout: DEFAULT_TIMEOUT,
        passthrough: 'auto',
        acl: true,
        metacopy: false,
      });
      this.refs.set(id, 1);
      log('get %s: mounted %s over %d layers', id, merged, lowers.length);
      return merged;
    });
  }

  put(id: string): Promise<void> {
    checkId(id);
    return this.locked(id, async () => {
      const n = this.refs.get(id) ?? 0;
      if (n > 1) {
        this.refs.set(id, n - 1);
        return;
      }
      this.refs.delete(id);
      const merged = this.store.merged(id);
      if (this.server.has(merged)) {
        await this.server.unmount(merged);
        log('put %s: unmounted', id);
      }
    });
  }

  /** references held by Get, for Status and tests */
  refCount(id: string): number {
    return this.refs.get(id) ?? 0;
  }

  status(): [string, string][] {
    const store = this.store;
    return [
      ['Home', store.home],
      ['Layers', String(store.list().length)],
      ['Mounts served by this process', String(this.server.size)],
      ['Xattr namespace', this.xattrPrefix],
    ];
  }

  metadata(id: string): Record<string, string> {
    const store = this.store;
    store.need(checkId(id));
    return {
      LowerDir: store.lowers(id).join(':'),
      UpperDir: store.diff(id),
      WorkDir: store.work(id),
      MergedDir: store.merged(id),
    };
  }

  /** Unmounts everything this process serves (dockerd calls it on shutdown). */
  async cleanup(): Promise<void> {
    this.refs.clear();
    await this.server.closeAll();
  }

  /** The layer over its parent chain, opened for one walk (src/layers). */
  private stack(id: string): LayerStack {
    const store = this.store;
    store.need(checkId(id));
    return LayerStack.open(store.diff(id), store.lowers(id), this.xattrPrefix);
  }

  diff(id: string): Readable {
    return exportTar(this.stack(id)) as unknown as Readable;
  }

  private async compare(id: string): Promise<ChangesResult> {
    const stack = this.stack(id);
    try {
      return await changes(stack);
    } finally {
      stack.close();
    }
  }

  async changes(id: string): Promise<ChangesResult['changes']> {
    return (await this.compare(id)).changes;
  }

  /** What Diff exports, in bytes of file data (Docker's ChangesSize). */
  async diffSize(id: string): Promise<number> {
    return (await this.compare(id)).size;
  }

  applyDiff(id: string, body: Readable): Promise<number> {
    checkId(id);
    return this.locked(id, async () => {
      this.store.need(id);
      const result = await importTar(body, this.store.diff(id), {
        xattrPrefix: this.xattrPrefix,
        onProgress: this.opts.onProgress && ((b, e) => this.opts.onProgress?.(id, b, e)),
        onWarning: (m) => this.opts.onWarning?.(id, m),
      });
      this.opts.onImported?.(id, result);
      log('applydiff %s: %d entries, %d bytes', id, result.entries, result.size);
      return result.size;
    });
  }
}

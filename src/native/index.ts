/**
 * Loads the native addon. The only module that touches `addon.d.ts`; everything else
 * imports `native` (and `C`, its constants) from here.
 *
 * Tries build/Release then build/Debug and, if none loads, throws one error that lists
 * every attempt, so a broken build is diagnosed from a single message.
 */
import * as path from 'node:path';
import type { Addon, NativeConstants, NativeError } from './addon';

export type { CopyUpFileOptions, CopyUpFileResult, Stat, StatFs, DirEntry, NativeError } from './addon';

function load(): Addon {
  // dist/src/native/index.js or src/native/index.ts: the package root is three or two up
  const roots = [path.resolve(__dirname, '..', '..'), path.resolve(__dirname, '..', '..', '..')];
  const failures: string[] = [];
  for (const root of roots) {
    for (const flavour of ['Release', 'Debug']) {
      const file = path.join(root, 'native-bindings', 'build', flavour, 'stratafs.node');
      try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        return require(file) as Addon;
      } catch (e) {
        failures.push(`${file}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }
  const err = new Error(
    `stratafs: cannot load the native addon (run \`npm ci\` to build it):\n  ${failures.join('\n  ')}`,
  );
  (err as Error & { code: string }).code = 'STRATAFS_ERR_ADDON';
  throw err;
}

export const native: Addon = load();
export const C: NativeConstants = native.constants;

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as NativeError).errno === 'number' && typeof (e as NativeError).code === 'string';
}

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
  // the package root is three up from dist/src/native/index.js and from the start-up
  // bundle (dist/src/cli), two up from src/native/index.ts. The layout this code runs
  // from is tried first: a missing path costs require a lookup per extension and an
  // error, at every mount
  const twoUp = path.resolve(__dirname, '..', '..');
  const threeUp = path.resolve(twoUp, '..');
  const roots = path.basename(twoUp) === 'dist' ? [threeUp, twoUp] : [twoUp, threeUp];
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

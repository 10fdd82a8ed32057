/**
 * Tar member names: how an archive names a path in a layer, and the error a bad one is.
 * Names are byte strings (src/layers/index.ts): each JS char is one byte.
 */
import { StratafsError } from '../errors';

export const tarError = (msg: string): StratafsError => new StratafsError('STRATAFS_ERR_TAR', msg);

/** A byte string shown to a person. */
export const shown = (b: string): string => Buffer.from(b, 'latin1').toString('utf8');

/**
 * Splits an archive member name into its components: leading `/` and `./` go, `.` and
 * empty components are dropped, `..` is refused. [] is the root itself.
 */
export function components(name: string): string[] {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw tarError(`tar entry "${shown(name)}" leaves the layer (..)`);
  return parts;
}

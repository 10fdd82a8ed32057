/**
 * What every subcommand's parser shares (`stratafs daemon`, `graphdriver`, `snapshotter`):
 * the usage error, `-h`/`--help`, `-d`/`--debug`, and flags that take the next argument
 * as their value (never empty). The mount command line has its own parser
 * (src/mount/options.ts): it follows fuse-overlayfs's `-o` conventions instead.
 */
import { StratafsError } from '../errors';

export const usage = (msg: string): StratafsError => new StratafsError('STRATAFS_ERR_USAGE', msg);

/** Handles `flag` (taking its value with `value()` if it has one); false: not a flag of this command. */
export type FlagHandler = (flag: string, value: () => string) => boolean;

/**
 * Walks `argv`, giving every flag but help and debug to `onFlag`. Returns 'help' when
 * help was asked for, else whether debug was.
 */
export function walkArgs(argv: string[], command: string, onFlag: FlagHandler): { debug: boolean } | 'help' {
  let debug = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined || v === '') throw usage(`${a} needs a value`);
      return v;
    };
    if (a === '-h' || a === '--help') return 'help';
    if (a === '-d' || a === '--debug') debug = true;
    else if (!onFlag(a, value)) throw usage(`unknown argument "${a}" (see stratafs ${command} --help)`);
  }
  return { debug };
}

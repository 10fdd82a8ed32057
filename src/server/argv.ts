/**
 * The `mount-argv` request: a mount program's command line, exactly as a container tool
 * gave it to the caller (the small C client, native-bindings/src/client.c, which
 * bin/stratafs runs for `-o server=PATH,...` so that a mount starts no Node.js).
 *
 * Strings of this request carry one byte per character (U+0000-U+00FF): argv bytes need
 * not be UTF-8, and this way they arrive exactly. They are decoded here: valid UTF-8
 * becomes the string the CLI would have seen; anything else is refused (a path that is
 * not UTF-8 cannot be named through Node's fs without changing it).
 *
 * The argv is parsed by the CLI's own parser (src/mount/options.ts), relative paths against the caller's cwd
 * (podman runs its mount program in the storage home with `l/ID` lowerdir entries).
 */
import { StratafsError } from '../errors';
import { parseArgs } from '../mount/options';
import { checkSpec, type MountSpec } from '../mount/spec';

const utf8 = new TextDecoder('utf-8', { fatal: true });

const usage = (msg: string): StratafsError => new StratafsError('STRATAFS_ERR_USAGE', msg);

/** One request string (one byte per character) back to the text it encodes. */
export function decodeBytes(s: string, what: string): string {
  const bytes = Buffer.alloc(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new StratafsError('STRATAFS_ERR_SERVER', `bad request: ${what} has a character above U+00FF (one byte per character expected)`);
    bytes[i] = c;
  }
  try {
    return utf8.decode(bytes);
  } catch {
    const shown = [...bytes].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join('');
    throw usage(`${what} is not valid UTF-8: "${shown}"`);
  }
}

/**
 * The mount an argv asks for. Errors in the command line are STRATAFS_ERR_USAGE or
 * STRATAFS_ERR_OPTION (the caller exits 2); an argv that is not a mount (--help,
 * --version, -f, -d) is refused: the daemon serves mounts, nothing else.
 */
export function mountFromArgv(argv: string[], cwd: string): MountSpec {
  const args = argv.map((a, i) => decodeBytes(a, `argument ${i + 1}`));
  const dir = decodeBytes(cwd, 'cwd');
  if (!dir.startsWith('/') || dir.includes('\0')) throw new StratafsError('STRATAFS_ERR_SERVER', 'bad request: cwd must be an absolute path');
  const command = parseArgs(args, dir);
  if (command.kind !== 'mount') throw usage(`--${command.kind} is not a mount request (run stratafs --${command.kind} without server=)`);
  const o = command.options;
  if (o.foreground || o.debug) throw usage('-f and -d keep a mount in the foreground: not with server= (run the daemon with -d instead)');
  return checkSpec(o);
}

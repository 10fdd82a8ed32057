/**
 * The verdict of a mount request: one protocol for every way a mount is asked for.
 *
 *   verdict          exit status   meaning
 *   ready [notice]   0             mounted (a notice is printed first, e.g. a stale
 *                                  mountpoint was cleared)
 *   error TEXT       1             the mount failed, or no daemon answered
 *   usage TEXT       2             the command line is wrong (STRATAFS_ERR_USAGE/OPTION)
 *
 * It travels in two encodings, both made and read from here:
 * - launcher lines (the detached daemon to bin/stratafs on fd 3, src/cli/detach.ts):
 *   "notice TEXT", then "ready" | "error TEXT" | "usage TEXT";
 * - the daemon's socket reply (src/server/protocol.ts): {"ok":true,"notice"?:TEXT} |
 *   {"ok":false,"error":TEXT} | {"ok":false,"error":TEXT,"usage":true}.
 * The C client (native-bindings/src/client.c) reads the reply into the same exit
 * statuses; bin/stratafs reads the lines. Every TEXT is one line, printed as
 * "stratafs: TEXT" on stderr.
 */
export type Verdict =
  | { kind: 'ready'; notice?: string }
  | { kind: 'error'; text: string }
  | { kind: 'usage'; text: string };

export const EXIT_STATUS: Readonly<Record<Verdict['kind'], number>> = { ready: 0, error: 1, usage: 2 };

/** The socket reply's verdict fields. */
export type VerdictReply = { ok: true; notice?: string } | { ok: false; error: string; usage?: true };

const oneLine = (s: string): string => s.split('\n')[0] ?? '';

/** The verdict on a request that threw `e`: usage for a wrong command line, else error. */
export function verdictOfError(e: unknown): Verdict {
  const text = oneLine(e instanceof Error ? e.message : String(e));
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'STRATAFS_ERR_USAGE' || code === 'STRATAFS_ERR_OPTION' ? { kind: 'usage', text } : { kind: 'error', text };
}

export function toReply(v: Verdict): VerdictReply {
  if (v.kind === 'ready') return v.notice ? { ok: true, notice: v.notice } : { ok: true };
  return v.kind === 'usage' ? { ok: false, error: v.text, usage: true } : { ok: false, error: v.text };
}

export function fromReply(r: VerdictReply): Verdict {
  if (r.ok) return r.notice ? { kind: 'ready', notice: r.notice } : { kind: 'ready' };
  return r.usage === true ? { kind: 'usage', text: r.error } : { kind: 'error', text: r.error };
}

/** The launcher lines of a verdict (the last one ends the exchange). */
export function toLines(v: Verdict): string[] {
  const flat = (s: string): string => s.replace(/\n/g, ' ');
  if (v.kind === 'ready') return [...(v.notice ? [`notice ${flat(v.notice)}`] : []), 'ready'];
  return [`${v.kind} ${flat(v.text)}`];
}

// What the soak reads of the daemon's memory and fds, from outside (/proc) and from the
// daemon's own SIGUSR2 stats line (process.memoryUsage() after a full collection).
import * as fs from 'node:fs';

const mib = (kib) => Math.round(kib / 102.4) / 10;

/**
 * RSS split by kind (/proc/PID/status, KiB -> MiB): anon is the heaps (V8's, malloc's,
 * thread stacks), file the mapped code and data of node and the addon, which the kernel
 * counts while those pages are mapped and resident; fds is the open fd count.
 */
export function sample(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return {
    rssMiB: mib(kib('VmRSS')),
    anonMiB: mib(kib('RssAnon')),
    fileMiB: mib(kib('RssFile') + kib('RssShmem')),
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
  };
}

/**
 * The daemon's anonymous resident memory by region (/proc/PID/smaps): the brk heap
 * (main-thread malloc), 64 MiB-aligned malloc arenas of other threads are not told
 * apart from V8's pages, so only the split brk / other anonymous / stacks is given.
 */
export function anonRegions(pid) {
  const out = { brkMiB: 0, otherAnonMiB: 0, stackMiB: 0 };
  let kind = null;
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (head) {
      const name = head[2];
      if (name === '[heap]') kind = 'brkMiB';
      else if (name.startsWith('[stack')) kind = 'stackMiB';
      else if (name === '' && head[1] === '0') kind = 'otherAnonMiB';
      else kind = null;
      continue;
    }
    const anon = /^Anonymous:\s+(\d+) kB/.exec(line);
    if (anon && kind) out[kind] += Number(anon[1]);
  }
  for (const k of Object.keys(out)) out[k] = mib(out[k]);
  return out;
}

/** Asks the daemon for its stats line (SIGUSR2) and reads it from its log. */
export async function daemonStats(pid, log) {
  const before = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('stratafs: stats ')).length;
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const lines = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('stratafs: stats '));
    if (lines.length > before) return JSON.parse(lines.at(-1).slice('stratafs: stats '.length));
  }
  throw new Error('the daemon did not answer SIGUSR2 with a stats line');
}

/** One line of a memory report. */
export function describe(label, s, st, regions) {
  const parts = [`RSS ${s.rssMiB} MiB (anon ${s.anonMiB}, file ${s.fileMiB})`];
  if (regions) parts.push(`anon by region: brk heap ${regions.brkMiB}, other ${regions.otherAnonMiB}, stacks ${regions.stackMiB}`);
  if (st) {
    parts.push(`V8 heap used ${st.heapUsedMiB} of ${st.heapTotalMiB ?? '?'} MiB, external ${st.externalMiB ?? '?'} (array buffers ${st.arrayBuffersMiB ?? '?'})`);
    parts.push(`${st.nodes} nodes`);
  }
  parts.push(`${s.fds} fds`);
  return `  ${label}: ${parts.join('; ')}`;
}

// Differential scenarios for POSIX details a plain op list cannot express: 64-bit sizes
// and offsets past what a double holds, fds held across a rename over their name. Each
// is a probe (test/differential/probes.py) run on both targets; its value is compared.
import type { Scenario } from './scenarios';

const INT64_PROBES: Scenario['ops'] = [
  { op: 'probe', name: 'int64-truncate' },
  { op: 'probe', name: 'int64-read' },
  { op: 'probe', name: 'int64-lseek' },
  // known difference (known-differences.ts): FUSE answers these in the kernel
  { op: 'probe', name: 'int64-lseek-past-maxbytes' },
  { op: 'probe', name: 'int64-fallocate' },
  { op: 'probe', name: 'int64-copy-file-range' },
];

export const POSIX_SCENARIOS: Scenario[] = [
  {
    name: '64-bit sizes and offsets: truncate, read, write, lseek, fallocate, copy_file_range',
    why: 'edges 2^53±1, 2^62, 2^63−1 and −1: exact values or the kernel\'s errno, never EIO (passthrough when root)',
    ops: [...INT64_PROBES, { op: 'probe', name: 'int64-write' }],
  },
  {
    name: '64-bit sizes and offsets on the daemon data path',
    stratafsOptions: ['passthrough=off'],
    why: 'the same edges through the daemon\'s own read/truncate/fallocate/copy_file_range',
    // Not int64-write: with the writeback cache (every daemon-path mount) the kernel
    // takes a write past the upper filesystem's largest file size into its cache and
    // only the write-back fails (README, "Where stratafs differs"; the writeback-cache
    // decision of the full-disk item in issue 10 settles it).
    ops: INT64_PROBES,
  },
  {
    name: 'rename over a name another fd holds open',
    why: 'the open fd keeps answering fstat through its handle (nlink 0), not through the name',
    ops: [
      { op: 'probe', name: 'rename-over-open', args: { kind: 'dir', from: 'play/new-dir-a', to: 'play/new-dir-b' } },
      { op: 'probe', name: 'rename-over-open', args: { kind: 'dir', from: 'play/lower-dir-a', to: 'play/d2' , createTo: false } },
      { op: 'probe', name: 'rename-over-open', args: { kind: 'file', from: 'play/new-file-a', to: 'play/new-file-b' } },
      { op: 'probe', name: 'rename-over-open', args: { kind: 'file', from: 'play/lower-file-a', to: 'play/f1', createTo: false } },
      { op: 'readdir', path: 'play' },
    ],
  },
];

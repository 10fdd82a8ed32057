// Differential scenarios for POSIX details a plain op list cannot express: 64-bit sizes
// and offsets past what a double holds, fds held across a rename over their name. Each
// is a probe (test/differential/probes.py) run on both targets; its value is compared.
import { KERNEL_OPTIONS } from './harness';
import type { Scenario } from './scenarios';

/** The same mount flags to both targets. */
const withFlags = (...flags: string[]): Pick<Scenario, 'kernelOptions' | 'stratafsOptions'> => ({
  kernelOptions: [...KERNEL_OPTIONS, ...flags],
  stratafsOptions: flags,
});

const INT64_PROBES: Scenario['ops'] = [
  { op: 'probe', name: 'int64-truncate' },
  { op: 'probe', name: 'int64-read' },
  { op: 'probe', name: 'int64-lseek' },
  // known difference (known-differences.ts): FUSE answers these in the kernel
  { op: 'probe', name: 'int64-lseek-past-maxbytes' },
  { op: 'probe', name: 'int64-fallocate' },
  { op: 'probe', name: 'int64-copy-file-range' },
];

/** Set-id modes for the clearing probe; 02767 is issue 10's (setgid without group-exec). */
const SETID_ARGS = { modes: ['4777', '2777', '2767', '6777', '6767'], acl: true, lower: ['play/f1'] };

/** Directories and files, new and from a lower, replaced by a rename while open. */
const RENAME_OVER_OPEN: Scenario['ops'] = [
  { op: 'probe', name: 'rename-over-open', args: { kind: 'dir', from: 'play/new-dir-a', to: 'play/new-dir-b' } },
  { op: 'probe', name: 'rename-over-open', args: { kind: 'dir', from: 'play/lower-dir-a', to: 'play/d2', createTo: false } },
  { op: 'probe', name: 'rename-over-open', args: { kind: 'file', from: 'play/new-file-a', to: 'play/new-file-b' } },
  { op: 'probe', name: 'rename-over-open', args: { kind: 'file', from: 'play/lower-file-a', to: 'play/f1', createTo: false } },
  { op: 'readdir', path: 'play' },
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
    why: 'the same edges through the daemon\'s own read/write/truncate/fallocate/copy_file_range',
    ops: [...INT64_PROBES, { op: 'probe', name: 'int64-write' }],
  },
  {
    name: 'rename over a name another fd holds open',
    why: 'the open fd keeps answering fstat through its handle (nlink 0), not through the name',
    ops: RENAME_OVER_OPEN,
  },
  {
    name: 'rename over a name another fd holds open, on the daemon data path',
    stratafsOptions: ['passthrough=off'],
    why: 'the same when the daemon serves the data (no passthrough backing file)',
    ops: RENAME_OVER_OPEN,
  },
  {
    name: 'mount flags nosuid,nodev,noatime,nodiratime',
    ...withFlags('nosuid', 'nodev', 'noatime', 'nodiratime'),
    why: 'the flags asked for are the mount\'s: a setuid program keeps its caller\'s uid, devices do not open, exec and read keep atimes',
    ops: [
      { op: 'probe', name: 'mount-flags' },
      { op: 'probe', name: 'setuid-exec' },
      { op: 'probe', name: 'device-open' },
      { op: 'probe', name: 'exec-atime' },
      { op: 'probe', name: 'exec-lower', args: { path: 'bin/hello' } },
    ],
  },
  {
    name: 'mount flag noatime on the daemon data path',
    kernelOptions: [...KERNEL_OPTIONS, 'noatime'],
    stratafsOptions: ['noatime', 'passthrough=off'],
    why: 'exec and read through the daemon keep atimes too (O_NOATIME)',
    ops: [{ op: 'probe', name: 'exec-atime' }],
  },
  {
    name: 'mount flags suid,dev,strictatime',
    ...withFlags('suid', 'dev', 'strictatime'),
    why: 'setuid programs run with their owner\'s uid and root opens device nodes made in the mount',
    ops: [
      { op: 'probe', name: 'mount-flags' },
      { op: 'probe', name: 'setuid-exec' },
      { op: 'probe', name: 'device-open' },
      { op: 'probe', name: 'exec-lower', args: { path: 'bin/hello' } },
    ],
  },
  {
    name: 'mount flags noexec,relatime,dev',
    ...withFlags('noexec', 'relatime', 'dev'),
    why: 'nothing executes from a noexec mount',
    ops: [
      { op: 'probe', name: 'mount-flags' },
      { op: 'probe', name: 'exec-lower', args: { path: 'bin/hello' } },
      { op: 'probe', name: 'setuid-exec' },
    ],
  },
  {
    name: 'mount flags ro,relatime,dev with an upper layer',
    ...withFlags('ro', 'relatime', 'dev'),
    why: 'ro with upperdir and workdir: a read-only mount, the upper untouched',
    ops: [
      { op: 'probe', name: 'mount-flags' },
      { op: 'create', path: 'play/new', data: 'x' },
      { op: 'write', path: 'play/f1', offset: 0, data: 'x' },
      { op: 'read', path: 'play/f1' },
    ],
  },
  {
    name: 'set-id bits cleared by writes, truncates and chmod of others (passthrough when root)',
    why: 'HANDLE_KILLPRIV_V2: write, truncate, fallocate by another user clear S_ISUID, and S_ISGID with group-exec; chmod by a non-member clears S_ISGID',
    ops: [{ op: 'probe', name: 'setid-clearing', args: SETID_ARGS }],
  },
  {
    name: 'set-id bits cleared on the daemon data path',
    stratafsOptions: ['passthrough=off'],
    why: 'the same through the daemon\'s own writes',
    ops: [{ op: 'probe', name: 'setid-clearing', args: SETID_ARGS }],
  },
  {
    name: 'mtime and ctime after a store through a shared mapping (passthrough when root)',
    why: 'mmap + store + msync/munmap changes the file: its times move, as on kernel overlayfs',
    ops: [
      { op: 'probe', name: 'mmap-times', args: { lower: ['data/big'] } },
      { op: 'probe', name: 'mmap-times', args: { lower: ['etc/issue'], msync: false } },
    ],
  },
  {
    name: 'mtime and ctime after a store through a shared mapping on the daemon data path',
    stratafsOptions: ['passthrough=off'],
    why: 'the same through the daemon (times move when msync or munmap bring the data to it)',
    // atStore false: without the writeback cache the FUSE kernel moves no time at the
    // first store into a shared mapping, only when the data reaches the daemon (README,
    // "Where stratafs differs"); after msync/munmap the times are the kernel's
    ops: [
      { op: 'probe', name: 'mmap-times', args: { lower: ['data/big'], atStore: false } },
      { op: 'probe', name: 'mmap-times', args: { lower: ['etc/issue'], msync: false, atStore: false } },
    ],
  },
  {
    name: 'mount -o remount: ro, rw and the mount flags change; the others stay',
    ...withFlags('nosuid', 'nodev', 'relatime'),
    why: 'a remount must not fail silently: stratafs applies it as mount.fuse hands it over',
    ops: [{ op: 'probe', name: 'remount', args: { steps: ['ro', 'rw', 'noexec,noatime', 'exec', 'strictatime', 'ro,nodiratime', 'rw'] } }],
  },
];

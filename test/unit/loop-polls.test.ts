// The FUSE reader's event loop sleeps with one poll, not a zero-timeout poll before each
// sleep (the addon's loopIdleMetricsOff, started with the reader in transport.ts): the
// loop's idle time, which only that extra poll measures, stops growing once a reader
// runs. And the idle-memory releaser, which read that idle time, reads CPU time instead.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { makeTransport } from '../../src/fuse/bridge/transport';
import { cpuUtilization } from '../../src/server/idle-memory';

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

/** the loop's idle time (ms) that grows over a sleep of `ms` */
async function idleOver(ms: number): Promise<number> {
  const before = performance.eventLoopUtilization().idle;
  await sleep(ms);
  return performance.eventLoopUtilization().idle - before;
}

/**
 * The most idle time one of `tries` sleeps of `ms` shows. A sleep's timer can expire
 * before the loop reaches its poll when this process is kept off the CPUs (a loaded
 * machine running many test files): that poll does not wait, and measures nothing.
 */
async function idleSeen(ms: number, tries: number): Promise<number> {
  let most = 0;
  for (let i = 0; i < tries && most === 0; i++) most = Math.max(most, await idleOver(ms));
  return most;
}

t.test('a running reader leaves one poll per sleep: the loop no longer measures idle time', async (t) => {
  t.ok((await idleSeen(50, 10)) > 0, 'before the reader, the loop counts its sleep as idle time (the zero-timeout poll is made)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratafs-loop-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // a FIFO opened for reading and writing: polled, never readable, never at its end
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const fd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  const transport = makeTransport();
  const handle = transport.startReaders([fd], () => t.fail('nothing was written'), () => undefined);
  t.teardown(() => {
    transport.stopReaders(handle);
    fs.closeSync(fd);
  });
  t.equal(await idleOver(50), 0, 'with the reader, the sleep is one poll and no idle time is measured');
});

t.test('the idle releaser reads the process CPU time: busy and idle intervals apart without the loop metrics', async (t) => {
  const u = cpuUtilization();
  const until = performance.now() + 60;
  let x = 0;
  while (performance.now() < until) x += Math.sqrt(x + 1);
  t.ok(x > 0, 'the loop ran');
  const busy = u();
  await sleep(60);
  const idle = u();
  t.ok(busy >= 0.05, `a spinning interval reads busy (${busy.toFixed(2)}; the releaser's default threshold 0.05)`);
  t.ok(idle < busy, `a sleeping interval reads less (${idle.toFixed(2)})`);
});

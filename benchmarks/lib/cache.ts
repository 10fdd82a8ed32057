/**
 * Datasets built once and kept between runs: CACHE/KEY/ holds what a builder wrote plus
 * meta.json, written last. A build goes to CACHE/building-KEY-PID/ and is renamed into
 * place when complete, so a killed build never looks finished and two runs building the
 * same key at once both end up using one complete copy. Nothing in a cached dataset is
 * ever written after it is complete.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const META = 'meta.json';
const BUILDING = 'building-';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes builds of earlier runs that died before finishing. */
function clearDeadBuilds(cache: string, log: (s: string) => void): void {
  for (const name of fs.readdirSync(cache)) {
    const m = name.startsWith(BUILDING) ? /-(\d+)$/.exec(name) : null;
    if (!m || alive(Number(m[1]))) continue;
    log(`removing ${path.join(cache, name)}: a build that did not finish`);
    fs.rmSync(path.join(cache, name), { recursive: true, force: true });
  }
}

function readMeta<M>(dir: string): M | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, META), 'utf8')) as M;
  } catch {
    return undefined;
  }
}

export interface Cached<M> {
  dir: string;
  meta: M;
  /** false when an existing copy was used */
  built: boolean;
}

export async function cachedBuild<M>(cache: string, key: string, build: (dir: string) => Promise<M>, log: (s: string) => void): Promise<Cached<M>> {
  fs.mkdirSync(cache, { recursive: true });
  const dir = path.join(cache, key);
  const found = readMeta<M>(dir);
  if (found !== undefined) return { dir, meta: found, built: false };
  clearDeadBuilds(cache, log);
  // a directory without meta.json is a copy whose finishing write was lost
  if (fs.existsSync(dir)) fs.rmSync(dir, { recursive: true, force: true });
  const tmp = path.join(cache, `${BUILDING}${key}-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  log(`building the dataset in ${tmp} (kept for later runs)`);
  try {
    const meta = await build(tmp);
    fs.writeFileSync(path.join(tmp, META), `${JSON.stringify(meta)}\n`);
    try {
      fs.renameSync(tmp, dir);
      return { dir, meta, built: true };
    } catch (e) {
      // another run finished the same build first: use its copy
      const theirs = readMeta<M>(dir);
      if (theirs === undefined) throw e;
      return { dir, meta: theirs, built: false };
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

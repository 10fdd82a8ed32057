/**
 * containerd.services.snapshots.v1.Snapshots over gRPC: the handlers call the
 * Snapshotter and turn its errors into the status codes containerd's errdefs reads back
 * (NotFound, AlreadyExists, FailedPrecondition, InvalidArgument; anything else Unknown,
 * which containerd reports as it is). Messages are defined in ./proto (loaded at start).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import createDebug from 'debug';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { StratafsError, type StratafsErrorCode } from '../errors';
import type { Snapshotter, Info } from './snapshots';
import type { Mount } from './mounts';

const log = createDebug('stratafs:snapshotter');

/** the .proto files: next to this module in src/, or there seen from dist/ */
function protoDir(): string {
  const near = path.join(__dirname, 'proto');
  return fs.existsSync(near) ? near : path.join(__dirname, '..', '..', '..', 'src', 'snapshotter', 'proto');
}

export function snapshotsService(): grpc.ServiceDefinition {
  const dir = protoDir();
  const def = protoLoader.loadSync(path.join(dir, 'snapshots.proto'), {
    includeDirs: [dir],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    containerd: { services: { snapshots: { v1: { Snapshots: { service: grpc.ServiceDefinition } } } } };
  };
  return pkg.containerd.services.snapshots.v1.Snapshots.service;
}

const STATUS: Partial<Record<StratafsErrorCode, grpc.status>> = {
  STRATAFS_ERR_SNAPSHOT_NOT_FOUND: grpc.status.NOT_FOUND,
  STRATAFS_ERR_SNAPSHOT_EXISTS: grpc.status.ALREADY_EXISTS,
  STRATAFS_ERR_SNAPSHOT_STATE: grpc.status.FAILED_PRECONDITION,
  STRATAFS_ERR_SNAPSHOT_ARGUMENT: grpc.status.INVALID_ARGUMENT,
};

export function toStatus(e: unknown): Partial<grpc.StatusObject> {
  const code = e instanceof StratafsError ? STATUS[e.code] ?? grpc.status.UNKNOWN : grpc.status.UNKNOWN;
  return { code, details: e instanceof Error ? e.message : String(e) };
}

type Req = Record<string, unknown>;

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const labelsOf = (v: unknown): Record<string, string> => (v && typeof v === 'object' ? v as Record<string, string> : {});

/** a unary handler around a synchronous call */
function unary(name: string, fn: (req: Req) => unknown): grpc.handleUnaryCall<Req, unknown> {
  return (call, callback) => {
    try {
      const reply = fn(call.request);
      log('%s %s: ok', name, str(call.request.key) || str(call.request.name));
      callback(null, reply);
    } catch (e) {
      log('%s %s: %s', name, str(call.request.key) || str(call.request.name), (e as Error).message);
      callback(toStatus(e) as grpc.ServiceError);
    }
  };
}

const wireInfo = (i: Info): Req => ({ ...i });
const wireMounts = (m: Mount[]): Req => ({ mounts: m });
/** infos per List message (containerd's own server sends them in batches too) */
const LIST_BATCH = 100;

export function handlers(s: Snapshotter): grpc.UntypedServiceImplementation {
  return {
    Prepare: unary('Prepare', (r) => wireMounts(s.create('ACTIVE', str(r.key), str(r.parent), labelsOf(r.labels)))),
    View: unary('View', (r) => wireMounts(s.create('VIEW', str(r.key), str(r.parent), labelsOf(r.labels)))),
    Mounts: unary('Mounts', (r) => wireMounts(s.mounts(str(r.key)))),
    Commit: unary('Commit', (r) => {
      s.commit(str(r.name), str(r.key), labelsOf(r.labels));
      return {};
    }),
    Remove: unary('Remove', (r) => {
      s.remove(str(r.key));
      return {};
    }),
    Stat: unary('Stat', (r) => ({ info: wireInfo(s.stat(str(r.key))) })),
    Update: unary('Update', (r) => {
      const info = (r.info ?? {}) as Partial<Info>;
      const mask = (r.update_mask ?? {}) as { paths?: string[] };
      return { info: wireInfo(s.update({ name: str(info.name), labels: labelsOf(info.labels) }, mask.paths ?? [])) };
    }),
    Usage: unary('Usage', (r) => s.usage(str(r.key))),
    Cleanup: unary('Cleanup', () => {
      const removed = s.cleanup();
      if (removed.length > 0) log('cleanup removed %s', removed.join(' '));
      return {};
    }),
    List: (call: grpc.ServerWritableStream<Req, unknown>) => {
      try {
        const infos = s.list(((call.request.filters ?? []) as string[]).map(str));
        for (let i = 0; i < infos.length; i += LIST_BATCH) call.write({ info: infos.slice(i, i + LIST_BATCH).map(wireInfo) });
        call.end();
      } catch (e) {
        log('List: %s', (e as Error).message);
        call.emit('error', toStatus(e));
      }
    },
  };
}

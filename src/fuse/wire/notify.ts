/**
 * Notify messages (daemon -> kernel, unsolicited): out header with unique 0 and the
 * notify code in the error field, then the code's body.
 */
import type { Reply } from './encode';
import { NotifyCode, Size } from './protocol';

function notifyFrame(code: number, bodyLen: number): { buf: Buffer; body: Buffer } {
  const buf = Buffer.alloc(Size.OUT_HEADER + bodyLen);
  buf.writeUInt32LE(buf.length, 0);
  buf.writeInt32LE(code, 4);
  buf.writeBigUInt64LE(0n, 8);
  return { buf, body: buf.subarray(Size.OUT_HEADER) };
}

/** drop cached data of `node` from `off` for `len` bytes (len 0 = to the end; off -1 = attributes only) */
export function encodeInvalInode(node: number, off: number, len: number): Reply {
  const { buf, body } = notifyFrame(NotifyCode.INVAL_INODE, Size.NOTIFY_INVAL_INODE);
  body.writeBigUInt64LE(BigInt(node), 0);
  body.writeBigInt64LE(BigInt(off), 8);
  body.writeBigInt64LE(BigInt(len), 16);
  return [buf];
}

/** forget the dentry `name` in `parent` (flags: EXPIRE_ONLY) */
export function encodeInvalEntry(parent: number, name: string, flags = 0): Reply {
  const namelen = Buffer.byteLength(name, 'latin1');
  const { buf, body } = notifyFrame(NotifyCode.INVAL_ENTRY, Size.NOTIFY_INVAL_ENTRY + namelen + 1);
  body.writeBigUInt64LE(BigInt(parent), 0);
  body.writeUInt32LE(namelen, 8);
  body.writeUInt32LE(flags, 12);
  body.write(name, Size.NOTIFY_INVAL_ENTRY, namelen, 'latin1');
  return [buf];
}

/** `name` in `parent` (node `child`) was deleted: like INVAL_ENTRY, and unhashes the dentry */
export function encodeDelete(parent: number, child: number, name: string): Reply {
  const namelen = Buffer.byteLength(name, 'latin1');
  const { buf, body } = notifyFrame(NotifyCode.DELETE, Size.NOTIFY_DELETE + namelen + 1);
  body.writeBigUInt64LE(BigInt(parent), 0);
  body.writeBigUInt64LE(BigInt(child), 8);
  body.writeUInt32LE(namelen, 16);
  body.write(name, Size.NOTIFY_DELETE, namelen, 'latin1');
  return [buf];
}

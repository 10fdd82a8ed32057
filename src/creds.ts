/**
 * The set-id bits a change by an unprivileged caller removes, as the VFS decides it
 * (fs/attr.c, setattr_should_drop_sgid; fs/inode.c, should_remove_suid on 6.x):
 *
 * - S_ISUID always;
 * - S_ISGID when the group may execute, and also without group-exec (the old mandatory
 *   locking mark) when the caller is not in the file's group.
 *
 * Under FUSE_HANDLE_KILLPRIV_V2 the kernel leaves this to the filesystem: it flags a
 * WRITE, OPEN(O_TRUNC) or truncating SETATTR from a caller without CAP_FSETID, or sends
 * a SETATTR with nothing but the request to drop privileges (file_remove_privs: a
 * passthrough write, fallocate). The kernel's request header names only the caller's
 * uid, gid and pid: the supplementary groups come from /proc/PID/status.
 */
import { readFileSync } from 'node:fs';

/** mode bits Node's fs.constants does not name (stat.h) */
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
const S_IXGRP = 0o0010;

/** The caller (uid, gid, pid of a FUSE request). */
export interface Caller {
  uid: number;
  gid: number;
  pid: number;
}

/** The supplementary groups of process PID (empty when it is gone or unreadable). */
function supplementaryGroups(pid: number): number[] {
  if (pid <= 0) return [];
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    const line = /^Groups:[ \t]*(.*)$/m.exec(status)?.[1] ?? '';
    return line.split(/\s+/).filter((s) => s !== '').map(Number);
  } catch {
    return [];
  }
}

/**
 * Is the caller in group GID (its own gid, or a supplementary group), or root (taken as
 * holding CAP_FSETID: the request does not carry capabilities)?
 */
export function callerInGroup(caller: Caller, gid: number): boolean {
  return caller.uid === 0 || caller.gid === gid || supplementaryGroups(caller.pid).includes(gid);
}

/**
 * MODE without the set-id bits a write/truncate/chown by CALLER (without CAP_FSETID)
 * removes from a file of group FILEGID. Directories keep theirs (the caller checks).
 */
export function killedMode(mode: number, caller: Caller, fileGid: number): number {
  let m = mode & ~S_ISUID;
  if ((mode & S_ISGID) !== 0 && ((mode & S_IXGRP) !== 0 || !callerInGroup(caller, fileGid))) m &= ~S_ISGID;
  return m;
}

import { closeSync, ftruncateSync, openSync, rmSync, statfsSync, writeSync } from "node:fs"
import { dirname } from "node:path"
import { Effect } from "effect"
import { mountTmpfs } from "./mounts.js"

/**
 * A real, small tmpfs on a fresh temporary directory for the scope: writes beyond `size` fail with
 * ENOSPC. Always unmounted at the end of the scope.
 */
export const tmpfsScoped = (size: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mountTmpfs(size)),
    (mount) => Effect.sync(mount.unmount)
  ).pipe(Effect.map((mount) => mount.dir))

/** Bytes an unprivileged write may still use on the filesystem holding `dir`. */
export const freeBytes = (dir: string) => {
  const s = statfsSync(dir)
  return s.bavail * s.bsize
}

/**
 * Fills the filesystem holding `file`'s directory with `file` until a write fails with ENOSPC, then
 * gives back about `leaveBytes` (rounded to the filesystem's pages). Returns the bytes left free.
 */
export const fillDisk = (file: string, leaveBytes = 0) => {
  const chunk = Buffer.alloc(16 * 1024, 0x78)
  const fd = openSync(file, "w")
  let size = 0
  try {
    for (;;) {
      try {
        size += writeSync(fd, chunk)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOSPC") break
        throw error
      }
    }
    if (leaveBytes > 0) ftruncateSync(fd, Math.max(0, size - leaveBytes))
  } finally {
    closeSync(fd)
  }
  return freeBytes(dirname(file))
}

/** Deletes the filler: the space is free again. */
export const freeDisk = (file: string) => rmSync(file, { force: true })

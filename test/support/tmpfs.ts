import { execFileSync } from "node:child_process"
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmdirSync, rmSync, statfsSync, writeSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { Effect } from "effect"

const run = (command: string, args: ReadonlyArray<string>) =>
  execFileSync(command, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" })

const reasonOf = (error: unknown) => {
  const e = error as { readonly stderr?: unknown; readonly message?: unknown }
  const stderr = typeof e.stderr === "string" ? e.stderr.trim() : ""
  return stderr.length > 0 ? stderr : String(e.message ?? error)
}

/**
 * A real, small tmpfs mounted on a fresh temporary directory for the scope: writes beyond `size`
 * fail with ENOSPC. Needs root (CI runs as root). When the mount is impossible the effect dies with
 * a sentence saying so: the disk-full tests then fail, they never skip. Always unmounted at the end
 * of the scope (`umount -l` when a plain unmount is refused).
 */
export const tmpfsScoped = (size: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = mkdtempSync(join(tmpdir(), "disk-full-"))
      try {
        run("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir])
      } catch (error) {
        rmdirSync(dir)
        throw new Error(
          `The disk-full tests need a real full filesystem, but mounting a ${size} tmpfs at ${dir} failed ` +
            `(run them as root with mount(8) available): ${reasonOf(error)}`
        )
      }
      return dir
    }),
    (dir) =>
      Effect.sync(() => {
        try {
          run("umount", [dir])
        } catch {
          try {
            run("umount", ["-l", dir])
          } catch {
            // nothing more can be done; the directory stays behind
          }
        }
        try {
          rmdirSync(dir)
        } catch {
          // still mounted (lazy unmount in progress) or already gone
        }
      })
  )

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

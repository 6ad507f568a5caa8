import { execFileSync } from "node:child_process"
import * as fs from "node:fs"

export interface Mounted {
  readonly dir: string
  /** Makes the mounted filesystem read-only (or writable again). */
  readonly remount: (mode: "ro" | "rw") => void
  readonly unmount: () => void
}

/**
 * A real, small tmpfs at `dir` (created), for disk-full and read-only tests. Needs root, as CI runs:
 * without it the test fails with a sentence saying so rather than passing untested.
 */
export const mountTmpfs = (dir: string, size: string, mode: "ro" | "rw" = "rw"): Mounted => {
  fs.mkdirSync(dir, { recursive: true })
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},${mode}`, "tmpfs", dir], { stdio: "pipe" })
  } catch (e) {
    throw new Error(
      `this test needs a real small filesystem and could not mount a tmpfs at ${dir} (run the tests as root, as CI does): ${String((e as { stderr?: unknown }).stderr ?? e)}`
    )
  }
  return {
    dir,
    remount: (next) => execFileSync("mount", ["-o", `remount,${next}`, dir], { stdio: "pipe" }),
    unmount: () => {
      try {
        execFileSync("umount", [dir], { stdio: "pipe" })
      } catch {
        execFileSync("umount", ["-l", dir], { stdio: "pipe" })
      }
    }
  }
}

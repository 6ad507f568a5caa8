import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const run = (command: string, args: ReadonlyArray<string>) =>
  execFileSync(command, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" })

const reasonOf = (error: unknown) => {
  const e = error as { readonly stderr?: unknown; readonly message?: unknown }
  const stderr = typeof e.stderr === "string" ? e.stderr.trim() : ""
  return stderr.length > 0 ? stderr : String(e.message ?? error)
}

export interface Mounted {
  readonly dir: string
  /** Makes the mounted filesystem read-only (or writable again). */
  readonly remount: (mode: "ro" | "rw") => void
  /** Unmounts (lazily when a plain unmount is refused) and removes the mount point. */
  readonly unmount: () => void
}

/**
 * A real, small tmpfs, for disk-full and read-only tests: at `dir` (created) or on a fresh temporary
 * directory. Needs root, as CI runs: without it this throws a sentence saying so, and the test fails
 * rather than passing untested.
 */
export const mountTmpfs = (size: string, options: { readonly dir?: string; readonly mode?: "ro" | "rw" } = {}): Mounted => {
  const dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "tmpfs-"))
  fs.mkdirSync(dir, { recursive: true })
  try {
    run("mount", ["-t", "tmpfs", "-o", `size=${size},${options.mode ?? "rw"}`, "tmpfs", dir])
  } catch (error) {
    throw new Error(
      `this test needs a real small filesystem, but mounting a ${size} tmpfs at ${dir} failed ` +
        `(run the tests as root with mount(8) available, as CI does): ${reasonOf(error)}`
    )
  }
  return {
    dir,
    remount: (mode) => {
      try {
        run("mount", ["-o", `remount,${mode}`, dir])
      } catch (error) {
        throw new Error(`remounting the tmpfs at ${dir} ${mode} failed: ${reasonOf(error)}`)
      }
    },
    unmount: () => {
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
        fs.rmdirSync(dir)
      } catch {
        // still mounted (lazy unmount in progress) or already gone
      }
    }
  }
}

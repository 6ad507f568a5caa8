import { type ChildProcess, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { mountTmpfs } from "./mounts.js"
import { repoRoot, runMain } from "./process.js"

export interface ReadOnlyMount {
  readonly dir: string
  /** Unmounts and removes the mount point. */
  readonly release: () => void
}

/** A small tmpfs on a fresh temporary directory: `prepare` may write into it, then it is remounted read-only. */
export const readOnlyMount = async (prepare: (dir: string) => void | Promise<void> = () => {}): Promise<ReadOnlyMount> => {
  const mount = mountTmpfs("1m")
  try {
    await prepare(mount.dir)
    mount.remount("ro")
  } catch (error) {
    mount.unmount()
    throw error
  }
  return { dir: mount.dir, release: mount.unmount }
}

const lockerSource = `
const Database = require("better-sqlite3")
const [file, mode, holdMs] = process.argv.slice(1)
const db = new Database(file)
if (mode === "wal") db.pragma("journal_mode = WAL")
db.exec("BEGIN EXCLUSIVE")
process.stdout.write("locked\\n")
const release = () => { db.exec("COMMIT"); db.close(); process.stdout.write("released\\n"); process.exit(0) }
if (Number(holdMs) > 0) setTimeout(release, Number(holdMs))
else setInterval(() => {}, 60000)
`

export interface Locker {
  readonly child: ChildProcess
  /** Resolves once the child holds the write lock. */
  readonly locked: Promise<void>
  /** Resolves once the child has committed and closed (only when it was given a hold time). */
  readonly released: Promise<void>
  readonly kill: () => Promise<void>
}

/**
 * Another process that opens `file` with better-sqlite3, takes its write lock (`BEGIN EXCLUSIVE`) and
 * holds it for `holdMs` (then commits and exits), or until killed when `holdMs` is 0. `mode` "wal" puts
 * a new database in WAL mode first; "keep" leaves the journal mode as the file has it.
 */
export const lockDatabase = (file: string, options: { readonly mode?: "wal" | "keep"; readonly holdMs?: number } = {}): Locker => {
  const child = spawn(process.execPath, ["-e", lockerSource, file, options.mode ?? "keep", String(options.holdMs ?? 0)], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  let err = ""
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  const seen = (word: string) =>
    new Promise<void>((resolve, reject) => {
      child.stdout!.on("data", (d) => {
        out += d
        if (out.includes(word)) resolve()
      })
      child.stderr!.on("data", (d) => (err += d))
      void exited.then(() => (out.includes(word) ? resolve() : reject(new Error(`the locking process exited before "${word}": ${err}`))))
    })
  const locked = seen("locked")
  const released = seen("released")
  locked.catch(() => {})
  released.catch(() => {})
  return {
    child,
    locked,
    released,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      return exited
    }
  }
}

export const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

export interface Finished {
  readonly code: number | string
  readonly stdout: string
  readonly stderr: string
  readonly elapsedMs: number
}

/**
 * Runs `dist/main.js` until it exits, with stdout (logs) and stderr (the error report) apart. Kills
 * it and throws when it has not exited within `boundMs`.
 */
export const runToExit = async (args: ReadonlyArray<string>, env: Record<string, string>, boundMs: number): Promise<Finished> => {
  const started = Date.now()
  const main = runMain(args, env)
  let stdout = ""
  let stderr = ""
  main.child.stdout!.on("data", (d) => (stdout += d))
  main.child.stderr!.on("data", (d) => (stderr += d))
  let timer: NodeJS.Timeout | undefined
  const bound = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), boundMs)))
  const code = await Promise.race([main.exited, bound])
  clearTimeout(timer)
  if (code === "timeout") {
    main.child.kill("SIGKILL")
    await main.exited
    throw new Error(`dist/main.js ${args.join(" ")} did not exit within ${boundMs} ms; it printed:\n${main.output()}`)
  }
  return { code, stdout, stderr, elapsedMs: Date.now() - started }
}

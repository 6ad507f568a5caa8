import { Data, Duration } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"

/**
 * The database at STORAGE_PATH cannot be opened, set up or migrated. `message` is one line naming the
 * variable, the path, the reason and what to do; `main.ts` prints it and exits 1.
 */
export class StorageUnavailable extends Data.TaggedError("StorageUnavailable")<{
  readonly path: string
  readonly reason: string
  readonly advice: string
  readonly cause?: unknown
}> {
  override get message() {
    return `Storage error: STORAGE_PATH=${this.path} cannot be used: ${this.reason}; ${this.advice}.`
  }
}

/** Another connection holds the write lock (SQLITE_BUSY): worth another try until the start-up wait is over. */
export class StorageBusy extends Data.TaggedError("StorageBusy")<{ readonly cause: unknown }> {}

/** The SQLite result code (e.g. SQLITE_BUSY_SNAPSHOT) and message of `cause`, looked for along its `cause` chain. */
export const sqliteFailure = (cause: unknown): { readonly code: string; readonly message: string } | undefined => {
  for (let e = cause, depth = 0; typeof e === "object" && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown }
    if (typeof code === "string" && code.startsWith("SQLITE_")) return { code, message: String(message) }
  }
  return undefined
}

const errnoOf = (f: () => unknown): string | undefined => {
  try {
    f()
    return undefined
  } catch (error) {
    return String((error as NodeJS.ErrnoException).code ?? "unknown")
  }
}

const statOf = (p: string) => {
  try {
    return fs.statSync(p)
  } catch {
    return undefined
  }
}

/** The closest of `dir` and its parents that exists. */
const nearestExisting = (dir: string) => {
  let d = dir
  while (statOf(d) === undefined && path.dirname(d) !== d) d = path.dirname(d)
  return d
}

const readOnlyFs = (where: string) => `${where} is on a read-only file system, so the database cannot be created`
const writableAdvice = "mount it read-write or set STORAGE_PATH to a path on a writable disk"

/**
 * Why the file system stops SQLite from using `filename`, found by looking at it (the errno SQLite saw
 * is not in its error): a directory, a read-only mount, missing permissions, a file where a directory
 * should be. Undefined when the file system looks fine.
 */
export const diagnosePath = (filename: string): { readonly reason: string; readonly advice: string } | undefined => {
  const file = path.resolve(filename)
  const dir = path.dirname(file)
  const stat = statOf(file)
  if (stat?.isDirectory()) return { reason: "it is a directory", advice: "set STORAGE_PATH to a file path such as data/app.db" }
  if (stat === undefined) {
    const existing = nearestExisting(dir)
    if (!statOf(existing)?.isDirectory()) {
      return {
        reason: `${existing} is not a directory, so the database cannot be created under it`,
        advice: "set STORAGE_PATH to a file path such as data/app.db"
      }
    }
    const errno = errnoOf(() => fs.accessSync(existing, fs.constants.W_OK))
    if (errno === "EROFS") return { reason: readOnlyFs(existing), advice: writableAdvice }
    if (errno === "EACCES" || errno === "EPERM") {
      return {
        reason: `this user may not create files in ${existing}, so the database cannot be created`,
        advice: "give it write access there or set STORAGE_PATH to a writable path"
      }
    }
    return undefined
  }
  const fileErrno = errnoOf(() => fs.accessSync(file, fs.constants.R_OK | fs.constants.W_OK))
  const dirErrno = errnoOf(() => fs.accessSync(dir, fs.constants.W_OK))
  if (fileErrno === "EROFS" || dirErrno === "EROFS") {
    return {
      reason: "it is on a read-only file system (SQLite writes the database and its -wal and -shm files next to it)",
      advice: "mount it read-write, or copy the database to a writable disk and set STORAGE_PATH to the copy"
    }
  }
  if (fileErrno === "EACCES" || fileErrno === "EPERM") {
    return { reason: "this user may not read and write it", advice: "give it read and write access or set STORAGE_PATH to another path" }
  }
  if (dirErrno === "EACCES" || dirErrno === "EPERM") {
    return {
      reason: `this user may not create its -wal and -shm files in ${dir}`,
      advice: "give it write access to the directory or set STORAGE_PATH to a writable path"
    }
  }
  return undefined
}

/**
 * `cause` (a SqliteError, an SqlError or MigrationError around one, or a file-system error) as a
 * start-up failure of the database at `filename`: busy (retry), or unavailable with a reason.
 */
export const classifyStorageFailure = (filename: string, cause: unknown): StorageUnavailable | StorageBusy => {
  const sqlite = sqliteFailure(cause)
  const unavailable = (reason: string, advice: string) => new StorageUnavailable({ path: filename, reason, advice, cause })
  if (sqlite?.code.startsWith("SQLITE_BUSY") || sqlite?.code.startsWith("SQLITE_LOCKED")) return new StorageBusy({ cause })
  if (sqlite?.code.startsWith("SQLITE_NOTADB")) {
    return unavailable(
      `it is not a SQLite database (${sqlite.message}), so it was left untouched`,
      "set STORAGE_PATH to the platform's database or to a new file path such as data/app.db"
    )
  }
  const found = diagnosePath(filename)
  if (found !== undefined) return unavailable(found.reason, found.advice)
  if (sqlite?.code.startsWith("SQLITE_FULL")) {
    return unavailable(`the disk is full (${sqlite.message})`, "free some space or set STORAGE_PATH to a disk with room")
  }
  if (sqlite?.code.startsWith("SQLITE_CORRUPT")) {
    return unavailable(
      `the database is corrupt (${sqlite.message})`,
      "restore it from a backup or set STORAGE_PATH to a new file path"
    )
  }
  if (sqlite !== undefined) {
    return unavailable(`${sqlite.message} (${sqlite.code})`, "check the file and its directory, or set STORAGE_PATH to another path")
  }
  const message = (cause as { message?: unknown } | undefined)?.message
  return unavailable(
    String(message ?? cause).split("\n")[0]!,
    "check the file and its directory, or set STORAGE_PATH to another path"
  )
}

/** Another process kept the write lock for the whole start-up wait. */
export const lockedTooLong = (filename: string, waited: Duration.Duration, cause: unknown) =>
  new StorageUnavailable({
    path: filename,
    reason: `another process holds its write lock (waited ${Duration.toSeconds(waited)} s)`,
    advice: "stop the other writer or point STORAGE_PATH elsewhere",
    cause
  })

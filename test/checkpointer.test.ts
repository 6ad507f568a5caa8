import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect, Layer, Logger } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { checkpointer } from "../src/store/Checkpointer.js"
import { sqliteStore } from "../src/store/Store.js"
import { eventually, realDelay } from "./support/effect.js"

// The store's checkpoint worker: the log is copied into the database file by a thread of its own, so
// the writers' commits (on the event loop) need not do it. Seen from outside: the database file alone,
// without its -wal, holds what was committed, although no writer ever checkpointed.

const tempDb = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "checkpointer-"))
  return Effect.as(
    Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))),
    { dir, file: path.join(dir, "app.db") }
  )
}

/**
 * Rows of `ticks` in a copy of the database file alone: what has been checkpointed (none before the
 * table is). A copy taken while a checkpoint writes the file can be torn: that reads as -1 (not yet).
 */
const rowsInFileAlone = (dir: string, file: string) => {
  const copy = path.join(dir, `alone-${Math.random().toString(36).slice(2)}.db`)
  fs.copyFileSync(file, copy)
  const db = new Database(copy, { fileMustExist: true })
  try {
    const table = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'ticks'").get()
    return table === undefined ? 0 : Number((db.prepare("SELECT COUNT(*) AS n FROM ticks").get() as { n: number }).n)
  } catch (e) {
    if (String(e).includes("malformed")) return -1
    throw e
  } finally {
    db.close()
    fs.rmSync(copy, { force: true })
  }
}

/** A writer that never checkpoints by itself (wal_autocheckpoint = 0), `count` ticks in one commit. */
const writeTicks = (file: string, count: number) => {
  const db = new Database(file)
  db.pragma("journal_mode = WAL")
  db.pragma("wal_autocheckpoint = 0")
  const insert = db.prepare(
    `INSERT INTO ticks (symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time, ingested_at)
     VALUES ('BTCUSDT', ?, '2026-12-01T00:00:00.000000Z', '1', '0', '1', 'simulated', NULL, '2026-12-01T00:00:00.000Z')`
  )
  db.transaction(() => {
    for (let i = 0; i < count; i++) insert.run(1_000_000 + i)
  })()
  return db
}

describe("the SQLite store's checkpoint worker", () => {
  it.scoped("copies committed writes into the database file while the writer stays open and never checkpoints", () =>
    Effect.gen(function* () {
      const { dir, file } = yield* tempDb()
      yield* Layer.build(sqliteStore(file))
      const writer = yield* Effect.acquireRelease(Effect.sync(() => writeTicks(file, 3000)), (db) => Effect.sync(() => db.close()))
      expect(fs.statSync(`${file}-wal`).size).toBeGreaterThan(0)
      yield* eventually(() => rowsInFileAlone(dir, file) === 3000, 5_000, "the 3000 rows in the database file alone")
      // and again for a later commit on the same connection
      writer.transaction(() => writer.prepare("DELETE FROM ticks WHERE ts_us < 1000500").run())()
      yield* eventually(() => rowsInFileAlone(dir, file) === 2500, 5_000, "the delete in the database file alone")
    })
  )

  it.scoped("(the control) a file no worker watches keeps the same writes in its log only", () =>
    Effect.gen(function* () {
      // The control for the test above: the copy of the file alone shows nothing when no one checkpoints.
      const { dir, file } = yield* tempDb()
      yield* Layer.build(sqliteStore(file))
      const other = path.join(dir, "other.db")
      const source = new Database(file, { fileMustExist: true })
      source.prepare("VACUUM INTO ?").run(other) // the migrated schema, in a file of its own
      source.close()
      expect(rowsInFileAlone(dir, other)).toBe(0)
      const writer = yield* Effect.acquireRelease(Effect.sync(() => writeTicks(other, 3000)), (db) => Effect.sync(() => db.close()))
      yield* realDelay(500)
      expect(rowsInFileAlone(dir, other)).toBe(0)
      expect(Number((writer.prepare("SELECT COUNT(*) AS n FROM ticks").get() as { n: number }).n)).toBe(3000)
    })
  )

  it.scoped("a file it cannot open: it says so once, and the scope still closes at once", () =>
    Effect.gen(function* () {
      const { dir } = yield* tempDb()
      const logs: Array<string> = []
      const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => void logs.push([message].flat().map(String).join(" "))))
      const missing = path.join(dir, "missing.db")
      const started = Date.now()
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* checkpointer(missing)
          yield* eventually(() => logs.some((l) => l.includes("could not open")), 5_000, "the warning")
        })
      ).pipe(Effect.provide(capture))
      expect(Date.now() - started).toBeLessThan(5_000)
      expect(logs.filter((l) => l.includes("could not open"))).toEqual([
        expect.stringContaining(`the checkpoint worker could not open ${missing}`)
      ])
      expect(logs[0]).toContain("WAL checkpoints run in the writers' commits again")
      expect(fs.existsSync(missing)).toBe(false)
    })
  )
})

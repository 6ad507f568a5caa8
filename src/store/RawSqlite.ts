import { SqlClient, SqlError } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import Database from "better-sqlite3"
import { Effect, Schema } from "effect"
import { WAL_AUTOCHECKPOINT_PAGES } from "./Checkpointer.js"
import { BUSY_TIMEOUT_MS } from "./Sql.js"

// better-sqlite3 itself, for the one place that needs it without @effect/sql in between: the tick
// write path (TickWriter.ts), where a batch is a handful of statements run synchronously in one
// transaction and the Effect runtime around each statement cost more than SQLite did.

export type RawValue = string | number | bigint | null

export interface RawStatement {
  run(...params: ReadonlyArray<RawValue>): { readonly changes: number }
  get(...params: ReadonlyArray<RawValue>): Record<string, unknown> | undefined
  all(...params: ReadonlyArray<RawValue>): Array<Record<string, unknown>>
}

export interface RawDb {
  prepare(sql: string): RawStatement
  pragma(source: string, options?: { readonly simple?: boolean }): unknown
  /** Wraps `fn` in BEGIN … COMMIT (a SAVEPOINT when nested); a throw rolls back, a failed COMMIT too. */
  transaction<A extends ReadonlyArray<unknown>, R>(fn: (...args: A) => R): ((...args: A) => R) & {
    readonly immediate: (...args: A) => R
  }
  close(): void
}

/**
 * A second connection to an existing, migrated database file (WAL). `busyTimeoutMs` as the first
 * connection's: SQLite's busy handler sleeps synchronously on the event loop, so it stays short.
 */
export const openRaw = (filename: string, busyTimeoutMs: number): RawDb => {
  const db = new Database(filename, { fileMustExist: true })
  try {
    db.pragma(`busy_timeout = ${busyTimeoutMs}`)
    db.pragma("synchronous = NORMAL")
    db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`)
    return db
  } catch (e) {
    db.close()
    throw e
  }
}

/**
 * A writer's own connection to the store's file (scoped: closed with it), with the same busy timeout
 * as the store's first connection (BUSY_TIMEOUT_MS in Sql.ts). `what` names it in the failure.
 */
export const writerConnection = (what: string) =>
  Effect.gen(function* () {
    const client = yield* SqliteClient.SqliteClient
    const sql = yield* SqlClient.SqlClient
    const [{ timeout }] = yield* sql`PRAGMA busy_timeout`.pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.Tuple(Schema.Struct({ timeout: Schema.Number })))),
      Effect.orDie
    )
    return yield* Effect.acquireRelease(
      Effect.try({
        try: () => openRaw(client.config.filename, timeout),
        catch: (cause) => new SqlError.SqlError({ cause, message: `Failed to open ${what}` })
      }),
      (db) => Effect.sync(() => db.close())
    ).pipe(Effect.orDie)
  })

/**
 * A reader's own connection to the store's file (scoped: closed with it), with the API's busy timeout
 * (BUSY_TIMEOUT_MS): synchronous reads prepared once, off @effect/sql. `what` names it in the failure.
 */
export const readerConnection = (what: string) =>
  Effect.gen(function* () {
    const { filename } = (yield* SqliteClient.SqliteClient).config
    return yield* Effect.acquireRelease(
      Effect.try({
        try: () => openRaw(filename, BUSY_TIMEOUT_MS),
        catch: (cause) => new SqlError.SqlError({ cause, message: `Failed to open ${what}` })
      }),
      (db) => Effect.sync(() => db.close())
    ).pipe(Effect.orDie)
  })

import Database from "better-sqlite3"

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
    return db
  } catch (e) {
    db.close()
    throw e
  }
}

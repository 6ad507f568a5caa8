import { createRequire } from "node:module"

interface Db {
  prepare(sql: string): { all(...params: ReadonlyArray<unknown>): Array<Record<string, unknown>> }
  close(): void
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new (file: string, options?: { readonly?: boolean; fileMustExist?: boolean }) => Db

/** Runs one read-only query on a database another process may be writing (WAL). */
export const query = (file: string, sql: string, ...params: ReadonlyArray<unknown>): Array<Record<string, unknown>> => {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return db.prepare(sql).all(...params)
  } finally {
    db.close()
  }
}

/** Rows in `ticks`, or 0 while the database does not exist yet. */
export const tickCount = (file: string): number => {
  try {
    return Number(query(file, "SELECT COUNT(*) AS n FROM ticks")[0]!.n)
  } catch {
    return 0
  }
}

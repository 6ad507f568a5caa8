import { Reactivity } from "@effect/experimental"
import { FileSystem, Path } from "@effect/platform"
import type { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Clock, Effect, ParseResult, Schema } from "effect"
import pg from "pg"
import { describeDatabaseUrl, pgErrorCode, pgLayer } from "../store/pg/PgSql.js"
import { keyOf, type KeyValue, pgInsert, rowSchema, sqliteChunk, TABLES, type TableSpec } from "./MigrateTables.js"
import { makeProgress } from "./Progress.js"
import { StartupError } from "./Roles.js"

// `migrate-store`: copies a SQLite history into PostgreSQL, table by table in primary-key order, one
// chunk per PostgreSQL transaction. Each transaction also moves the table's resume point in
// `migrate_store_progress` (in the destination), so a run killed at any instant resumes after the
// last chunk committed; the writes are idempotent besides, so nothing is copied twice either way.

export interface MigrateOptions {
  /** The SQLite file, as given (`data/app.db`). */
  readonly from: string
  /** The PostgreSQL URL. */
  readonly to: string
  readonly chunkSize: number
  readonly tty: boolean
}

export interface TableResult {
  readonly table: string
  readonly total: number
  readonly read: number
  readonly written: number
  /** Rows an interrupted run had already copied when this one resumed the table. */
  readonly resumedAfter: number
}

/** The platform's last SQLite migration: the tables of TABLES all exist from it on. */
const SOURCE_MIGRATION = 4

/** The deepest message along a failure's `cause` chain (SqlError wraps the driver's error). */
const reasonOf = (failure: unknown): string => {
  let reason = String(failure)
  for (let e = failure, depth = 0; typeof e === "object" && e !== null && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    const { message } = e as { message?: unknown }
    if (typeof message === "string" && message !== "") reason = message
  }
  const code = pgErrorCode(failure)
  return code === undefined || reason.includes(code) ? reason : `${reason} (${code})`
}

const fail = (message: string) => Effect.fail(new StartupError({ message: `migrate-store: ${message}` }))

const TableColumn = Schema.Struct({ tbl: Schema.String, col: Schema.String })
const Latest = Schema.Struct({ latest: Schema.NullOr(Schema.Number) })
const Count = Schema.Struct({ n: Schema.Number })

/**
 * The SQLite file, opened read-only and without switching its journal mode: nothing is migrated or
 * written (SQLite may create the `-wal`/`-shm` files it needs to read a WAL database).
 */
const openSource = (file: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const label = `--from sqlite:${file}`
    const info = yield* fs.stat(file).pipe(Effect.catchAll(() => fail(`${label}: no such file. Give the platform's SQLite database (STORAGE_PATH), e.g. --from sqlite:data/app.db.`)))
    if (info.type !== "File") return yield* fail(`${label} is not a file: give the platform's SQLite database, e.g. --from sqlite:data/app.db.`)
    const client = yield* SqliteClient.make({ filename: file, readonly: true, disableWAL: true }).pipe(
      Effect.provide(Reactivity.layer),
      // better-sqlite3 throws from its constructor (a permission, a lock): a failure to open, not a bug
      Effect.catchAllDefect((e) => fail(`${label} cannot be opened: ${reasonOf(e)}.`))
    )
    const notPlatform = (why: string) => fail(`${label} is not a database of this platform (${why}).`)
    const columns = yield* client`SELECT m.name AS tbl, p.name AS col FROM sqlite_master m JOIN pragma_table_info(m.name) p
      WHERE m.type = 'table'`.pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.Array(TableColumn))),
      Effect.catchAll((e) => (/not a database/i.test(reasonOf(e)) ? notPlatform("not an SQLite file") : fail(`${label} cannot be read: ${reasonOf(e)}.`)))
    )
    const has = new Set(columns.map((c) => `${c.tbl}.${c.col}`))
    if (!has.has("effect_sql_migrations.migration_id")) return yield* notPlatform("it has no effect_sql_migrations table")
    const [latest] = yield* client`SELECT MAX(migration_id) AS latest FROM effect_sql_migrations`.pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.Array(Latest))),
      Effect.orElse(() => notPlatform("its migrations table cannot be read"))
    )
    if ((latest?.latest ?? 0) < SOURCE_MIGRATION) {
      return yield* fail(
        `${label} was written by an older version (migration ${latest?.latest ?? 0} of ${SOURCE_MIGRATION}): start the platform on it once ` +
          "(STORAGE_PATH, it migrates the file at start), stop it, then run migrate-store again."
      )
    }
    const missing = TABLES.flatMap((t) => t.columns.filter((c) => !has.has(`${t.name}.${c.name}`)).map((c) => `${t.name}.${c.name}`))
    if (missing.length > 0) return yield* notPlatform(`missing ${missing.slice(0, 3).join(", ")}${missing.length > 3 ? ", …" : ""}`)
    return client
  })

/**
 * Fails at once, saying what to do, when nothing answers at `url`. pgLayer waits for a server that is
 * down, which suits a consumer started before its database, not a command run by hand. A server that
 * answers and refuses (no such database, a wrong password) is left to pgLayer, which says why.
 */
const probe = (url: string) =>
  Effect.tryPromise(async () => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
    client.on("error", () => {})
    await client.connect()
    await client.end()
  }).pipe(
    Effect.catchAll((e) =>
      /^[0-9A-Z]{5}$/.test(pgErrorCode(e.error) ?? "")
        ? Effect.void
        : fail(
            `PostgreSQL at ${describeDatabaseUrl(url)} is not reachable (${reasonOf(e.error)}): start the server ` +
              "(with Docker: docker compose --profile postgres up -d postgres) or correct --to, then run the same command again."
          )
    )
  )

const Progress = Schema.Struct({
  table_name: Schema.String,
  last_key: Schema.NullOr(Schema.Array(Schema.Union(Schema.String, Schema.Number))),
  rows_read: Schema.Number,
  done: Schema.Boolean
})
type Progress = typeof Progress.Type

/**
 * The resume points of `source`'s tables in the destination. A run that did not finish is resumed:
 * its finished tables are skipped, the others go on after their last key. After a finished run (or
 * none) every table starts from its first row again: a new run copies whatever the file holds now,
 * wherever in key order it was added.
 */
const startRun = (sql: SqlClient.SqlClient, source: string) =>
  Effect.gen(function* () {
    yield* sql`CREATE TABLE IF NOT EXISTS migrate_store_progress (
      source TEXT NOT NULL,
      table_name TEXT NOT NULL,
      last_key JSONB,
      rows_read BIGINT NOT NULL DEFAULT 0,
      rows_written BIGINT NOT NULL DEFAULT 0,
      done BOOLEAN NOT NULL DEFAULT false,
      updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      PRIMARY KEY (source, table_name))`
    const stored = yield* sql`SELECT table_name, last_key, rows_read, done FROM migrate_store_progress WHERE source = ${source}`.pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.Array(Progress)))
    )
    const byTable = new Map(stored.map((p) => [p.table_name, p]))
    if (TABLES.every((t) => byTable.has(t.name)) && stored.some((p) => !p.done)) return { resumed: true, progress: byTable }
    yield* sql.unsafe(
      `INSERT INTO migrate_store_progress (source, table_name) SELECT $1, unnest($2::text[])
       ON CONFLICT (source, table_name) DO UPDATE SET last_key = NULL, rows_read = 0, rows_written = 0, done = false, updated_at = now()`,
      [source, TABLES.map((t) => t.name)]
    )
    const fresh = TABLES.map((t): Progress => ({ table_name: t.name, last_key: null, rows_read: 0, done: false }))
    return { resumed: false, progress: new Map(fresh.map((p) => [p.table_name, p])) }
  })

/** A key as a jsonb parameter; none (before the first chunk) is SQL NULL, not JSON `null`. */
const asJson = (key: ReadonlyArray<KeyValue> | null) => (key === null ? null : JSON.stringify(key))

const Written = Schema.Struct({ written: Schema.Number })

/**
 * Copies `table` from its resume point on. Each chunk is written and the resume point moved in one
 * transaction; the move only applies from the point this run started the chunk at, so a second
 * migrate-store copying the same file at the same time stops instead of both advancing it.
 */
const copyTable = (
  io: { readonly source: SqliteClient.SqliteClient; readonly dest: SqlClient.SqlClient; readonly sourceId: string; readonly chunkSize: number },
  table: TableSpec,
  start: Progress,
  onChunk: (rows: number, read: number) => Effect.Effect<void>
) =>
  Effect.gen(function* () {
    const decode = Schema.decodeUnknown(Schema.Array(rowSchema(table)))
    let after: ReadonlyArray<KeyValue> | null = start.last_key
    let read = start.rows_read
    let written = 0
    for (;;) {
      const query = sqliteChunk(table, after, io.chunkSize)
      const rows = yield* io.source.unsafe(query.sql, query.params).pipe(Effect.flatMap(decode))
      const last = rows.length === 0 ? after : keyOf(table, rows[rows.length - 1]!)
      const done = rows.length < io.chunkSize
      const insert = pgInsert(table, rows)
      const chunkWritten = yield* Effect.gen(function* () {
        const [result] = rows.length === 0 ? [{ written: 0 }] : yield* io.dest.unsafe(insert.sql, insert.params).pipe(Effect.flatMap(Schema.decodeUnknown(Schema.Array(Written))))
        const moved = yield* io.dest.unsafe(
          `UPDATE migrate_store_progress SET last_key = $3::jsonb, rows_read = rows_read + $4, rows_written = rows_written + $5, done = $6, updated_at = now()
           WHERE source = $1 AND table_name = $2 AND last_key IS NOT DISTINCT FROM $7::jsonb RETURNING 1`,
          [io.sourceId, table.name, asJson(last), rows.length, result?.written ?? 0, done, asJson(after)]
        )
        if (moved.length !== 1) {
          return yield* fail(`another migrate-store is copying the same file into this database (its resume point for ${table.name} moved): let it finish.`)
        }
        return result?.written ?? 0
      }).pipe(io.dest.withTransaction)
      after = last
      read += rows.length
      written += chunkWritten
      if (rows.length > 0) yield* onChunk(rows.length, read)
      if (done) return { read, written }
    }
  }).pipe(
    Effect.catchTags({
      SqlError: (e) => fail(`stopped while copying ${table.name}: ${reasonOf(e)}. What was copied is kept: run the same command again to resume.`),
      ParseError: (e) => {
        const issue = ParseResult.ArrayFormatter.formatErrorSync(e)[0]
        return fail(`${table.name} holds a row the platform never writes (${issue?.path.slice(1).join(".") ?? "?"}: ${issue?.message ?? e.message}); nothing of it after the previous row was copied.`)
      }
    })
  )

const perSecond = (rows: number, ms: number) => Math.round(rows / Math.max(ms / 1000, 0.001))

/** Every table, in order, from its resume point; a summary at the end. */
const copyAll = (options: MigrateOptions, source: SqliteClient.SqliteClient) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const sourceLabel = `sqlite:${options.from}`
    const destLabel = describeDatabaseUrl(options.to)
    const dest = yield* PgClient.PgClient
    const sourceId = path.resolve(options.from)
    const run = yield* startRun(dest, sourceId)
    const totals = yield* Effect.forEach(TABLES, (t) =>
      source.unsafe(`SELECT count(*) AS n FROM "${t.name}"`).pipe(
        Effect.flatMap(Schema.decodeUnknown(Schema.Array(Count))),
        Effect.map((rows) => rows[0]?.n ?? 0)
      )
    )
    const todo = TABLES.map((table, i) => ({ table, total: totals[i]!, start: run.progress.get(table.name)! }))
    const chunks = todo.reduce((n, t) => n + (t.start.done ? 0 : Math.ceil(Math.max(0, t.total - t.start.rows_read) / options.chunkSize)), 0)
    yield* Effect.logInfo(
      `migrate-store: ${run.resumed ? "resuming the interrupted copy" : "copying"} ${sourceLabel} (${totals.reduce((a, b) => a + b, 0)} rows) into ${destLabel}, ${options.chunkSize} rows per chunk`
    )
    const bar = options.tty ? yield* makeProgress(chunks, { tty: true }) : undefined
    const startedAt = yield* Clock.currentTimeMillis
    const results: Array<TableResult> = []
    for (const { start, table, total } of todo) {
      if (start.done) {
        results.push({ table: table.name, total, read: 0, written: 0, resumedAfter: start.rows_read })
        continue
      }
      const tableStart = yield* Clock.currentTimeMillis
      let lastLog = tableStart
      const onChunk = (rows: number, read: number) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const rate = perSecond(read - start.rows_read, now - tableStart)
          const label = `${table.name} ${read}/${Math.max(total, read)} rows, ${rate} rows/s`
          if (bar !== undefined) return yield* bar.page(label, rows)
          if (now - lastLog < 2_000) return
          lastLog = now
          yield* Effect.logInfo(`migrate-store: ${label} (${Math.floor((100 * read) / Math.max(total, read, 1))}%)`)
        })
      const copied = yield* copyTable({ source, dest, sourceId, chunkSize: options.chunkSize }, table, start, onChunk)
      results.push({ table: table.name, total, read: copied.read - start.rows_read, written: copied.written, resumedAfter: start.rows_read })
      if (bar === undefined) yield* Effect.logInfo(`migrate-store: ${table.name} copied (${copied.read} rows)`)
    }
    if (bar !== undefined) yield* bar.done
    const ms = (yield* Clock.currentTimeMillis) - startedAt
    for (const r of results) {
      const resumed = r.resumedAfter > 0 ? (r.read === 0 && r.written === 0 ? ", finished by the interrupted run" : `, resumed after ${r.resumedAfter}`) : ""
      yield* Effect.logInfo(`migrate-store: ${r.table}: ${r.total} rows in the source, ${r.read} read and ${r.written} new or changed in this run${resumed}`)
    }
    const read = results.reduce((n, r) => n + r.read, 0)
    const written = results.reduce((n, r) => n + r.written, 0)
    yield* Effect.logInfo(
      written === 0
        ? `migrate-store: nothing new to copy: ${destLabel} already holds every row of ${sourceLabel} (${read} rows checked in ${(ms / 1000).toFixed(1)} s)`
        : `migrate-store done: ${written} rows written to ${destLabel} in ${(ms / 1000).toFixed(1)} s (${perSecond(read, ms)} rows/s); it now holds every row of ${sourceLabel}`
    )
    return results
  }).pipe(
    Effect.catchTags({
      SqlError: (e) => fail(`${reasonOf(e)}. What was copied is kept: run the same command again to resume.`),
      ParseError: (e) => fail(`an unexpected answer: ${e.message}`)
    })
  )

/** The whole copy, from `options.from` into `options.to`; returns what each table did. */
export const runMigrateStore = (options: MigrateOptions) =>
  Effect.gen(function* () {
    // Both ends are checked before anything is written, the source first: it needs no server.
    const source = yield* openSource(options.from)
    yield* probe(options.to)
    return yield* copyAll(options, source).pipe(
      Effect.provide(pgLayer(options.to, 2)),
      Effect.catchTag("PostgresRefused", (e) => fail(`--to ${describeDatabaseUrl(options.to)} cannot be used: ${e.reason}.`))
    )
  }).pipe(
    Effect.onInterrupt(() => Effect.logWarning("migrate-store interrupted: what was copied is kept; run the same command again to resume")),
    Effect.scoped,
    Effect.annotateLogs({ service: "migrate-store" })
  )

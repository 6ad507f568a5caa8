import { Reactivity } from "@effect/experimental"
import { FileSystem, Path } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { SqliteClient, SqliteMigrator } from "@effect/sql-sqlite-node"
import { Context, Duration, Effect, ExecutionStrategy, Exit, Layer, Option, Schedule, Schema, Scope } from "effect"
import CreateTicks from "./migrations/0001_create_ticks.js"
import CreateCandles from "./migrations/0002_create_candles.js"
import IncrementalCandles from "./migrations/0003_incremental_candles.js"
import Trades from "./migrations/0004_trades.js"
import { WAL_AUTOCHECKPOINT_PAGES } from "./Checkpointer.js"
import { classifyStorageFailure, lockedTooLong, StorageBusy, StorageUnavailable } from "./StorageErrors.js"

/** Migrations live in code (no directory globbing in dist/); the migrator records what ran. */
const migrations = {
  "0001_create_ticks": CreateTicks,
  "0002_create_candles": CreateCandles,
  "0003_incremental_candles": IncrementalCandles,
  "0004_trades": Trades
}
const LATEST_MIGRATION = Math.max(...Object.keys(migrations).map((name) => Number(name.split("_")[0])))

/**
 * How long start-up waits for another process's write lock before it gives up. The wait is a loop
 * of short tries at the Effect level (busy_timeout 0, then a sleep), never a synchronous busy wait:
 * better-sqlite3 runs on the event loop, so SQLite's own busy handler would freeze the process.
 */
export const STARTUP_LOCK_WAIT = Duration.seconds(5)
const STARTUP_RETRY_SPACING = Duration.millis(100)

/**
 * busy_timeout once started. SQLite's busy handler sleeps synchronously inside the statement, and
 * every statement runs on the event loop (one connection), so this is also the longest a write under
 * another process's lock may freeze the HTTP server and the consumer. 200 ms outlasts the ordinary
 * contention with a second process on the same file (a batch insert or a WAL checkpoint takes a few
 * milliseconds to a few tens) while keeping a stall short; a longer lock makes the write fail with
 * SQLITE_BUSY, the consumer retries the batch with backoff and /health reports the store.
 */
export const BUSY_TIMEOUT_MS = 200

const MigrationsRow = Schema.Struct({ latest: Schema.NullOr(Schema.Number) })

/**
 * One try at opening `filename`: connect, WAL, a write check, migrations. better-sqlite3's default
 * busy timeout (5 s, set when the connection opens) is replaced by 0 before any statement touches the
 * file, so a lock fails this try at once with StorageBusy instead of blocking the event loop.
 */
const openOnce = (filename: string, busyTimeoutMs: number) =>
  Effect.gen(function* () {
    const fail = (cause: unknown) => Effect.fail(classifyStorageFailure(filename, cause))
    // better-sqlite3 throws from its constructor, which SqliteClient.make runs unguarded: that is a
    // failure to open (a directory, a missing permission), not a bug.
    const client = yield* SqliteClient.make({ filename, disableWAL: true }).pipe(Effect.catchAllDefect(fail))
    const sql: SqlClient.SqlClient = client

    // Takes the write lock and writes (rolled back): a read-only file or a held lock shows here,
    // before the migrator, which takes a failed write for "another migrator is running" and skips.
    const writeCheck = Effect.acquireUseRelease(
      sql`BEGIN IMMEDIATE`,
      () => sql`CREATE TABLE storage_write_check (x)`,
      // A failed statement may have ended the transaction already; then there is nothing to undo.
      () => Effect.asVoid(Effect.exit(sql`ROLLBACK`))
    )

    const latestMigration = sql`SELECT MAX(migration_id) AS latest FROM effect_sql_migrations`.pipe(
      Effect.flatMap(Schema.decodeUnknown(Schema.Array(MigrationsRow))),
      Effect.map((rows) => rows[0]?.latest ?? 0)
    )

    yield* Effect.gen(function* () {
      yield* sql`PRAGMA busy_timeout = 0`
      yield* sql`PRAGMA journal_mode = WAL`
      yield* sql`PRAGMA synchronous = NORMAL`
      yield* sql.unsafe(`PRAGMA wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`)
      yield* writeCheck
      yield* SqliteMigrator.run({ loader: SqliteMigrator.fromRecord(migrations) })
      // The migrator skips its work when it cannot write (it assumes another migrator holds the lock).
      if ((yield* latestMigration) < LATEST_MIGRATION) {
        return yield* new StorageBusy({ cause: "the migrations could not take the write lock" })
      }
      yield* sql.unsafe(`PRAGMA busy_timeout = ${busyTimeoutMs}`)
    }).pipe(
      Effect.provideService(SqliteClient.SqliteClient, client),
      Effect.provideService(SqlClient.SqlClient, client),
      // A failing migration is a defect of the migrator (orDie); here it means this file cannot be used.
      Effect.catchSomeDefect((defect) =>
        typeof defect === "object" && defect !== null && "_tag" in defect && defect._tag === "MigrationError"
          ? Option.some(fail(defect))
          : Option.none()
      ),
      Effect.catchAll((error) => (error._tag === "StorageBusy" || error._tag === "StorageUnavailable" ? Effect.fail(error) : fail(error)))
    )
    return Context.make(SqliteClient.SqliteClient, client).pipe(Context.add(SqlClient.SqlClient, client))
  })

/** Runs `effect` in a scope of its own, closed at once when it fails and otherwise with the caller's. */
const inOwnScope = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.scope, (outer) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function* () {
        const inner = yield* Scope.fork(outer, ExecutionStrategy.sequential)
        const exit = yield* Effect.exit(restore(Scope.extend(effect, inner)))
        if (Exit.isFailure(exit)) yield* Scope.close(inner, exit)
        return yield* exit
      })
    )
  )

/** Opens `filename`, trying again while another process holds the write lock, up to STARTUP_LOCK_WAIT. */
const open = (filename: string, busyTimeoutMs: number) =>
  Effect.gen(function* () {
    // The write path and the trade reads open connections of their own to the same file (TickWriter,
    // TickRepo); a second connection to an in-memory database would be another, empty database.
    if (filename === "" || filename === ":memory:" || filename.startsWith("file::memory:")) {
      return yield* new StorageUnavailable({
        path: filename,
        reason: "an in-memory database cannot be shared by the platform's connections",
        advice: "give the path of a database file, e.g. STORAGE_PATH=data/app.db"
      })
    }
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    yield* fs.makeDirectory(path.dirname(path.resolve(filename)), { recursive: true }).pipe(
      Effect.mapError((e) => classifyStorageFailure(filename, e))
    )
    const attempt = inOwnScope(openOnce(filename, busyTimeoutMs))
    return yield* attempt.pipe(
      Effect.catchTag("StorageBusy", () =>
        Effect.logWarning(
          `STORAGE_PATH=${filename} is locked by another process; waiting up to ${Duration.toSeconds(STARTUP_LOCK_WAIT)} s for its write lock`
        ).pipe(
          Effect.zipRight(Effect.sleep(STARTUP_RETRY_SPACING)),
          Effect.zipRight(
            Effect.retry(attempt, {
              schedule: Schedule.spaced(STARTUP_RETRY_SPACING).pipe(Schedule.upTo(STARTUP_LOCK_WAIT)),
              while: (e) => e._tag === "StorageBusy"
            })
          )
        )
      )
    )
  }).pipe(Effect.catchTag("StorageBusy", (e) => Effect.fail(lockedTooLong(filename, STARTUP_LOCK_WAIT, e.cause))))

/**
 * A migrated SQLite database at `filename` in WAL mode, its directory created when missing. Every
 * way it can fail to open, set up or migrate is a StorageUnavailable with a one-line message.
 */
export const sqliteLayer = (
  filename: string,
  busyTimeoutMs: number = BUSY_TIMEOUT_MS
): Layer.Layer<SqliteClient.SqliteClient | SqlClient.SqlClient, StorageUnavailable> =>
  Layer.scopedContext(open(filename, busyTimeoutMs)).pipe(Layer.provide(Layer.merge(Reactivity.layer, NodeContext.layer)))

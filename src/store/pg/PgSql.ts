import { Reactivity } from "@effect/experimental"
import { NodeContext } from "@effect/platform-node"
import { SqlClient, SqlError } from "@effect/sql"
import { PgClient, PgMigrator } from "@effect/sql-pg"
import { Cause, Context, Data, Duration, Effect, Layer, Schedule } from "effect"
import pg from "pg"
import Schema0001 from "./migrations/0001_schema.js"

/** Migrations live in code (no directory globbing in dist/); the migrator records what ran. */
const migrations = { "0001_schema": Schema0001 }

/** Any fixed number: the advisory lock that lets one process at a time run the migrations. */
const MIGRATION_LOCK = 7_341_209

/** How often start-up tries again while the server cannot be reached. */
const CONNECT_RETRY = Duration.seconds(2)

/** The URL without its password: what logs, errors and /health may show. */
export const describeDatabaseUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.toString()
  } catch {
    return "(an unparsable DATABASE_URL)"
  }
}

/**
 * BIGINT (int8) columns as JavaScript numbers: every one holds an instant in µs, an id or a count,
 * all far below 2^53. pg's default is a string, which every row decoder would have to parse again.
 */
const INT8_OID = 20
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig["getTypeParser"]
}

/** The server refused this URL for good (no such database, bad credentials): retrying cannot help. */
export class PostgresRefused extends Data.TaggedError("PostgresRefused")<{ readonly url: string; readonly reason: string }> {
  override get message() {
    return `Storage error: DATABASE_URL=${describeDatabaseUrl(this.url)} cannot be used: ${this.reason}.`
  }
}

/** The PostgreSQL error code (SQLSTATE) or Node's errno code along `cause`'s chain. */
export const pgErrorCode = (cause: unknown): string | undefined => {
  for (let e = cause, depth = 0; typeof e === "object" && e !== null && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    const { code } = e as { code?: unknown }
    if (typeof code === "string") return code
    const errors = (e as { errors?: unknown }).errors // AggregateError (IPv4 and IPv6 both refused)
    if (Array.isArray(errors) && errors.length > 0) return pgErrorCode(errors[0])
  }
  return undefined
}

/**
 * One sentence on why a connection or statement failed, for logs and /health: the innermost message
 * along `cause`'s chain (the driver's, e.g. "connect ECONNREFUSED 127.0.0.1:5432"), not a wrapper's
 * "Failed to execute statement".
 */
export const pgFailureReason = (cause: unknown): string => {
  const code = pgErrorCode(cause)
  let found: string | undefined
  for (let e = cause, depth = 0; typeof e === "object" && e !== null && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    const { message } = e as { message?: unknown }
    if (typeof message === "string" && message !== "") found = message
    const errors = (e as { errors?: unknown }).errors
    if (Array.isArray(errors) && errors[0] instanceof Error && errors[0].message !== "") found = errors[0].message
  }
  if (found === undefined) return code ?? "the server did not answer"
  return code === undefined || found.includes(code) ? found : `${found} (${code})`
}

/**
 * @effect/sql makes a failed COMMIT or ROLLBACK (a connection lost mid-transaction, the server
 * restarting) a defect; the transaction did not commit, so it is a failure the writer's caller (the
 * consumer) retries like any other. Put it around `sql.withTransaction`.
 */
export const defectAsFailure = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError.SqlError, R> =>
  Effect.catchAllDefect(effect, (defect) => (defect instanceof SqlError.SqlError ? Effect.fail(defect) : Effect.die(defect)))

/** Errors that say the URL itself is wrong, not that the server is down. */
const REFUSED: Record<string, string> = {
  "3D000": "the database does not exist: create it (createdb) or name an existing one in DATABASE_URL",
  "28P01": "the server refused the password: check the user and password in DATABASE_URL",
  "28000": "the server refused this user: check the user in DATABASE_URL and the server's pg_hba.conf",
  "42501": "the user may not create the platform's tables: grant it CREATE on the database or use its owner"
}

/**
 * The pool, created without connecting: `PgClient.make` would run a first query and fail while the
 * server is down, and the store is to start without it (below). Idle connections the server drops
 * (a restart) are discarded by the pool; the queries on them fail and are retried by their callers.
 */
const connect = (url: string, poolSize: number) =>
  PgClient.fromPool({
    acquire: Effect.acquireRelease(
      Effect.sync(() => {
        const pool = new pg.Pool({
          connectionString: url,
          max: poolSize,
          connectionTimeoutMillis: 5_000,
          idleTimeoutMillis: 30_000,
          application_name: "crypto-streaming-platform",
          types
        })
        pool.on("error", () => {})
        return pool
      }),
      (pool) => Effect.promise(() => pool.end().catch(() => undefined)).pipe(Effect.timeoutOption(1000))
    ),
    applicationName: "crypto-streaming-platform",
    types
  })

/**
 * Runs the migrations while holding a session advisory lock on a connection of its own, so processes
 * starting together migrate one after the other (the others then find nothing left to run). The
 * migrator runs its own transaction on the pool; PostgreSQL aborts a transaction at its first failed
 * statement, so the lock cannot be taken inside it.
 */
const migrate = (url: string) =>
  Effect.acquireUseRelease(
    Effect.tryPromise(async () => {
      const lock = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000, application_name: "crypto-streaming-platform migrations" })
      lock.on("error", () => {}) // a lost connection releases the lock; the migrator's own failure says why
      await lock.connect()
      try {
        await lock.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK])
      } catch (e) {
        await lock.end()
        throw e
      }
      return lock
    }),
    () => PgMigrator.run({ loader: PgMigrator.fromRecord(migrations) }),
    (lock) => Effect.promise(() => lock.end().catch(() => undefined))
  )

/**
 * The PostgreSQL store at `url`, migrated. Start-up tries the server once: a URL it refuses for good
 * (no such database, a wrong password) stops the process with one sentence. A server that cannot be
 * reached (down, starting) does not stop it: the store starts anyway and keeps trying every 2 s in
 * the background, migrating once it answers. Meanwhile every read and write fails like any lost
 * connection would: the API answers 503, /health says the store is down and why, the consumer keeps
 * its batches unacknowledged and retries them.
 */
export const pgLayer = (url: string, poolSize: number): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, PostgresRefused> =>
  Layer.scopedContext(
    Effect.gen(function* () {
      const where = describeDatabaseUrl(url)
      const client = yield* connect(url, poolSize).pipe(Effect.mapError((e) => new PostgresRefused({ url, reason: pgFailureReason(e) })))
      const refused = (cause: unknown) => {
        const reason = REFUSED[pgErrorCode(cause) ?? ""]
        return reason === undefined ? undefined : new PostgresRefused({ url, reason: `${reason} (${pgFailureReason(cause)})` })
      }
      const setUp = migrate(url).pipe(
        Effect.provideService(SqlClient.SqlClient, client),
        Effect.provideService(PgClient.PgClient, client),
        Effect.provide(NodeContext.layer),
        Effect.catchAllCause((cause) => Effect.fail(Cause.squash(cause)))
      )
      const first = yield* Effect.either(setUp)
      if (first._tag === "Left") {
        const failure = first.left
        const forGood = refused(failure)
        if (forGood !== undefined) return yield* forGood
        yield* Effect.logWarning(
          `PostgreSQL at ${where} is not reachable (${pgFailureReason(failure)}); starting without it: reads answer 503 and ` +
            `writes are retried until it is; trying again every ${Duration.format(CONNECT_RETRY)}`
        )
        let attempts = 0
        yield* setUp.pipe(
          Effect.tapError((e) =>
            ++attempts % 30 === 0 ? Effect.logWarning(`PostgreSQL at ${where} is still not reachable (${pgFailureReason(e)})`) : Effect.void
          ),
          Effect.retry(Schedule.spaced(CONNECT_RETRY)),
          Effect.zipRight(Effect.logInfo(`PostgreSQL at ${where} is reachable; the store is ready`)),
          Effect.forkScoped
        )
      }
      return Context.make(PgClient.PgClient, client).pipe(Context.add(SqlClient.SqlClient, client))
    })
  ).pipe(Layer.provide(Reactivity.layer))

import type { SqlClient } from "@effect/sql"
import { Duration, Effect, Layer } from "effect"
import * as AppConfig from "../Config.js"
import { CandleRepo } from "./CandleRepo.js"
import { checkpointer } from "./Checkpointer.js"
import { LiveReads, SqliteLiveReadsLive } from "./LiveReads.js"
import { PgCandleRepoLive } from "./pg/PgCandleRepo.js"
import { PgLiveReadsLive } from "./pg/PgLiveReads.js"
import { describeDatabaseUrl, pgFailureReason, pgLayer, type PostgresRefused } from "./pg/PgSql.js"
import { PgTickRepoLive } from "./pg/PgTickRepo.js"
import { PgTickWriterLive } from "./pg/PgTickWriter.js"
import { PgTradeRepoLive } from "./pg/PgTradeRepo.js"
import { PgTradeWriterLive } from "./pg/PgTradeWriter.js"
import { sqliteLayer, STARTUP_LOCK_WAIT } from "./Sql.js"
import type { StorageUnavailable } from "./StorageErrors.js"
import { TickRepo } from "./TickRepo.js"
import { TickWriter } from "./TickWriter.js"
import { TradeRepo } from "./TradeRepo.js"
import { TradeWriter } from "./TradeWriter.js"

/**
 * The store port: every repository the platform reads and writes through. `STORE` picks the adapter
 * (SQLite, the embedded default, or PostgreSQL), here and nowhere else; the API, BI reports,
 * backfill, gap repair and the sinks see only these services.
 */
export type StoreServices = SqlClient.SqlClient | TickRepo | TradeRepo | CandleRepo | TickWriter | TradeWriter | LiveReads

export type StoreStartError = StorageUnavailable | PostgresRefused

/** The SQLite store in `filename` (created and migrated when new). */
export const sqliteStore = (filename: string, busyTimeoutMs?: number): Layer.Layer<StoreServices, StorageUnavailable> =>
  Layer.mergeAll(
    TickRepo.Default,
    TradeRepo.Default,
    CandleRepo.Default,
    TickWriter.Default,
    TradeWriter.Default,
    SqliteLiveReadsLive,
    // after the file is migrated (provideMerge builds sqliteLayer first), stopped before it closes
    Layer.scopedDiscard(checkpointer(filename))
  ).pipe(Layer.provideMerge(sqliteLayer(filename, busyTimeoutMs)))

/** The PostgreSQL store at `url` (migrated at start; start-up waits while the server is down). */
export const postgresStore = (url: string, poolSize = 10): Layer.Layer<StoreServices, PostgresRefused> =>
  Layer.mergeAll(PgTickRepoLive, PgTradeRepoLive, PgCandleRepoLive, PgTickWriterLive, PgTradeWriterLive, PgLiveReadsLive).pipe(
    Layer.provideMerge(pgLayer(url, poolSize))
  )

const chosen = (busyTimeoutMs?: number) =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const settings = yield* AppConfig.storeSettings
      if (settings.kind === "postgres" && settings.url !== undefined) {
        return postgresStore(settings.url, settings.poolSize) as Layer.Layer<StoreServices, StoreStartError>
      }
      return sqliteStore(yield* AppConfig.storagePath, busyTimeoutMs)
    })
  )

/** The store STORE names, for the long-running roles. */
export const StoreLive = chosen()

/**
 * The same for the one-shot commands (backfill, bi-build): on SQLite a write waits for another
 * process's lock as long as start-up does (they serve no HTTP and do not retry a failed write).
 */
export const StoreForCommands = chosen(Duration.toMillis(STARTUP_LOCK_WAIT))

/**
 * Where the configured store lives, as /health shows it (a PostgreSQL URL without its password), and
 * how to say why a read of it failed: the driver's own words on PostgreSQL ("connect ECONNREFUSED …").
 */
export const storeLocation = Effect.map(AppConfig.storeSettings, (settings) =>
  settings.kind === "postgres" && settings.url !== undefined
    ? { kind: settings.kind, where: describeDatabaseUrl(settings.url), reason: (e: Error) => pgFailureReason(e) }
    : { kind: settings.kind, where: "", reason: (e: Error) => e.message }
)

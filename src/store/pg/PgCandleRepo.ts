import { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Effect, Layer } from "effect"
import { CandleRepo, makeCandleRepo } from "../CandleRepo.js"
import { POSTGRES } from "../CandleRows.js"
import { lockSymbols } from "./PgCandleLocks.js"

/**
 * CandleRepo on PostgreSQL: the SQLite repository's statements in PostgreSQL's dialect; a kline write
 * locks its symbols first, as the tick writer does, so a day is never rebuilt and merged at once.
 */
export const PgCandleRepoLive: Layer.Layer<CandleRepo, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.effect(
  CandleRepo,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return CandleRepo.make(yield* makeCandleRepo({ dialect: POSTGRES, lockSymbols: lockSymbols(sql) }))
  })
)

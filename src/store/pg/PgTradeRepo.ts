import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Effect, Layer } from "effect"
import { TradeRepo } from "../TradeRepo.js"

// PRE-WIRED STUB (lead): replace with the PostgreSQL adapter of TradeRepo, keeping this export's type.
export const PgTradeRepoLive: Layer.Layer<TradeRepo, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.effect(
  TradeRepo,
  Effect.dieMessage("PgTradeRepo: not built yet")
)

import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Effect, Layer } from "effect"
import { TradeWriter } from "../TradeWriter.js"

// PRE-WIRED STUB (lead): replace with the PostgreSQL adapter of TradeWriter, keeping this export's type.
export const PgTradeWriterLive: Layer.Layer<TradeWriter, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.effect(
  TradeWriter,
  Effect.dieMessage("PgTradeWriter: not built yet")
)

import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Effect, Layer } from "effect"
import { CandleRepo } from "../CandleRepo.js"

// PRE-WIRED STUB (lead): replace with the PostgreSQL adapter of CandleRepo, keeping this export's type.
export const PgCandleRepoLive: Layer.Layer<CandleRepo, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.effect(
  CandleRepo,
  Effect.dieMessage("PgCandleRepo: not built yet")
)

import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Effect, Layer } from "effect"
import { TickRepo } from "../TickRepo.js"

// PRE-WIRED STUB (lead): replace with the PostgreSQL adapter of TickRepo, keeping this export's type.
export const PgTickRepoLive: Layer.Layer<TickRepo, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.effect(
  TickRepo,
  Effect.dieMessage("PgTickRepo: not built yet")
)

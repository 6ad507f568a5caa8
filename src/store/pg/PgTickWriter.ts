import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Effect, Layer } from "effect"
import { TickWriter } from "../TickWriter.js"

// PRE-WIRED STUB (lead): replace with the PostgreSQL adapter of TickWriter, keeping this export's type.
export const PgTickWriterLive: Layer.Layer<TickWriter, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.effect(
  TickWriter,
  Effect.dieMessage("PgTickWriter: not built yet")
)

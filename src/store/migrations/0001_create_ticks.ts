import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Bronze layer: one row per contract event. The primary key is the event's identity (symbol and the
 * instant in microseconds), so a replayed event is ignored; it also serves every (symbol, time) query.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE ticks (
      symbol TEXT NOT NULL,
      ts_us INTEGER NOT NULL,
      timestamp_utc TEXT NOT NULL,
      last_price TEXT NOT NULL,
      price_change_percent TEXT NOT NULL,
      volume TEXT NOT NULL,
      source TEXT NOT NULL,
      event_time TEXT,
      ingested_at TEXT NOT NULL,
      PRIMARY KEY (symbol, ts_us)
    ) WITHOUT ROWID`
  yield* sql`CREATE INDEX ticks_ts ON ticks (ts_us)`
  yield* sql`
    CREATE TABLE symbol_stats (
      symbol TEXT PRIMARY KEY,
      latest_us INTEGER NOT NULL,
      latest_timestamp_utc TEXT NOT NULL,
      events INTEGER NOT NULL
    ) WITHOUT ROWID`
})

import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Aggregate trades, one row per (symbol, aggregate trade id): a trade seen twice (a renewal's
 * overlap, a Kafka redelivery, a repair) is stored once. `trade_gaps` records each range of ids found
 * missing and what became of it: `missing` (waiting for repair), `repaired`, or `unrepairable` with
 * the reason; a range partly repaired is split.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE trades (
      symbol TEXT NOT NULL,
      agg_trade_id INTEGER NOT NULL,
      price TEXT NOT NULL,
      quantity TEXT NOT NULL,
      first_trade_id INTEGER NOT NULL,
      last_trade_id INTEGER NOT NULL,
      trade_time_us INTEGER NOT NULL,
      is_buyer_maker INTEGER NOT NULL,
      source TEXT NOT NULL,
      PRIMARY KEY (symbol, agg_trade_id)
    ) WITHOUT ROWID`
  yield* sql`CREATE INDEX trades_time ON trades (symbol, trade_time_us)`
  yield* sql`
    CREATE TABLE trade_gaps (
      symbol TEXT NOT NULL,
      from_id INTEGER NOT NULL,
      to_id INTEGER NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('missing', 'repaired', 'unrepairable')),
      reason TEXT,
      detected_at TEXT NOT NULL,
      resolved_at TEXT,
      PRIMARY KEY (symbol, from_id)
    ) WITHOUT ROWID`
  yield* sql`CREATE INDEX trade_gaps_state ON trade_gaps (state, symbol)`
})

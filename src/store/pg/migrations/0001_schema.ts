import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The PostgreSQL schema: the same tables, columns and identities as the SQLite store's migrations
 * 0001–0004 end with (store/migrations/), so every read and write means the same on both. Instants
 * are BIGINT microseconds (ms for candle open times), prices TEXT exactly as Binance sent them,
 * the `*_num` merge columns DOUBLE PRECISION.
 *
 * Layout for size (ARCHITECTURE.md, "PostgreSQL store"): every unique key holds the time column, so
 * a TimescaleDB user can turn `ticks`, `trades` and `candles` into hypertables as they stand
 * (`create_hypertable(..., migrate_data => true)`), and rows arrive in time order, so a BRIN index
 * answers "everything in this time range" with a few pages for a year of data.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE ticks (
      symbol TEXT NOT NULL,
      ts_us BIGINT NOT NULL,
      timestamp_utc TEXT NOT NULL,
      last_price TEXT NOT NULL,
      price_change_percent TEXT NOT NULL,
      volume TEXT NOT NULL,
      source TEXT NOT NULL,
      event_time TEXT,
      ingested_at TEXT NOT NULL,
      PRIMARY KEY (symbol, ts_us)
    )`
  yield* sql`CREATE INDEX ticks_ts_brin ON ticks USING brin (ts_us)`
  yield* sql`
    CREATE TABLE symbol_stats (
      symbol TEXT PRIMARY KEY,
      latest_us BIGINT NOT NULL,
      latest_timestamp_utc TEXT NOT NULL,
      events BIGINT NOT NULL
    )`
  yield* sql`
    CREATE TABLE candles (
      symbol TEXT NOT NULL,
      interval TEXT NOT NULL,
      source TEXT NOT NULL,
      open_time BIGINT NOT NULL,
      open TEXT NOT NULL,
      high TEXT NOT NULL,
      low TEXT NOT NULL,
      close TEXT NOT NULL,
      volume TEXT NOT NULL,
      quote_volume TEXT NOT NULL,
      trades BIGINT NOT NULL,
      closed SMALLINT NOT NULL,
      first_us BIGINT,
      last_us BIGINT,
      high_num DOUBLE PRECISION,
      high_us BIGINT,
      low_num DOUBLE PRECISION,
      low_us BIGINT,
      PRIMARY KEY (symbol, interval, source, open_time)
    )`
  yield* sql`
    CREATE TABLE daily_candles (
      symbol TEXT NOT NULL,
      date TEXT NOT NULL,
      open TEXT NOT NULL,
      high TEXT NOT NULL,
      low TEXT NOT NULL,
      close TEXT NOT NULL,
      volume TEXT NOT NULL,
      quote_volume TEXT NOT NULL,
      trades BIGINT NOT NULL,
      closed SMALLINT NOT NULL,
      source TEXT NOT NULL,
      basis TEXT,
      first_us BIGINT,
      last_us BIGINT,
      high_num DOUBLE PRECISION,
      high_us BIGINT,
      low_num DOUBLE PRECISION,
      low_us BIGINT,
      open_minutes INTEGER,
      PRIMARY KEY (symbol, date)
    )`
  // The identity is (symbol, agg_trade_id); an id always comes with the same time, so the key that
  // also holds the time is as unique and lets the table become a hypertable.
  yield* sql`
    CREATE TABLE trades (
      symbol TEXT NOT NULL,
      agg_trade_id BIGINT NOT NULL,
      price TEXT NOT NULL,
      quantity TEXT NOT NULL,
      first_trade_id BIGINT NOT NULL,
      last_trade_id BIGINT NOT NULL,
      trade_time_us BIGINT NOT NULL,
      is_buyer_maker SMALLINT NOT NULL,
      source TEXT NOT NULL,
      PRIMARY KEY (symbol, agg_trade_id, trade_time_us)
    )`
  yield* sql`CREATE INDEX trades_time ON trades (symbol, trade_time_us, agg_trade_id)`
  yield* sql`
    CREATE TABLE trade_gaps (
      symbol TEXT NOT NULL,
      from_id BIGINT NOT NULL,
      to_id BIGINT NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('missing', 'repaired', 'unrepairable')),
      reason TEXT,
      detected_at TEXT NOT NULL,
      resolved_at TEXT,
      PRIMARY KEY (symbol, from_id)
    )`
  yield* sql`CREATE INDEX trade_gaps_state ON trade_gaps (state, symbol)`
})

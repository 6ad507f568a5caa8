import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Silver layer: candles by (symbol, interval, source, open_time). `source` is `klines` (Binance's own
 * candles, from backfill) or `ticks` (1m candles the consumer derives from the live 24h tickers, prices
 * only). A closed candle is final; the still-open one is replaced until it closes.
 * Gold layer: one daily candle per (symbol, date), rebuilt whenever a day's candles change.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE candles (
      symbol TEXT NOT NULL,
      interval TEXT NOT NULL,
      source TEXT NOT NULL,
      open_time INTEGER NOT NULL,
      open TEXT NOT NULL,
      high TEXT NOT NULL,
      low TEXT NOT NULL,
      close TEXT NOT NULL,
      volume TEXT NOT NULL,
      quote_volume TEXT NOT NULL,
      trades INTEGER NOT NULL,
      closed INTEGER NOT NULL,
      PRIMARY KEY (symbol, interval, source, open_time)
    ) WITHOUT ROWID`
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
      trades INTEGER NOT NULL,
      closed INTEGER NOT NULL,
      source TEXT NOT NULL,
      PRIMARY KEY (symbol, date)
    ) WITHOUT ROWID`
})

import { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Schema } from "effect"
import { CANDLE_COLUMNS, type CandleColumns, candleRow, KLINES, LiveReads, type LiveRow } from "../LiveReads.js"
import { PG_EVENT_JSON, pgDataVersion } from "./PgTickRepo.js"
import { pgTradeJson } from "./PgTradeJson.js"

const Newest = Schema.Struct({ tick_us: Schema.NullOr(Schema.Number), trade_id: Schema.NullOr(Schema.Number), kline_open: Schema.NullOr(Schema.Number) })
const decodeNewest = Schema.decodeUnknown(Schema.Tuple(Newest))

/** [key, time µs, json] rows, as the statements below select them. */
const keyed = (rows: ReadonlyArray<ReadonlyArray<unknown>>): ReadonlyArray<LiveRow> =>
  rows.map((r) => ({ key: r[0] as number, timeUs: r[1] as number, json: r[2] as string }))

/**
 * The PostgreSQL adapter of the live feed's reads, on the store's pool; each read is one statement.
 * Rows are taken as arrays (no object per row) and written without a Schema: every column was checked
 * when it was stored. The data version is TickRepo's (`pgDataVersion`).
 */
export const PgLiveReadsLive: Layer.Layer<LiveReads, never, SqlClient.SqlClient | PgClient.PgClient> = Layer.effect(
  LiveReads,
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    return LiveReads.of({
      dataVersion: pgDataVersion(sql),
      // distinct trade symbols by hopping through the primary key (one lookup each), and the tick symbols
      symbols: sql`
        WITH RECURSIVE s(symbol) AS (
          SELECT min(symbol) FROM trades
          UNION ALL SELECT (SELECT min(symbol) FROM trades WHERE symbol > s.symbol) FROM s WHERE s.symbol IS NOT NULL
        ) SELECT symbol FROM s WHERE symbol IS NOT NULL UNION SELECT symbol FROM symbol_stats ORDER BY 1`.values.pipe(
        Effect.map((rows) => rows.map((r) => r[0] as string))
      ),
      newest: (symbol) =>
        sql`SELECT
          (SELECT max(ts_us) FROM ticks WHERE symbol = ${symbol}) AS tick_us,
          (SELECT max(agg_trade_id) FROM trades WHERE symbol = ${symbol}) AS trade_id,
          (SELECT open_time FROM candles WHERE symbol = ${symbol} AND ${sql.literal(KLINES)} AND closed = 1
            ORDER BY open_time DESC LIMIT 1) AS kline_open`.pipe(
          Effect.flatMap(decodeNewest),
          Effect.catchTag("ParseError", Effect.die),
          Effect.map(([r]) => ({ tickUs: r.tick_us, tradeId: r.trade_id, klineOpen: r.kline_open }))
        ),
      ticksAfter: (symbol, afterUs, limit) =>
        sql`SELECT t.ts_us, t.ts_us, ${sql.literal(PG_EVENT_JSON)} FROM ticks t
          WHERE t.symbol = ${symbol} AND t.ts_us > ${afterUs} ORDER BY t.ts_us LIMIT ${limit}`.values.pipe(Effect.map(keyed)),
      tradesAfter: (symbol, afterId, limit) =>
        sql`SELECT t.agg_trade_id, t.trade_time_us, ${sql.literal(pgTradeJson("t"))} FROM trades t
          WHERE t.symbol = ${symbol} AND t.agg_trade_id > ${afterId} ORDER BY t.agg_trade_id LIMIT ${limit}`.values.pipe(Effect.map(keyed)),
      klinesAfter: (symbol, afterMs, limit) =>
        sql`SELECT ${sql.literal(CANDLE_COLUMNS)} FROM candles WHERE symbol = ${symbol} AND ${sql.literal(KLINES)}
          AND open_time > ${afterMs} AND closed = 1 ORDER BY open_time LIMIT ${limit}`.pipe(
          Effect.map((rows) => (rows as unknown as ReadonlyArray<CandleColumns>).map(candleRow))
        ),
      tickMinutesAfter: (symbol, afterMs, beforeMs, limit) =>
        sql`SELECT ${sql.literal(CANDLE_COLUMNS)},
            EXISTS (SELECT 1 FROM candles k WHERE k.symbol = c.symbol AND k.interval = '1m' AND k.source = 'klines'
              AND k.open_time = c.open_time) AS has_kline
          FROM candles c WHERE c.symbol = ${symbol} AND c.interval = '1m' AND c.source = 'ticks'
            AND c.open_time > ${afterMs} AND c.open_time < ${beforeMs}
          ORDER BY c.open_time LIMIT ${limit}`.pipe(
          Effect.map((rows) =>
            (rows as unknown as ReadonlyArray<CandleColumns & { has_kline: boolean }>).map((r) => ({ ...candleRow(r), hasKline: r.has_kline }))
          )
        )
    })
  })
)

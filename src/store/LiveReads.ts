import { SqlError } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Context, Effect, Layer, Schema } from "effect"
import { Candle, type Interval } from "../domain/Candles.js"
import { toCandle } from "./CandleRows.js"
import { readerConnection, type RawStatement, type RawValue } from "./RawSqlite.js"
import { EVENT_JSON } from "./TickRepo.js"
import { TRADE_JSON } from "./TradeRepo.js"

/** One stored row as the feed sends it: its cursor key, its instant (µs, to order a poll's rows) and its contract JSON. */
export interface LiveRow {
  readonly key: number
  readonly timeUs: number
  readonly json: string
}

/** A tick minute (source `ticks`) and whether a Binance kline of the same minute is stored (klines win). */
export interface TickMinuteRow extends LiveRow {
  readonly hasKline: boolean
}

/** The newest stored keys of a symbol: tick instant (µs), trade id, closed 1m kline (open time, ms); null when none. */
export interface NewestKeys {
  readonly tickUs: number | null
  readonly tradeId: number | null
  readonly klineOpen: number | null
}

/**
 * The reads of the live feed (api/live/LiveFeed): what was stored after a cursor, per symbol and
 * kind, each through a primary key. A port: SQLite (here) and PostgreSQL (pg/PgLiveReads) adapters,
 * provided by the store layers (Store.ts).
 */
export class LiveReads extends Context.Tag("store/LiveReads")<
  LiveReads,
  {
    /** Changes whenever a write was committed since the last call (or, on PostgreSQL, began). */
    readonly dataVersion: Effect.Effect<number | string, SqlError.SqlError>
    /** Every symbol with stored ticks or trades. */
    readonly symbols: Effect.Effect<ReadonlyArray<string>, SqlError.SqlError>
    readonly newest: (symbol: string) => Effect.Effect<NewestKeys, SqlError.SqlError>
    /** Ticker events with `ts_us > afterUs`, oldest first; key and time: ts_us. */
    readonly ticksAfter: (symbol: string, afterUs: number, limit: number) => Effect.Effect<ReadonlyArray<LiveRow>, SqlError.SqlError>
    /** Trades with `agg_trade_id > afterId`, by id; key: the id, time: trade_time_us. */
    readonly tradesAfter: (symbol: string, afterId: number, limit: number) => Effect.Effect<ReadonlyArray<LiveRow>, SqlError.SqlError>
    /** Closed 1m klines opening after `afterMs`, oldest first; key: open_time. */
    readonly klinesAfter: (symbol: string, afterMs: number, limit: number) => Effect.Effect<ReadonlyArray<LiveRow>, SqlError.SqlError>
    /** Tick minutes opening in (afterMs, beforeMs), oldest first, each with whether its kline is stored. */
    readonly tickMinutesAfter: (
      symbol: string,
      afterMs: number,
      beforeMs: number,
      limit: number
    ) => Effect.Effect<ReadonlyArray<TickMinuteRow>, SqlError.SqlError>
  }
>() {}

const MINUTE_MS = 60_000
const encodeCandle = Schema.encodeSync(Candle)

/** The columns CANDLE_COLUMNS reads. */
export interface CandleColumns {
  readonly symbol: string
  readonly open_time: number
  readonly open: string
  readonly high: string
  readonly low: string
  readonly close: string
  readonly volume: string
  readonly quote_volume: string
  readonly trades: number
}

export const CANDLE_COLUMNS = "symbol, open_time, open, high, low, close, volume, quote_volume, trades"
export const KLINES = "interval = '1m' AND source = 'klines'"

/**
 * A minute as a closed 1m candle in its /candles wire form. Sent only once the minute is over (a
 * closed kline, or a tick minute once a later tick is stored), so `closed` is true even for a tick
 * minute the store still holds as open (it marks one closed only when a late tick reaches it).
 */
export const candleRow = (r: CandleColumns): LiveRow => ({
  key: r.open_time,
  timeUs: (r.open_time + MINUTE_MS) * 1000,
  json: JSON.stringify(encodeCandle(toCandle({ ...r, interval: "1m" as Interval, closed: 1 })))
})

/** The statement options these reads use (better-sqlite3 has them; RawSqlite types only the common slice). */
interface RowsStatement extends RawStatement {
  pluck(on?: boolean): RowsStatement
  raw(on?: boolean): RowsStatement
  all(...params: ReadonlyArray<RawValue>): Array<any>
  get(...params: ReadonlyArray<RawValue>): any
}

/**
 * The SQLite adapter: a read connection of its own with statements prepared once (better-sqlite3,
 * synchronous); each read is one Effect that fails with a SqlError.
 */
export const SqliteLiveReadsLive: Layer.Layer<LiveReads, never, SqliteClient.SqliteClient> = Layer.scoped(
  LiveReads,
  Effect.gen(function* () {
    const reader = yield* readerConnection("the store for the live feed")
    const prepare = (text: string) => reader.prepare(text) as RowsStatement

    const version = prepare("PRAGMA data_version").pluck()
    // distinct trade symbols by hopping through the primary key (as TradeRepo), and the tick symbols
    const symbols = prepare(`
      WITH RECURSIVE s(symbol) AS (
        SELECT min(symbol) FROM trades
        UNION ALL SELECT (SELECT min(symbol) FROM trades WHERE symbol > s.symbol) FROM s WHERE s.symbol IS NOT NULL
      ) SELECT symbol FROM s WHERE symbol IS NOT NULL UNION SELECT symbol FROM symbol_stats ORDER BY 1`).pluck()
    const newestTick = prepare("SELECT max(ts_us) FROM ticks WHERE symbol = ?").pluck()
    const newestTrade = prepare("SELECT max(agg_trade_id) FROM trades WHERE symbol = ?").pluck()
    // backwards through the key: the newest closed kline is the newest row or the one before it
    const newestKline = prepare(
      `SELECT open_time FROM candles WHERE symbol = ? AND ${KLINES} AND closed = 1 ORDER BY open_time DESC LIMIT 1`
    ).pluck()
    const ticks = prepare(`SELECT ts_us, ${EVENT_JSON} FROM ticks WHERE symbol = ? AND ts_us > ? ORDER BY ts_us LIMIT ?`).raw()
    const trades = prepare(
      `SELECT agg_trade_id, trade_time_us, ${TRADE_JSON} FROM trades WHERE symbol = ? AND agg_trade_id > ? ORDER BY agg_trade_id LIMIT ?`
    ).raw()
    const klines = prepare(
      `SELECT ${CANDLE_COLUMNS} FROM candles WHERE symbol = ? AND ${KLINES} AND open_time > ? AND closed = 1 ORDER BY open_time LIMIT ?`
    )
    const tickMinutes = prepare(`
      SELECT ${CANDLE_COLUMNS},
        EXISTS (SELECT 1 FROM candles k WHERE k.symbol = c.symbol AND k.interval = '1m' AND k.source = 'klines'
          AND k.open_time = c.open_time) AS has_kline
      FROM candles c WHERE c.symbol = ? AND c.interval = '1m' AND c.source = 'ticks' AND c.open_time > ? AND c.open_time < ?
      ORDER BY c.open_time LIMIT ?`)

    const read = <A>(what: string, f: () => A) =>
      Effect.try({ try: f, catch: (cause) => new SqlError.SqlError({ cause, message: `Failed to read ${what} for the live feed` }) })
    const orNull = (x: unknown): number | null => (typeof x === "number" ? x : null)

    return LiveReads.of({
      dataVersion: read("the data version", (): number => version.get()),
      symbols: read("the symbols", (): ReadonlyArray<string> => symbols.all()),
      newest: (symbol) =>
        read("the newest keys", () => ({
          tickUs: orNull(newestTick.get(symbol)),
          tradeId: orNull(newestTrade.get(symbol)),
          klineOpen: orNull(newestKline.get(symbol))
        })),
      ticksAfter: (symbol, afterUs, limit) =>
        read("ticks", () => (ticks.all(symbol, afterUs, limit) as Array<[number, string]>).map(([us, json]) => ({ key: us, timeUs: us, json }))),
      tradesAfter: (symbol, afterId, limit) =>
        read("trades", () =>
          (trades.all(symbol, afterId, limit) as Array<[number, number, string]>).map(([key, timeUs, json]) => ({ key, timeUs, json }))
        ),
      klinesAfter: (symbol, afterMs, limit) =>
        read("klines", () => (klines.all(symbol, afterMs, limit) as Array<CandleColumns>).map(candleRow)),
      tickMinutesAfter: (symbol, afterMs, beforeMs, limit) =>
        read("tick minutes", () =>
          (tickMinutes.all(symbol, afterMs, beforeMs, limit) as Array<CandleColumns & { has_kline: number }>).map((r) => ({
            ...candleRow(r),
            hasKline: r.has_kline === 1
          }))
        )
    })
  })
)

import { SqlClient, SqlSchema } from "@effect/sql"
import { Array as Arr, Clock, Effect, Option, Schema } from "effect"
import {
  aggregate,
  bucketStart,
  type Candle,
  candlesFromTicks,
  Interval,
  intervalMs,
  mergeCandleSources,
  utcDate
} from "../domain/Candles.js"
import type { TickerEvent } from "../domain/Ticker.js"

export type CandleSource = "klines" | "ticks"

const DAY_MS = 86_400_000

const CandleRow = Schema.Struct({
  symbol: Schema.String,
  interval: Interval,
  source: Schema.Literal("klines", "ticks"),
  open_time: Schema.Number,
  open: Schema.String,
  high: Schema.String,
  low: Schema.String,
  close: Schema.String,
  volume: Schema.String,
  quote_volume: Schema.String,
  trades: Schema.Number,
  closed: Schema.Number
})
type CandleRow = typeof CandleRow.Type

const toCandle = (r: CandleRow): Candle => ({
  symbol: r.symbol,
  interval: r.interval,
  openTime: r.open_time,
  open: r.open,
  high: r.high,
  low: r.low,
  close: r.close,
  volume: r.volume,
  quoteVolume: r.quote_volume,
  trades: r.trades,
  closed: r.closed === 1
})

/** One row of the gold layer: the day's candle and which source it was built from. */
export const DailyCandle = Schema.Struct({
  symbol: Schema.String,
  date: Schema.String,
  open: Schema.String,
  high: Schema.String,
  low: Schema.String,
  close: Schema.String,
  volume: Schema.String,
  quote_volume: Schema.String,
  trades: Schema.Number,
  closed: Schema.Number,
  source: Schema.String
})
export type DailyCandle = typeof DailyCandle.Type

const TickPrice = Schema.Struct({ timestamp_utc: Schema.String, last_price: Schema.String })

/**
 * Which candles make a day, in order of preference: Binance's own 1d kline; else its 1h, then 5m
 * klines rolled up; else 1m klines with the tick-derived 1m candles filling the minutes klines do not
 * cover (klines win wherever both exist). Tick-derived candles carry prices only: their volume is 0.
 */
export const buildDay = (candles: ReadonlyArray<Candle & { readonly source: CandleSource }>) => {
  const klines = (interval: Interval) => candles.filter((c) => c.source === "klines" && c.interval === interval)
  const daily = klines("1d")
  if (daily.length > 0) return { candle: daily[daily.length - 1]!, source: "klines" }
  for (const interval of ["1h", "5m"] as const) {
    const rows = klines(interval)
    if (rows.length > 0) return { candle: aggregate(rows, "1d")[0]!, source: "klines" }
  }
  const minuteKlines = klines("1m")
  const ticks = candles.filter((c) => c.source === "ticks" && c.interval === "1m")
  if (minuteKlines.length === 0 && ticks.length === 0) return undefined
  const merged = mergeCandleSources(minuteKlines, ticks)
  const source = ticks.length === 0 ? "klines" : minuteKlines.length === 0 ? "ticks" : "klines+ticks"
  return { candle: aggregate(merged, "1d")[0]!, source }
}

/** Candles (silver) and daily candles (gold). Every write rebuilds the days it touches. */
export class CandleRepo extends Effect.Service<CandleRepo>()("store/CandleRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const dayCandles = SqlSchema.findAll({
      Request: Schema.Struct({ symbol: Schema.String, from: Schema.Number, to: Schema.Number }),
      Result: CandleRow,
      execute: ({ from, symbol, to }) => sql`
        SELECT * FROM candles WHERE symbol = ${symbol} AND open_time >= ${from} AND open_time < ${to}`
    })

    const rebuildDay = (symbol: string, dayStart: number) =>
      Effect.gen(function* () {
        const rows = yield* dayCandles({ symbol, from: dayStart, to: dayStart + DAY_MS })
        const built = buildDay(rows.map((r) => ({ ...toCandle(r), source: r.source })))
        const date = utcDate(dayStart)
        if (built === undefined) {
          yield* sql`DELETE FROM daily_candles WHERE symbol = ${symbol} AND date = ${date}`
          return
        }
        const c = built.candle
        const row = {
          symbol,
          date,
          open: c.open,
          high: c.high,
          low: c.low,
          close: c.close,
          volume: c.volume,
          quote_volume: c.quoteVolume,
          trades: c.trades,
          closed: c.closed ? 1 : 0,
          source: built.source
        }
        yield* sql`INSERT OR REPLACE INTO daily_candles ${sql.insert(row)}`
      })

    const rebuildDays = (candles: ReadonlyArray<Candle>) =>
      Effect.forEach(
        Arr.dedupe(candles.map((c) => `${c.symbol}|${bucketStart(c.openTime, "1d")}`)),
        (key) => {
          const [symbol, day] = key.split("|") as [string, string]
          return rebuildDay(symbol, Number(day))
        },
        { discard: true }
      )

    const writeCandles = (candles: ReadonlyArray<Candle>, source: CandleSource) =>
      Effect.forEach(
        Arr.chunksOf(candles, 500),
        (chunk) =>
          sql`INSERT INTO candles ${sql.insert(
            chunk.map((c) => ({
              symbol: c.symbol,
              interval: c.interval,
              source,
              open_time: c.openTime,
              open: c.open,
              high: c.high,
              low: c.low,
              close: c.close,
              volume: c.volume,
              quote_volume: c.quoteVolume,
              trades: c.trades,
              closed: c.closed ? 1 : 0
            }))
          )}
          ON CONFLICT (symbol, interval, source, open_time) DO UPDATE SET
            open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
            volume = excluded.volume, quote_volume = excluded.quote_volume, trades = excluded.trades,
            closed = excluded.closed
          WHERE candles.closed = 0`,
        { discard: true }
      )

    /** Stores candles (a closed candle is never overwritten) and rebuilds the daily candles of their days. */
    const upsert = (candles: ReadonlyArray<Candle>, source: CandleSource) =>
      Effect.gen(function* () {
        if (candles.length === 0) return
        yield* writeCandles(candles, source)
        yield* rebuildDays(candles)
      }).pipe(sql.withTransaction, Effect.withSpan("CandleRepo.upsert"))

    const tickPrices = SqlSchema.findAll({
      Request: Schema.Struct({ symbol: Schema.String, fromUs: Schema.Number, toUs: Schema.Number }),
      Result: TickPrice,
      execute: ({ fromUs, symbol, toUs }) => sql`
        SELECT timestamp_utc, last_price FROM ticks
        WHERE symbol = ${symbol} AND ts_us >= ${fromUs} AND ts_us < ${toUs} ORDER BY ts_us`
    })

    /** Re-derives the 1m tick candles of every minute the events fall in, from all stored ticks of those minutes. */
    const refreshFromTicks = (events: ReadonlyArray<TickerEvent>, eventMillis: (e: TickerEvent) => number) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        for (const [symbol, group] of Object.entries(Arr.groupBy(events, (e) => e.symbol))) {
          const minutes = group.map((e) => bucketStart(eventMillis(e), "1m"))
          const from = Math.min(...minutes)
          const to = Math.max(...minutes) + intervalMs("1m")
          const prices = yield* tickPrices({ symbol, fromUs: from * 1000, toUs: to * 1000 })
          const asEvents = prices.map((p) => ({ ...group[0]!, timestamp_utc: p.timestamp_utc, lastPrice: p.last_price }))
          yield* upsert(candlesFromTicks(asEvents, "1m", now), "ticks")
        }
      })

    const LatestOpen = Schema.Struct({ open_time: Schema.NullOr(Schema.Number) })
    /** Open time of the newest closed kline stored for (symbol, interval): where a backfill resumes. */
    const lastClosedKline = (symbol: string, interval: Interval) =>
      SqlSchema.single({
        Request: Schema.Void,
        Result: LatestOpen,
        execute: () => sql`
          SELECT MAX(open_time) AS open_time FROM candles
          WHERE symbol = ${symbol} AND interval = ${interval} AND source = 'klines' AND closed = 1`
      })(undefined).pipe(Effect.map((r) => Option.fromNullable(r.open_time)))

    const findDaily = SqlSchema.findAll({
      Request: Schema.Struct({ symbol: Schema.String, from: Schema.String, to: Schema.String }),
      Result: DailyCandle,
      execute: ({ from, symbol, to }) => sql`
        SELECT symbol, date, open, high, low, close, volume, quote_volume, trades, closed, source
        FROM daily_candles WHERE symbol = ${symbol} AND date >= ${from} AND date <= ${to} ORDER BY date`
    })

    const findCandles = SqlSchema.findAll({
      Request: Schema.Struct({ symbol: Schema.String, interval: Interval, from: Schema.Number, to: Schema.Number }),
      Result: CandleRow,
      execute: ({ from, interval, symbol, to }) => sql`
        SELECT * FROM candles WHERE symbol = ${symbol} AND interval = ${interval}
        AND open_time >= ${from} AND open_time < ${to} ORDER BY open_time, source`
    })

    return {
      upsert,
      refreshFromTicks,
      lastClosedKline,
      /** Daily candles of `symbol` with `from <= date <= to` (YYYY-MM-DD), oldest first. */
      daily: (symbol: string, from: string, to: string) => findDaily({ symbol, from, to }),
      /** Stored candles of one interval in [from, to) (epoch ms); klines win over tick candles. */
      candles: (symbol: string, interval: Interval, from: number, to: number) =>
        findCandles({ symbol, interval, from, to }).pipe(
          Effect.map((rows) =>
            mergeCandleSources(
              rows.filter((r) => r.source === "klines").map(toCandle),
              rows.filter((r) => r.source === "ticks").map(toCandle)
            )
          )
        )
    } as const
  })
}) {}

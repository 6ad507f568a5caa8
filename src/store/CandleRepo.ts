import { SqlClient, SqlSchema } from "@effect/sql"
import { Array as Arr, Effect, Option, Schema } from "effect"
import { buildDay, type DayMember, dayMergeState, type DayMergeState } from "../domain/CandleMerge.js"
import { bucketStart, type Candle, Interval, mergeCandleSources, utcDate } from "../domain/Candles.js"
import type { Tick } from "../domain/Ticker.js"
import { makeTickMerge } from "./TickCandles.js"

export { buildDay, type CandleSource } from "../domain/CandleMerge.js"

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

/** A stored candle with the span a tick minute keeps for merging (null on klines). */
const MemberRow = Schema.Struct({
  ...CandleRow.fields,
  first_us: Schema.NullOr(Schema.Number),
  last_us: Schema.NullOr(Schema.Number),
  high_num: Schema.NullOr(Schema.Number),
  high_us: Schema.NullOr(Schema.Number),
  low_num: Schema.NullOr(Schema.Number),
  low_us: Schema.NullOr(Schema.Number)
})
type MemberRow = typeof MemberRow.Type

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

const toMember = (r: MemberRow): DayMember => ({
  ...toCandle(r),
  source: r.source,
  span:
    r.first_us === null || r.last_us === null || r.high_num === null || r.high_us === null || r.low_num === null || r.low_us === null
      ? undefined
      : {
          open: r.open,
          firstUs: r.first_us,
          close: r.close,
          lastUs: r.last_us,
          high: r.high,
          highNum: r.high_num,
          highUs: r.high_us,
          low: r.low,
          lowNum: r.low_num,
          lowUs: r.low_us
        }
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

/** Candles (silver) and daily candles (gold): klines rebuild the days they touch, ticks merge into them. */
export class CandleRepo extends Effect.Service<CandleRepo>()("store/CandleRepo", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const dayCandles = SqlSchema.findAll({
      Request: Schema.Struct({ symbol: Schema.String, from: Schema.Number, to: Schema.Number }),
      Result: MemberRow,
      execute: ({ from, symbol, to }) => sql`
        SELECT * FROM candles WHERE symbol = ${symbol} AND open_time >= ${from} AND open_time < ${to}`
    })

    const writeDay = (symbol: string, date: string, built: NonNullable<ReturnType<typeof buildDay>>, state: DayMergeState | undefined) => {
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
        source: built.source,
        basis: built.basis,
        first_us: state?.span.firstUs ?? null,
        last_us: state?.span.lastUs ?? null,
        high_num: state?.span.highNum ?? null,
        high_us: state?.span.highUs ?? null,
        low_num: state?.span.lowNum ?? null,
        low_us: state?.span.lowUs ?? null,
        open_minutes: state?.openMinutes ?? null
      }
      return sql`INSERT OR REPLACE INTO daily_candles ${sql.insert(row)}`
    }

    /** Builds the day from all its stored candles (`buildDay`), with the merge state when it is built from minutes. */
    const rebuildDay = (symbol: string, dayStart: number) =>
      Effect.gen(function* () {
        const rows = yield* dayCandles({ symbol, from: dayStart, to: dayStart + DAY_MS })
        const members = rows.map(toMember)
        const built = buildDay(members)
        const date = utcDate(dayStart)
        if (built === undefined) {
          yield* sql`DELETE FROM daily_candles WHERE symbol = ${symbol} AND date = ${date}`
          return
        }
        yield* writeDay(symbol, date, built, built.basis === "1m" ? dayMergeState(members) : undefined)
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

    const writeKlines = (candles: ReadonlyArray<Candle>) =>
      Effect.forEach(
        Arr.chunksOf(candles, 500),
        (chunk) =>
          sql`INSERT INTO candles ${sql.insert(
            chunk.map((c) => ({
              symbol: c.symbol,
              interval: c.interval,
              source: "klines",
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

    /**
     * Stores Binance klines (a closed kline is final; the open one is replaced until it closes) and
     * rebuilds the daily candles of their days from all their candles. Tick candles come from
     * `mergeTicks` only.
     */
    const upsert = (candles: ReadonlyArray<Candle>, _source: "klines") =>
      Effect.gen(function* () {
        if (candles.length === 0) return
        yield* writeKlines(candles)
        yield* rebuildDays(candles)
      }).pipe(sql.withTransaction, Effect.withSpan("CandleRepo.upsert"))

    const mergeTickBatch = makeTickMerge(sql)

    /**
     * Merges newly stored ticks (what `TickRepo.insertMany` returns; call both in one transaction, so
     * that stored ticks never miss their candles: a replay of them is not new) into the 1m tick
     * candles and the daily candles, from the ticks themselves (TickCandles.ts). A day written before
     * migration 0003 is rebuilt from its candles once. Cost: O(batch), never O(day).
     */
    const mergeTicks = (ticks: ReadonlyArray<Tick>) =>
      Effect.gen(function* () {
        const rebuilt = yield* mergeTickBatch(ticks)
        yield* Effect.forEach(rebuilt, (day) => rebuildDay(day.symbol, day.dayStart), { discard: true })
      }).pipe(sql.withTransaction, Effect.withSpan("CandleRepo.mergeTicks"))

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
        SELECT symbol, interval, source, open_time, open, high, low, close, volume, quote_volume, trades, closed
        FROM candles WHERE symbol = ${symbol} AND interval = ${interval}
        AND open_time >= ${from} AND open_time < ${to} ORDER BY open_time, source`
    })

    return {
      upsert,
      mergeTicks,
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

import { SqlClient, type SqlError, SqlSchema } from "@effect/sql"
import { Array as Arr, Effect, Option, Schema } from "effect"
import { bucketStart, type Candle, Interval, mergeCandleSources } from "../domain/Candles.js"
import {
  CandleRow,
  dailyAsCandleColumns,
  DAY_MS,
  type Dialect,
  MemberRow,
  rebuiltDay,
  selectDayMembers,
  SourcedCandleRow,
  SQLITE,
  toCandle,
  toSourcedCandle
} from "./CandleRows.js"

export { buildDay, type CandleSource } from "../domain/CandleMerge.js"
export { DailyCandle } from "./CandleRows.js"

export interface CandleStore {
  readonly dialect: Dialect
  /**
   * Taken first in a kline write's transaction: what keeps the tick writers of other processes off
   * these symbols' days while they are rebuilt (PostgreSQL). SQLite has one writer at a time.
   */
  readonly lockSymbols: (symbols: ReadonlyArray<string>) => Effect.Effect<void, SqlError.SqlError>
}

/**
 * The klines as one row per (symbol, interval, open time), each what the upsert below leaves when the
 * repeats are applied in order (a later one replaces an open one only): PostgreSQL refuses to update
 * one row twice in a statement, SQLite would apply them one after the other.
 */
const foldRepeats = (candles: ReadonlyArray<Candle>): ReadonlyArray<Candle> => {
  const byKey = new Map<string, Candle>()
  for (const c of candles) {
    const key = `${c.symbol}|${c.interval}|${c.openTime}`
    const kept = byKey.get(key)
    if (kept === undefined || !kept.closed) byKey.set(key, c)
  }
  return byKey.size === candles.length ? candles : [...byKey.values()]
}

/** The repository on the SqlClient in context, in `store`'s dialect; the PostgreSQL store builds it too. */
export const makeCandleRepo = (store: CandleStore) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const { dialect } = store
    const SELECT_DAY_MEMBERS = selectDayMembers(dialect)
    const DAILY_AS_CANDLE_COLUMNS = dailyAsCandleColumns(dialect)

    const dayCandles = SqlSchema.findAll({
      Request: Schema.Struct({ symbol: Schema.String, from: Schema.Number, to: Schema.Number }),
      Result: MemberRow,
      execute: ({ from, symbol, to }) => sql.unsafe(SELECT_DAY_MEMBERS, [symbol, from, to])
    })

    /** Builds the day from all its stored candles (CandleRows.rebuiltDay). */
    const rebuildDay = (symbol: string, dayStart: number) =>
      dayCandles({ symbol, from: dayStart, to: dayStart + DAY_MS }).pipe(
        Effect.flatMap((rows) => {
          const rebuilt = rebuiltDay(symbol, dayStart, rows, dialect)
          return sql.unsafe(rebuilt.sql, rebuilt.params)
        })
      )

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
        Arr.chunksOf(foldRepeats(candles), 500),
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
     * the tick write path only (TickWriter.ts).
     */
    const upsert = (candles: ReadonlyArray<Candle>, _source: "klines") =>
      Effect.gen(function* () {
        if (candles.length === 0) return
        yield* store.lockSymbols(Arr.dedupe(candles.map((c) => c.symbol)))
        yield* writeKlines(candles)
        yield* rebuildDays(candles)
      }).pipe(sql.withTransaction, Effect.withSpan("CandleRepo.upsert"))

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
      Result: SourcedCandleRow,
      execute: ({ from, symbol, to }) => sql`
        SELECT ${sql.literal(DAILY_AS_CANDLE_COLUMNS)}
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
      lastClosedKline,
      /** Daily candles (interval 1d) of `symbol` with `from <= date <= to` (YYYY-MM-DD), oldest first, with what each was built from. */
      daily: (symbol: string, from: string, to: string) => Effect.map(findDaily({ symbol, from, to }), Arr.map(toSourcedCandle)),
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

/** Candles (silver) and daily candles (gold): klines rebuild the days they touch, ticks merge into them. */
export class CandleRepo extends Effect.Service<CandleRepo>()("store/CandleRepo", {
  effect: makeCandleRepo({ dialect: SQLITE, lockSymbols: () => Effect.void })
}) {}

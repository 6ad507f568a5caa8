import { Clock, Effect } from "effect"
import { csvContracts, toCsv } from "../api/csv.js"
import { aggregate, type Candle, type Interval } from "../domain/Candles.js"
import { normalizeDecimal } from "../domain/Decimal.js"
import { dailyFeatures, formatFeatureNumber } from "../domain/Features.js"
import { CandleRepo, type DailyCandle } from "../store/CandleRepo.js"
import { TickRepo } from "../store/TickRepo.js"

/** Most days one BI report covers. */
export const BI_MAX_DAYS = 3650
export const BI_DEFAULT_DAYS = 90
/** Returns need the day before; 30-day volatility needs 30 returns. */
const FEATURE_LOOKBACK_DAYS = 31
const DAY_MS = 86_400_000

const isoDay = (ms: number) => new Date(ms).toISOString().slice(0, 10)

const asCandle = (d: DailyCandle): Candle => ({
  symbol: d.symbol,
  interval: "1d",
  openTime: Date.parse(`${d.date}T00:00:00Z`),
  open: d.open,
  high: d.high,
  low: d.low,
  close: d.close,
  volume: d.volume,
  quoteVolume: d.quote_volume,
  trades: d.trades,
  closed: d.closed === 1
})

/**
 * The four stable CSV contracts BI tools read, computed from the gold layer (daily candles) and the
 * latest ticks. `days` counts UTC dates back from today, today included. Decimals are written in
 * their shortest exact form; features with too little history are empty fields.
 */
export class BiReports extends Effect.Service<BiReports>()("bi/BiReports", {
  effect: Effect.gen(function* () {
    const candles = yield* CandleRepo
    const ticks = yield* TickRepo

    const window = (days: number, lookback = 0) =>
      Clock.currentTimeMillis.pipe(
        Effect.map((now) => ({ from: isoDay(now - (days - 1) * DAY_MS), lookbackFrom: isoDay(now - (days - 1 + lookback) * DAY_MS), to: isoDay(now) }))
      )

    const dailyOhlc = (symbol: string, days: number) =>
      Effect.gen(function* () {
        const { from, to } = yield* window(days)
        const rows = yield* candles.daily(symbol, from, to)
        return toCsv(
          csvContracts.daily_ohlc,
          rows.map((d) => [d.date, d.symbol, ...[d.open, d.high, d.low, d.close, d.volume].map(normalizeDecimal)])
        )
      })

    const dailyVolume = (symbol: string, days: number) =>
      Effect.gen(function* () {
        const { from, to } = yield* window(days)
        const rows = yield* candles.daily(symbol, from, to)
        return toCsv(
          csvContracts.daily_volume,
          rows.map((d) => [d.date, d.symbol, normalizeDecimal(d.volume), normalizeDecimal(d.quote_volume)])
        )
      })

    const dailyFeaturesCsv = (symbol: string, days: number) =>
      Effect.gen(function* () {
        const { from, lookbackFrom, to } = yield* window(days, FEATURE_LOOKBACK_DAYS)
        const rows = yield* candles.daily(symbol, lookbackFrom, to)
        const features = rows.length === 0 ? [] : dailyFeatures(rows.map(asCandle)).filter((f) => f.date >= from)
        return toCsv(
          csvContracts.daily_features,
          features.map((f) => [
            f.date,
            f.symbol,
            normalizeDecimal(f.close),
            formatFeatureNumber(f.log_return),
            formatFeatureNumber(f.volatility_7d),
            formatFeatureNumber(f.volatility_30d)
          ])
        )
      })

    /** The newest event of each symbol that has one, in the order asked. */
    const latestPrices = (symbols: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const latest = yield* Effect.forEach(symbols, (s) => ticks.latest(s, 1))
        return toCsv(
          csvContracts.latest_prices,
          latest.flat().map((e) => [
            e.symbol,
            normalizeDecimal(e.lastPrice),
            normalizeDecimal(e.priceChangePercent),
            normalizeDecimal(e.volume),
            e.timestamp_utc
          ])
        )
      })

    /** Daily features of the last `days` UTC days as values (the JSON twin of daily_features.csv). */
    const featureRows = (symbol: string, days: number) =>
      Effect.gen(function* () {
        const { from, lookbackFrom, to } = yield* window(days, FEATURE_LOOKBACK_DAYS)
        const rows = yield* candles.daily(symbol, lookbackFrom, to)
        return rows.length === 0 ? [] : dailyFeatures(rows.map(asCandle)).filter((f) => f.date >= from)
      })

    /**
     * Candles of one interval in [from, to): 1d from the gold layer; otherwise the stored candles of
     * that interval (klines win over tick-derived ones), or, when none are stored, 1m candles rolled up.
     */
    const candleRows = (symbol: string, interval: Interval, from: number, to: number) =>
      Effect.gen(function* () {
        if (interval === "1d") {
          const rows = yield* candles.daily(symbol, isoDay(from), isoDay(to - 1))
          return rows.map((d) => ({ ...asCandle(d), source: d.source }))
        }
        const stored = yield* candles.candles(symbol, interval, from, to)
        if (stored.length > 0 || interval === "1m") return stored
        const minutes = yield* candles.candles(symbol, "1m", from, to)
        return aggregate(minutes, interval)
      })

    return { dailyOhlc, dailyVolume, dailyFeatures: dailyFeaturesCsv, latestPrices, featureRows, candleRows } as const
  })
}) {}

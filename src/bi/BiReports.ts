import { Clock, Effect } from "effect"
import { csvContracts, toCsv } from "./csv.js"
import { aggregate, type Candle, type Interval } from "../domain/Candles.js"
import { normalizeDecimal } from "../domain/Decimal.js"
import { dailyFeatures, formatFeatureNumber } from "../domain/Features.js"
import { DAY_MS, utcDate } from "../domain/Time.js"
import { CandleRepo } from "../store/CandleRepo.js"
import { TickRepo } from "../store/TickRepo.js"

export { BI_DEFAULT_DAYS, BI_MAX_DAYS } from "../domain/ReadModels.js"

/** Returns need the day before; 30-day volatility needs 30 returns. */
const FEATURE_LOOKBACK_DAYS = 31

/**
 * The four stable CSV contracts BI tools read, computed from the gold layer (daily candles) and the
 * latest ticks. `days` counts UTC dates back from today, today included. Decimals are written in
 * their shortest exact form; features with too little history are empty fields.
 */
export class BiReports extends Effect.Service<BiReports>()("bi/BiReports", {
  effect: Effect.gen(function* () {
    const store = yield* CandleRepo
    const ticks = yield* TickRepo

    const window = (days: number, lookback = 0) =>
      Clock.currentTimeMillis.pipe(
        Effect.map((now) => ({ from: utcDate(now - (days - 1) * DAY_MS), lookbackFrom: utcDate(now - (days - 1 + lookback) * DAY_MS), to: utcDate(now) }))
      )

    /** A report of one row per daily candle of the last `days` UTC days. */
    const dailyCsv =
      (header: ReadonlyArray<string>, cells: (d: Candle) => ReadonlyArray<string>) => (symbol: string, days: number) =>
        Effect.gen(function* () {
          const { from, to } = yield* window(days)
          const rows = yield* store.daily(symbol, from, to)
          return toCsv(header, rows.map((d) => [utcDate(d.openTime), d.symbol, ...cells(d)]))
        })
    const dailyOhlc = dailyCsv(csvContracts.daily_ohlc, (d) => [d.open, d.high, d.low, d.close, d.volume].map(normalizeDecimal))
    const dailyVolume = dailyCsv(csvContracts.daily_volume, (d) => [normalizeDecimal(d.volume), normalizeDecimal(d.quoteVolume)])

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
        const rows = yield* store.daily(symbol, lookbackFrom, to)
        return rows.length === 0 ? [] : dailyFeatures(rows).filter((f) => f.date >= from)
      })

    const dailyFeaturesCsv = (symbol: string, days: number) =>
      Effect.map(featureRows(symbol, days), (features) =>
        toCsv(
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
      )

    /**
     * Candles of one interval in [from, to): 1d from the gold layer; otherwise the stored candles of
     * that interval (klines win over tick-derived ones), or, when none are stored, 1m candles rolled up.
     */
    const candles = (symbol: string, interval: Interval, from: number, to: number) =>
      Effect.gen(function* () {
        if (interval === "1d") return yield* store.daily(symbol, utcDate(from), utcDate(to - 1))
        const stored = yield* store.candles(symbol, interval, from, to)
        if (stored.length > 0 || interval === "1m") return stored
        const minutes = yield* store.candles(symbol, "1m", from, to)
        return aggregate(minutes, interval)
      })

    return { dailyOhlc, dailyVolume, dailyFeatures: dailyFeaturesCsv, latestPrices, featureRows, candles } as const
  })
}) {}

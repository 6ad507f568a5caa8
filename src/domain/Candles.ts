import { Either, Schema } from "effect"
import { compareDecimal, isDecimal, maxDecimal, minDecimal, sumDecimals } from "./Decimal.js"
import { parseInstantMicros, TickerSymbol, type TickerEvent } from "./Ticker.js"
import { isoInstant } from "./Time.js"

export const Intervals = ["1m", "5m", "1h", "1d"] as const
export const Interval = Schema.Literal(...Intervals)
export type Interval = typeof Interval.Type

const intervalMillis: Record<Interval, number> = {
  "1m": 60_000,
  "5m": 5 * 60_000,
  "1h": 60 * 60_000,
  "1d": 24 * 60 * 60_000
}

export const intervalMs = (interval: Interval): number => intervalMillis[interval]

/** Start of the UTC-aligned bucket of `interval` holding `ms`. */
export const bucketStart = (ms: number, interval: Interval): number => {
  const size = intervalMs(interval)
  return Math.floor(ms / size) * size
}

export { utcDate } from "./Time.js"

/** Epoch milliseconds, written on the wire as an ISO-8601 instant (`2026-01-15T14:03:00.000Z`). */
const MillisFromIso = Schema.transform(Schema.String, Schema.Number, {
  strict: true,
  decode: (iso) => Date.parse(iso),
  encode: isoInstant
})

/**
 * One OHLCV candle: the one shape from the stored row (store/CandleRows reads both candle tables into
 * it) through the arithmetic here to the wire, which is its encoded form (the /candles answer, as
 * /openapi.json declares it). Prices and volumes are decimal strings; `closed` is false while the
 * interval is still running. Plain objects of these fields are candles too.
 */
export class Candle extends Schema.Class<Candle>("Candle")({
  symbol: Schema.String,
  interval: Interval,
  openTime: Schema.propertySignature(MillisFromIso).pipe(Schema.fromKey("open_time")),
  open: Schema.String,
  high: Schema.String,
  low: Schema.String,
  close: Schema.String,
  volume: Schema.String,
  quoteVolume: Schema.propertySignature(Schema.String).pipe(Schema.fromKey("quote_volume")),
  trades: Schema.Number,
  closed: Schema.Boolean
}) {}

/** Candles in their wire form, as one JSON document: the encoding of `Schema.Array(Candle)`. */
export const candlesJson: (candles: ReadonlyArray<Candle>) => string = (() => {
  const encode = Schema.encodeSync(Schema.Array(Candle))
  return (candles) => JSON.stringify(encode(candles))
})()

/** Sort order of every candle list this module returns: symbol, then interval (finest first), then openTime. */
export const compareCandles = (a: Candle, b: Candle): number =>
  a.symbol < b.symbol
    ? -1
    : a.symbol > b.symbol
      ? 1
      : Intervals.indexOf(a.interval) - Intervals.indexOf(b.interval) || a.openTime - b.openTime

const isTickerSymbol = Schema.is(TickerSymbol)
const isMillis = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0

const klineFields = ["openTime", "open", "high", "low", "close", "volume", "closeTime", "quoteVolume", "trades"] as const

/**
 * Parses one row of `GET /api/v3/klines`:
 * `[openTime, open, high, low, close, volume, closeTime, quoteVolume, trades, takerBase, takerQuote, "0"]`.
 * Right(candle), or Left(reason) for a malformed row: not an array of at least 12 elements (extra trailing
 * elements are ignored, so are 9–11), prices or volumes that are not non-negative decimal strings, a
 * low above open/close/high or a high below open/close, an openTime not aligned to the interval in UTC,
 * a closeTime other than openTime + interval − 1, or a trade count that is not a whole number.
 * `closed` is closeTime < nowMs: Binance's last row is the still-running candle.
 */
export const fromKlineRow = (
  symbol: string,
  interval: Interval,
  row: unknown,
  nowMs: number
): Either.Either<Candle, string> => {
  if (!isTickerSymbol(symbol)) return Either.left(`expected a Binance symbol such as BTCUSDT, got ${JSON.stringify(symbol)}`)
  if (!Array.isArray(row)) return Either.left(`expected a kline row (an array), got ${JSON.stringify(row)}`)
  if (row.length < 12) return Either.left(`expected a kline row of 12 elements, got ${row.length}`)
  const [openTime, open, high, low, close, volume, closeTime, quoteVolume, trades] = row as ReadonlyArray<unknown>
  const bad = (index: number, expected: string) =>
    Either.left(`kline field ${index} (${klineFields[index]}): expected ${expected}, got ${JSON.stringify(row[index])}`)

  if (!isMillis(openTime)) return bad(0, "epoch milliseconds")
  const decimals = [open, high, low, close, volume] as const
  for (let i = 0; i < decimals.length; i++) {
    const value = decimals[i]
    if (!isDecimal(value) || value.startsWith("-")) return bad(i + 1, "a non-negative decimal string")
  }
  if (!isMillis(closeTime)) return bad(6, "epoch milliseconds")
  if (!isDecimal(quoteVolume) || quoteVolume.startsWith("-")) return bad(7, "a non-negative decimal string")
  if (!isMillis(trades)) return bad(8, "a whole number of trades")

  const o = open as string
  const h = high as string
  const l = low as string
  const c = close as string
  if (openTime % intervalMs(interval) !== 0) return bad(0, `an open time aligned to ${interval} in UTC`)
  if (closeTime !== openTime + intervalMs(interval) - 1) return bad(6, `openTime + ${interval} - 1 = ${openTime + intervalMs(interval) - 1}`)
  if (compareDecimal(maxDecimal(o, c, l), h) > 0) return bad(2, "a high no lower than open, close and low")
  if (compareDecimal(minDecimal(o, c), l) < 0) return bad(3, "a low no higher than open and close")

  return Either.right({
    symbol,
    interval,
    openTime,
    open: o,
    high: h,
    low: l,
    close: c,
    volume: volume as string,
    quoteVolume,
    trades,
    closed: closeTime < nowMs
  })
}

const keepLastBySymbol = (candles: ReadonlyArray<Candle>): Map<string, Map<number, Candle>> => {
  const bySymbol = new Map<string, Map<number, Candle>>()
  for (const candle of candles) {
    let series = bySymbol.get(candle.symbol)
    if (series === undefined) bySymbol.set(candle.symbol, (series = new Map()))
    series.set(candle.openTime, candle)
  }
  return bySymbol
}

/**
 * Rolls finer candles up into UTC-aligned `to` buckets, per symbol. Duplicates (same symbol and openTime)
 * keep the last occurrence. A bucket is closed when its end is no later than the end of the symbol's
 * latest input candle and every candle in it is closed, so a bucket missing a constituent in the middle
 * of the series still closes. Throws a RangeError when `to` is not coarser than an input's interval, or
 * when one symbol mixes intervals.
 */
export const aggregate = (candles: ReadonlyArray<Candle>, to: Interval): ReadonlyArray<Candle> => {
  const toMs = intervalMs(to)
  if (to === Intervals[0]) throw new RangeError(`cannot aggregate to ${to}: no interval is finer`)
  const intervalOf = new Map<string, Interval>()
  for (const c of candles) {
    if (intervalMs(c.interval) >= toMs) {
      throw new RangeError(`cannot aggregate ${c.interval} candles to ${to}: the target interval must be coarser`)
    }
    const seen = intervalOf.get(c.symbol)
    if (seen !== undefined && seen !== c.interval) {
      throw new RangeError(`cannot aggregate ${c.symbol}: it mixes ${seen} and ${c.interval} candles`)
    }
    intervalOf.set(c.symbol, c.interval)
  }

  const out: Array<Candle> = []
  for (const [symbol, series] of keepLastBySymbol(candles)) {
    const sorted = [...series.values()].sort((a, b) => a.openTime - b.openTime)
    const fromMs = intervalMs(intervalOf.get(symbol)!)
    const seriesEnd = sorted[sorted.length - 1]!.openTime + fromMs
    let i = 0
    while (i < sorted.length) {
      const openTime = bucketStart(sorted[i]!.openTime, to)
      const members: Array<Candle> = []
      while (i < sorted.length && sorted[i]!.openTime < openTime + toMs) members.push(sorted[i++]!)
      const first = members[0]!
      out.push({
        symbol,
        interval: to,
        openTime,
        open: first.open,
        high: maxDecimal(first.high, ...members.map((c) => c.high)),
        low: minDecimal(first.low, ...members.map((c) => c.low)),
        close: members[members.length - 1]!.close,
        volume: sumDecimals(members.map((c) => c.volume)),
        quoteVolume: sumDecimals(members.map((c) => c.quoteVolume)),
        trades: members.reduce((n, c) => n + c.trades, 0),
        closed: openTime + toMs <= seriesEnd && members.every((c) => c.closed)
      })
    }
  }
  return out.sort(compareCandles)
}

/**
 * Candles from the live 24h-ticker stream: per UTC bucket, open/close are the first/last lastPrice by
 * timestamp_utc, high/low the extremes. These candles carry prices only: a rolling 24h ticker says
 * nothing about the volume or trades within one interval, so volume and quoteVolume are "0" and trades 0.
 * A bucket is closed once its end is no later than nowMs.
 */
export const candlesFromTicks = (
  events: ReadonlyArray<TickerEvent>,
  interval: Interval,
  nowMs: number
): ReadonlyArray<Candle> => {
  const size = intervalMs(interval)
  const timed = events.map((event) => {
    const micros = parseInstantMicros(event.timestamp_utc)
    if (micros === undefined) throw new RangeError(`not an ISO-8601 instant: ${JSON.stringify(event.timestamp_utc)}`)
    return { event, micros }
  })
  timed.sort((a, b) => a.micros - b.micros)

  const buckets = new Map<string, Candle>()
  for (const { event, micros } of timed) {
    const openTime = bucketStart(Math.floor(micros / 1000), interval)
    const key = `${event.symbol}|${openTime}`
    const price = event.lastPrice
    const prev = buckets.get(key)
    buckets.set(
      key,
      prev === undefined
        ? {
            symbol: event.symbol,
            interval,
            openTime,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: "0",
            quoteVolume: "0",
            trades: 0,
            closed: openTime + size <= nowMs
          }
        : {
            ...prev,
            high: compareDecimal(price, prev.high) > 0 ? price : prev.high,
            low: compareDecimal(price, prev.low) < 0 ? price : prev.low,
            close: price
          }
    )
  }
  return [...buckets.values()].sort(compareCandles)
}

/**
 * Klines and ticker-derived candles combined: per (symbol, interval, openTime) the kline wins whenever it
 * exists, derived candles only fill the gaps. Within one source a repeated key keeps its last occurrence.
 */
export const mergeCandleSources = (
  klines: ReadonlyArray<Candle>,
  derived: ReadonlyArray<Candle>
): ReadonlyArray<Candle> => {
  const byKey = new Map<string, Candle>()
  for (const c of [...derived, ...klines]) byKey.set(`${c.symbol}|${c.interval}|${c.openTime}`, c)
  return [...byKey.values()].sort(compareCandles)
}

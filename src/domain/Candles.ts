import { Either, Schema } from "effect"
import { compareDecimal, isDecimal, maxDecimal, minDecimal, sumDecimals } from "./Decimal.js"
import { parseInstantMicros, TickerSymbol, type TickerEvent } from "./Ticker.js"

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

/** `YYYY-MM-DD` of an epoch-ms instant, in UTC. */
export const utcDate = (ms: number): string => new Date(ms).toISOString().slice(0, 10)

/** One OHLCV candle. Prices and volumes are decimal strings; `closed` is false while the interval is still running. */
export interface Candle {
  readonly symbol: string
  readonly interval: Interval
  readonly openTime: number
  readonly open: string
  readonly high: string
  readonly low: string
  readonly close: string
  readonly volume: string
  readonly quoteVolume: string
  readonly trades: number
  readonly closed: boolean
}

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

/**
 * The prices of some ticks of one symbol within one bucket (a minute, or a day's minutes), each extreme
 * with the instant (µs) of the tick that set it: what an incremental candle needs to take in more ticks
 * without reading the earlier ones again. open/close are the prices of the earliest/latest tick;
 * high/low the greatest/least price, the earliest tick winning a tie (as `candlesFromTicks` and
 * `aggregate` keep the earliest). The `*Num` fields order prices: they are the decimal strings as
 * numbers, exact in order and equality for up to 15 significant digits (Binance prices have fewer).
 */
export interface PriceSpan {
  readonly open: string
  readonly firstUs: number
  readonly close: string
  readonly lastUs: number
  readonly high: string
  readonly highNum: number
  readonly highUs: number
  readonly low: string
  readonly lowNum: number
  readonly lowUs: number
}

/** The span of one price at one instant. */
export const pointSpan = (price: string, priceNum: number, atUs: number): PriceSpan => ({
  open: price,
  firstUs: atUs,
  close: price,
  lastUs: atUs,
  high: price,
  highNum: priceNum,
  highUs: atUs,
  low: price,
  lowNum: priceNum,
  lowUs: atUs
})

/**
 * The span of the ticks of `a` and `b` together. Associative, commutative and idempotent, so the
 * order and grouping in which ticks arrive never matter, and a tick merged twice changes nothing.
 * The candle merge in SQL (CandleRepo) applies the same rule.
 */
export const mergeSpans = (a: PriceSpan, b: PriceSpan): PriceSpan => {
  const first = b.firstUs < a.firstUs ? b : a
  const last = b.lastUs > a.lastUs ? b : a
  const high = b.highNum > a.highNum || (b.highNum === a.highNum && b.highUs < a.highUs) ? b : a
  const low = b.lowNum < a.lowNum || (b.lowNum === a.lowNum && b.lowUs < a.lowUs) ? b : a
  return {
    open: first.open,
    firstUs: first.firstUs,
    close: last.close,
    lastUs: last.lastUs,
    high: high.high,
    highNum: high.highNum,
    highUs: high.highUs,
    low: low.low,
    lowNum: low.lowNum,
    lowUs: low.lowUs
  }
}

/** What a candle needs of a Tick: its identity, its price as spelled and as a number. */
export interface PricedTick {
  readonly symbol: string
  readonly tsMicros: number
  readonly price: number
  readonly event: { readonly lastPrice: string }
}

/** The 1m price candle of some ticks of `symbol` in the minute starting at `openTime` (epoch ms). */
export interface TickMinute extends PriceSpan {
  readonly symbol: string
  readonly openTime: number
}

const MINUTE_MS = 60_000

/**
 * The ticks grouped by (symbol, UTC minute) into spans, in one pass, in any order: nothing is parsed,
 * the tick carries its instant and its price as a number. Ticks must have distinct identities (as
 * the newly stored ones do); the result is in no particular order.
 */
export const tickMinutes = (ticks: Iterable<PricedTick>): Array<TickMinute> => {
  // One mutable accumulator per minute (the same rule as `mergeSpans`, without an object per tick).
  const bySymbol = new Map<string, Map<number, { -readonly [K in keyof TickMinute]: TickMinute[K] }>>()
  const out: Array<TickMinute> = []
  for (const { event, price, symbol, tsMicros } of ticks) {
    const openTime = Math.floor(tsMicros / (MINUTE_MS * 1000)) * MINUTE_MS
    let minutes = bySymbol.get(symbol)
    if (minutes === undefined) bySymbol.set(symbol, (minutes = new Map()))
    const m = minutes.get(openTime)
    const text = event.lastPrice
    if (m === undefined) {
      const minute = { symbol, openTime, ...pointSpan(text, price, tsMicros) }
      minutes.set(openTime, minute)
      out.push(minute)
      continue
    }
    if (tsMicros < m.firstUs) {
      m.firstUs = tsMicros
      m.open = text
    }
    if (tsMicros > m.lastUs) {
      m.lastUs = tsMicros
      m.close = text
    }
    if (price > m.highNum || (price === m.highNum && tsMicros < m.highUs)) {
      m.highNum = price
      m.highUs = tsMicros
      m.high = text
    }
    if (price < m.lowNum || (price === m.lowNum && tsMicros < m.lowUs)) {
      m.lowNum = price
      m.lowUs = tsMicros
      m.low = text
    }
  }
  return out
}

export type CandleSource = "klines" | "ticks"
/** What a daily candle is built from: Binance's 1d kline, its 1h or 5m klines, or minutes (1m klines and tick minutes). */
export type DayBasis = "1d" | "1h" | "5m" | "1m"

/**
 * Which candles make a day, in order of preference: Binance's own 1d kline; else its 1h, then 5m
 * klines rolled up; else 1m klines with the tick-derived 1m candles filling the minutes klines do not
 * cover (klines win wherever both exist). Tick-derived candles carry prices only: their volume is 0.
 * `candles` are one symbol's candles of one UTC day.
 */
export const buildDay = (
  candles: ReadonlyArray<Candle & { readonly source: CandleSource }>
): { readonly candle: Candle; readonly source: string; readonly basis: DayBasis } | undefined => {
  const klines = (interval: Interval) => candles.filter((c) => c.source === "klines" && c.interval === interval)
  const daily = klines("1d")
  if (daily.length > 0) return { candle: daily[daily.length - 1]!, source: "klines", basis: "1d" }
  for (const interval of ["1h", "5m"] as const) {
    const rows = klines(interval)
    if (rows.length > 0) return { candle: aggregate(rows, "1d")[0]!, source: "klines", basis: interval }
  }
  const minuteKlines = klines("1m")
  const ticks = candles.filter((c) => c.source === "ticks" && c.interval === "1m")
  if (minuteKlines.length === 0 && ticks.length === 0) return undefined
  const merged = mergeCandleSources(minuteKlines, ticks)
  const source = ticks.length === 0 ? "klines" : minuteKlines.length === 0 ? "ticks" : "klines+ticks"
  return { candle: aggregate(merged, "1d")[0]!, source, basis: "1m" }
}

/**
 * What the incremental update of a minutes-based day (basis 1m) keeps beside the candle: the span of
 * its member minutes (each 1m kline, and each tick minute no kline covers) and how many of them are
 * not closed. A kline minute has no tick instants: it stands at its own minute (open and extremes at
 * its start, close at its end), which orders it against tick minutes as `aggregate` orders minutes.
 */
export interface DayMergeState {
  readonly span: PriceSpan
  readonly openMinutes: number
}

/** A stored 1m candle as a member of its day; tick minutes bring their stored span. */
export type DayMember = Candle & { readonly source: CandleSource; readonly span?: PriceSpan | undefined }

const klineSpan = (c: Candle): PriceSpan => {
  const startUs = c.openTime * 1000
  return {
    open: c.open,
    firstUs: startUs,
    close: c.close,
    lastUs: startUs + MINUTE_MS * 1000 - 1,
    high: c.high,
    highNum: Number(c.high),
    highUs: startUs,
    low: c.low,
    lowNum: Number(c.low),
    lowUs: startUs
  }
}

/**
 * The merge state of a minutes-based day from its stored 1m candles (klines and tick minutes), or
 * undefined when it has none. Tick minutes without a stored span (none after migration 0003) stand
 * at their minute like klines.
 */
export const dayMergeState = (minutes: ReadonlyArray<DayMember>): DayMergeState | undefined => {
  const covered = new Set(minutes.filter((c) => c.source === "klines" && c.interval === "1m").map((c) => c.openTime))
  let span: PriceSpan | undefined
  let openMinutes = 0
  for (const c of minutes) {
    if (c.interval !== "1m" || (c.source === "ticks" && covered.has(c.openTime))) continue
    const member = c.source === "ticks" && c.span !== undefined ? c.span : klineSpan(c)
    span = span === undefined ? member : mergeSpans(span, member)
    if (!c.closed) openMinutes++
  }
  return span === undefined ? undefined : { span, openMinutes }
}

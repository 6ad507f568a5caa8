import { aggregate, type Candle, type Interval, mergeCandleSources } from "./Candles.js"
import { MINUTE_MS } from "./Time.js"

// The arithmetic of incremental candles: spans that take in more ticks without re-reading the earlier
// ones, tick minutes, and the days built from candles with the state their incremental update keeps.

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
 * The candle merge in SQL (store/TickCandles.ts) applies the same rule.
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

/**
 * The API's JSON as the page reads it (README, "API"; the page keeps its own copy of the shapes: it is
 * built for the browser, apart from the server's code), and formatting.
 */

/** A ticker event: /trades/latest items and the stream's `ticker` events. */
export interface TickerJson {
  readonly timestamp_utc: string
  readonly symbol: string
  readonly lastPrice: string
  readonly priceChangePercent: string
  readonly volume: string
  readonly source: string
  readonly event_time: string
}

/** An aggregate trade: /agg-trades/latest items and the stream's `trade` events. */
export interface TradeJson {
  readonly symbol: string
  readonly agg_trade_id: number
  readonly price: string
  readonly quantity: string
  readonly trade_time: string
  readonly is_buyer_maker: boolean
}

/** A candle: /candles items and the stream's `candle` events (closed 1m candles). */
export interface CandleJson {
  readonly symbol: string
  readonly interval: string
  readonly open_time: string
  readonly open: string
  readonly high: string
  readonly low: string
  readonly close: string
  readonly volume: string
  readonly closed?: boolean
}

export interface SymbolSummaryJson {
  readonly symbol: string
  readonly latest_timestamp_utc: string
  readonly events: number
}

export interface IdRange {
  readonly from_id: number
  readonly to_id: number
  readonly at?: string
  readonly reason?: string
}

export interface CoverageJson {
  readonly symbol: string
  readonly from: string
  readonly to: string
  readonly trades: {
    readonly first_id: number | null
    readonly last_id: number | null
    readonly stored: number
    readonly missing: ReadonlyArray<IdRange>
    readonly repaired: ReadonlyArray<IdRange>
    readonly unrepairable: ReadonlyArray<IdRange>
  }
  readonly minutes: { readonly covered: number; readonly missing: ReadonlyArray<{ readonly from: string; readonly to: string }> }
}

export type Interval = "1m" | "5m" | "1h" | "1d"
export const INTERVALS: ReadonlyArray<Interval> = ["1m", "5m", "1h", "1d"]
export const INTERVAL_MS: Readonly<Record<Interval, number>> = { "1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000 }

/**
 * An instant of the API (`2026-01-15T14:03:22.913852+00:00`, `2026-01-15T14:03:22.913Z`) in ms. The
 * fraction is cut to milliseconds first: not every engine reads six digits.
 */
export const parseInstant = (text: string): number => Date.parse(text.replace(/(\.\d{3})\d+/, "$1"))

/** A decimal string without trailing zeros, with at least `minDecimals` decimals (`69771.26000000` → `69,771.26`). */
export const formatDecimal = (text: string, minDecimals = 2): string => {
  const match = /^(-?)(\d+)(?:\.(\d*))?$/.exec(text.trim())
  if (match === null) return text
  const [, sign = "", whole = "0", fraction = ""] = match
  let digits = fraction.replace(/0+$/, "")
  if (digits.length < minDecimals) digits = digits.padEnd(minDecimals, "0")
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",")
  return `${sign}${grouped}${digits === "" ? "" : `.${digits}`}`
}

/** How many decimals a decimal string shows once its trailing zeros are cut. */
export const decimalsOf = (text: string): number => {
  const at = text.indexOf(".")
  return at === -1 ? 0 : text.slice(at + 1).replace(/0+$/, "").length
}

/** An age in ms for people: `0.4 s`, `12 s`, `3 min`, `2 h 5 min`, `3 d`. */
export const formatAge = (ms: number): string => {
  const s = Math.max(0, ms) / 1000
  if (s < 10) return `${s.toFixed(1)} s`
  if (s < 120) return `${Math.round(s)} s`
  const min = Math.floor(s / 60)
  if (min < 120) return `${min} min`
  const h = Math.floor(min / 60)
  if (h < 48) return `${h} h ${min % 60} min`
  return `${Math.floor(h / 24)} d`
}

/** An instant shown in UTC, `14:03:22` (with the date when not today's). */
export const formatTime = (ms: number, now = Date.now()): string => {
  const iso = new Date(ms).toISOString()
  const sameDay = iso.slice(0, 10) === new Date(now).toISOString().slice(0, 10)
  return sameDay ? `${iso.slice(11, 19)} UTC` : `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`
}

export const formatCount = (n: number): string => n.toLocaleString("en-US")

import { Schema } from "effect"

/** The shape of a Binance spot symbol, and of a decimal string (for checks outside Schema). */
export const symbolPattern = /^[A-Z0-9]{2,30}$/
export const decimalPattern = /^-?\d+(\.\d+)?$/

/** A Binance spot symbol as the exchange spells it: upper-case letters and digits, e.g. BTCUSDT. */
export const TickerSymbol = Schema.String.pipe(
  Schema.pattern(symbolPattern, {
    message: (issue) =>
      `expected a Binance symbol in upper case letters and digits (e.g. BTCUSDT), got ${JSON.stringify(issue.actual)}`
  }),
  Schema.brand("TickerSymbol")
)
export type TickerSymbol = typeof TickerSymbol.Type

/** Prices and quantities stay decimal strings end to end: never floats. */
export const DecimalString = Schema.String.pipe(
  Schema.pattern(decimalPattern, {
    message: (issue) => `expected a decimal number as a string (e.g. "68001.20"), got ${JSON.stringify(issue.actual)}`
  })
)

const isoInstantPattern = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/

const isLeapYear = (year: number) => year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
const daysInMonth = (year: number, month: number) =>
  month === 2 ? (isLeapYear(year) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31

/** True when `text` has the shape of an instant, whether or not its date and time exist. */
export const isInstantShaped = (text: string): boolean => isoInstantPattern.test(text)

/**
 * Parses an ISO-8601 instant with an explicit offset into microseconds since the epoch, keeping the
 * sub-millisecond digits that `Date` would drop. Returns `undefined` when the text is not such an
 * instant, or names a date or time that does not exist (February 30, month 13, hour 24, minute or
 * second 60, an offset beyond ±23:59): `Date` would roll those over to another day.
 */
export const parseInstantMicros = (text: string): number | undefined => {
  const m = isoInstantPattern.exec(text)
  if (m === null) return undefined
  const [, y, mo, d, h, mi, s, frac = "", zone = "Z"] = m
  const year = Number(y)
  const month = Number(mo)
  const day = Number(d)
  const hour = Number(h)
  const minute = Number(mi)
  const second = Number(s)
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined
  if (hour > 23 || minute > 59 || second > 59) return undefined
  let offsetMinutes = 0
  if (zone !== "Z") {
    const zoneHours = Number(zone.slice(1, 3))
    const zoneMinutes = Number(zone.slice(4, 6))
    if (zoneHours > 23 || zoneMinutes > 59) return undefined
    offsetMinutes = (zone[0] === "-" ? -1 : 1) * (zoneHours * 60 + zoneMinutes)
  }
  let millis = Date.UTC(year, month - 1, day, hour, minute, second)
  if (year < 100) millis = new Date(millis).setUTCFullYear(year, month - 1, day) // Date.UTC reads 0–99 as 1900–1999
  return (millis - offsetMinutes * 60_000) * 1000 + Number(frac.padEnd(6, "0").slice(0, 6))
}

/** Formats microseconds since the epoch the way the contract spells time: `2026-01-15T14:03:22.913852+00:00`. */
export const formatInstantMicros = (micros: number): string => {
  const millis = Math.floor(micros / 1000)
  const iso = new Date(millis).toISOString() // 2026-01-15T14:03:22.913Z
  const subMillis = String(micros - millis * 1000).padStart(3, "0")
  return `${iso.slice(0, 23)}${subMillis}+00:00`
}

/** An ISO-8601 instant with an explicit UTC offset, e.g. `2026-01-15T14:03:22.913852+00:00`. */
export const IsoInstant = Schema.String.pipe(
  Schema.filter((s) => parseInstantMicros(s) !== undefined, {
    message: (issue) =>
      `expected an ISO-8601 instant with an offset such as 2026-01-15T14:03:22.913852+00:00, got ${JSON.stringify(issue.actual)}`
  })
)

export const TICKER_24HR_SOURCE = "binance_api_v3_ticker_24hr"
export const CONTRACT_VERSION = "1"

/**
 * The platform's data contract: one 24h-ticker observation of one symbol. The six fields and their
 * names are fixed; `event_time` (Binance's `closeTime` of the 24h window) is an optional extra.
 */
export const TickerEvent = Schema.Struct({
  timestamp_utc: IsoInstant,
  symbol: TickerSymbol,
  lastPrice: DecimalString,
  priceChangePercent: DecimalString,
  volume: DecimalString,
  source: Schema.NonEmptyTrimmedString,
  event_time: Schema.optional(IsoInstant)
})
export type TickerEvent = typeof TickerEvent.Type

/** The wire form on a broker: the event as a JSON document. */
export const TickerEventJson = Schema.parseJson(TickerEvent)

/** The deterministic identity of an event: one row per (symbol, instant) whatever the replay count. */
export const eventKey = (event: TickerEvent): { readonly symbol: TickerSymbol; readonly tsMicros: number } => ({
  symbol: event.symbol,
  tsMicros: parseInstantMicros(event.timestamp_utc)!
})

/**
 * A contract event with what every part after the broker needs, decoded once where it enters the
 * consumer (or made directly by a source that knows them): its identity (symbol, instant in
 * microseconds since the epoch) and its last price as a number, for comparisons only — the decimal
 * string in `event` stays the value that is stored and served.
 */
export interface Tick {
  readonly event: TickerEvent
  readonly symbol: TickerSymbol
  readonly tsMicros: number
  readonly price: number
}

/** The tick of a decoded contract event (its `timestamp_utc` already validated by the schema). */
export const toTick = (event: TickerEvent): Tick => ({
  event,
  symbol: event.symbol,
  tsMicros: parseInstantMicros(event.timestamp_utc)!,
  price: Number(event.lastPrice)
})

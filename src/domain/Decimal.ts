import { BigDecimal } from "effect"
import { decimalPattern } from "./Ticker.js"

/**
 * Exact arithmetic on the contract's decimal strings ("68001.20", "-0.5") through Effect's `BigDecimal`:
 * no float ever sees a price. The strings are stricter than `BigDecimal.fromString` (no exponent, no
 * sign, no bare point), and come back in plain notation at a chosen scale, where `BigDecimal.format`
 * switches to an exponent from 16 places. Sums keep the largest scale of their operands
 * ("0.10000000" + "0.2" = "0.30000000"), so Binance's 8-place quantities stay 8-place;
 * `normalizeDecimal` gives the shortest form.
 */

export const isDecimal = (s: unknown): s is string => typeof s === "string" && decimalPattern.test(s)

const parse = (s: string): BigDecimal.BigDecimal => {
  if (!isDecimal(s)) {
    throw new RangeError(`expected a decimal number as a string (e.g. "68001.20"), got ${JSON.stringify(s)}`)
  }
  return BigDecimal.unsafeFromString(s)
}

const checked = (s: string): string => {
  parse(s)
  return s
}

/** Plain notation with exactly `places` fractional digits (never an exponent, never "-0"). */
const toFixed = (n: BigDecimal.BigDecimal, places: number): string => {
  const { value } = BigDecimal.scale(n, places)
  const digits = (value < 0n ? -value : value).toString().padStart(places + 1, "0")
  const whole = digits.slice(0, digits.length - places)
  const fraction = places > 0 ? `.${digits.slice(digits.length - places)}` : ""
  return `${value < 0n ? "-" : ""}${whole}${fraction}`
}

export const addDecimal = (a: string, b: string): string => sumDecimals([a, b])

/** The exact sum at the largest scale among the inputs; "0" for an empty list. */
export const sumDecimals = (list: Iterable<string>): string => {
  const parsed = Array.from(list, parse)
  return toFixed(BigDecimal.sumAll(parsed), parsed.reduce((max, x) => Math.max(max, x.scale), 0))
}

export const compareDecimal = (a: string, b: string): -1 | 0 | 1 => BigDecimal.Order(parse(a), parse(b))

/** The greatest argument, returned as spelled; ties keep the earliest. */
export const maxDecimal = (first: string, ...rest: ReadonlyArray<string>): string =>
  rest.reduce((best, s) => (compareDecimal(s, best) > 0 ? s : best), checked(first))

/** The least argument, returned as spelled; ties keep the earliest. */
export const minDecimal = (first: string, ...rest: ReadonlyArray<string>): string =>
  rest.reduce((best, s) => (compareDecimal(s, best) < 0 ? s : best), checked(first))

/** The shortest spelling: no trailing fractional zeros, no leading zeros, no "-0". */
export const normalizeDecimal = (s: string): string => {
  const n = BigDecimal.normalize(parse(s))
  return toFixed(n, Math.max(0, n.scale))
}

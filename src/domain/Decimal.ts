/**
 * Exact arithmetic on decimal strings ("68001.20", "-0.5"), scaled to BigInt: no float ever sees a price.
 * Sums keep the largest scale of their operands ("0.10000000" + "0.2" = "0.30000000"), so Binance's
 * 8-place quantities stay 8-place; `normalizeDecimal` gives the shortest form.
 */

const decimalPattern = /^-?\d+(\.\d+)?$/

interface Scaled {
  readonly units: bigint
  readonly scale: number
}

export const isDecimal = (s: unknown): s is string => typeof s === "string" && decimalPattern.test(s)

const parse = (s: string): Scaled => {
  if (!isDecimal(s)) {
    throw new RangeError(`expected a decimal number as a string (e.g. "68001.20"), got ${JSON.stringify(s)}`)
  }
  const dot = s.indexOf(".")
  return dot < 0
    ? { units: BigInt(s), scale: 0 }
    : { units: BigInt(s.slice(0, dot) + s.slice(dot + 1)), scale: s.length - dot - 1 }
}

const checked = (s: string): string => {
  parse(s)
  return s
}

const rescale = (x: Scaled, scale: number): bigint => x.units * 10n ** BigInt(scale - x.scale)

const format = ({ units, scale }: Scaled): string => {
  const negative = units < 0n
  const digits = (negative ? -units : units).toString().padStart(scale + 1, "0")
  const whole = digits.slice(0, digits.length - scale)
  const fraction = scale > 0 ? `.${digits.slice(digits.length - scale)}` : ""
  return `${negative ? "-" : ""}${whole}${fraction}`
}

export const addDecimal = (a: string, b: string): string => sumDecimals([a, b])

/** The exact sum at the largest scale among the inputs; "0" for an empty list. */
export const sumDecimals = (list: Iterable<string>): string => {
  const parsed = Array.from(list, parse)
  const scale = parsed.reduce((max, x) => Math.max(max, x.scale), 0)
  const units = parsed.reduce((acc, x) => acc + rescale(x, scale), 0n)
  return format({ units, scale })
}

export const compareDecimal = (a: string, b: string): -1 | 0 | 1 => {
  const x = parse(a)
  const y = parse(b)
  const scale = Math.max(x.scale, y.scale)
  const l = rescale(x, scale)
  const r = rescale(y, scale)
  return l < r ? -1 : l > r ? 1 : 0
}

/** The greatest argument, returned as spelled; ties keep the earliest. */
export const maxDecimal = (first: string, ...rest: ReadonlyArray<string>): string =>
  rest.reduce((best, s) => (compareDecimal(s, best) > 0 ? s : best), checked(first))

/** The least argument, returned as spelled; ties keep the earliest. */
export const minDecimal = (first: string, ...rest: ReadonlyArray<string>): string =>
  rest.reduce((best, s) => (compareDecimal(s, best) < 0 ? s : best), checked(first))

/** The shortest spelling: no trailing fractional zeros, no leading zeros, no "-0". */
export const normalizeDecimal = (s: string): string => {
  let { units, scale } = parse(s)
  while (scale > 0 && units % 10n === 0n) {
    units /= 10n
    scale -= 1
  }
  return format({ units, scale })
}

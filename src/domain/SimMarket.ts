import type { Tick, TickerEvent, TickerSymbol } from "./Ticker.js"

/**
 * A deterministic simulated market (no I/O): the same settings always give the same events.
 *
 * Event `k` of the stream is observed at `start + k / rate` seconds (`offsetMicros`, µs precision,
 * strictly increasing) and belongs to the symbol `k mod n` (round-robin over the configured symbols).
 * Each symbol has its own seeded PRNG, so its walk depends on the seed, the rate, the number of
 * symbols and the start only. Its price is a geometric random walk at the symbol's annual volatility,
 * quantized to its tick size; `priceChangePercent` compares it with the price 24 h earlier and `volume`
 * is the base-asset volume of the last 24 h, both from per-minute history that is simulated for the
 * day before the start, so the first event already carries realistic 24 h figures.
 *
 * Cheap per event: a few arithmetic operations, one `Math.exp`, one Gaussian draw and string building
 * from integers (the timestamp reuses the ISO text of the current second); no Schema, no parsing.
 */

export const SIMULATED_SOURCE = "simulated"

/** What a simulated symbol looks like: its starting price, Binance-like tick and lot sizes, volatility. */
export interface SymbolProfile {
  /** Typical price in the quote asset around the start. */
  readonly basePrice: number
  /** Decimals of the price tick (2: 0.01, like BTCUSDT). */
  readonly priceDecimals: number
  /** Decimals of the quantity step (5: 0.00001 BTC); volume is printed with 8 decimals like Binance. */
  readonly lotDecimals: number
  /** Annualised volatility of log returns (0.6 = 60 %). */
  readonly annualVolatility: number
  /** Typical 24 h turnover in the quote asset. */
  readonly dailyQuoteVolume: number
}

const KNOWN: Readonly<Record<string, SymbolProfile>> = {
  BTCUSDT: { basePrice: 68_000, priceDecimals: 2, lotDecimals: 5, annualVolatility: 0.6, dailyQuoteVolume: 1.5e9 },
  ETHUSDT: { basePrice: 3_500, priceDecimals: 2, lotDecimals: 4, annualVolatility: 0.7, dailyQuoteVolume: 8e8 },
  BNBUSDT: { basePrice: 600, priceDecimals: 2, lotDecimals: 3, annualVolatility: 0.65, dailyQuoteVolume: 1e8 },
  SOLUSDT: { basePrice: 150, priceDecimals: 2, lotDecimals: 3, annualVolatility: 0.8, dailyQuoteVolume: 3e8 },
  XRPUSDT: { basePrice: 0.6, priceDecimals: 4, lotDecimals: 0, annualVolatility: 0.75, dailyQuoteVolume: 2e8 },
  ADAUSDT: { basePrice: 0.45, priceDecimals: 4, lotDecimals: 1, annualVolatility: 0.8, dailyQuoteVolume: 5e7 },
  DOGEUSDT: { basePrice: 0.15, priceDecimals: 5, lotDecimals: 0, annualVolatility: 0.9, dailyQuoteVolume: 1e8 },
  TRXUSDT: { basePrice: 0.12, priceDecimals: 5, lotDecimals: 1, annualVolatility: 0.6, dailyQuoteVolume: 5e7 },
  LTCUSDT: { basePrice: 80, priceDecimals: 2, lotDecimals: 3, annualVolatility: 0.7, dailyQuoteVolume: 5e7 },
  LINKUSDT: { basePrice: 15, priceDecimals: 3, lotDecimals: 2, annualVolatility: 0.8, dailyQuoteVolume: 5e7 },
  AVAXUSDT: { basePrice: 35, priceDecimals: 2, lotDecimals: 2, annualVolatility: 0.85, dailyQuoteVolume: 5e7 },
  DOTUSDT: { basePrice: 7, priceDecimals: 3, lotDecimals: 2, annualVolatility: 0.8, dailyQuoteVolume: 3e7 },
  PEPEUSDT: { basePrice: 0.00001, priceDecimals: 8, lotDecimals: 0, annualVolatility: 1.0, dailyQuoteVolume: 1e8 }
}

/** FNV-1a over the UTF-16 code units of `text`, as an unsigned 32-bit integer. */
export const fnv1a = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** A 32-bit finaliser (murmur3's fmix32): spreads close inputs over the whole range. */
export const mix32 = (x: number): number => {
  x ^= x >>> 16
  x = Math.imul(x, 0x85ebca6b)
  x ^= x >>> 13
  x = Math.imul(x, 0xc2b2ae35)
  x ^= x >>> 16
  return x >>> 0
}

/** Uniform in [0, 1) from a 32-bit integer. */
const unit = (x: number) => x / 4294967296

const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x))

/**
 * The profile of `symbol`: a table for the best-known pairs, otherwise derived from a hash of the name
 * (a price from 0.001 to 1000 with ~5 significant digits of tick, a lot step of about one cent or
 * more, 60–90 % annual volatility, 1–100 M of daily turnover). It does not depend on the seed.
 */
export const profileOf = (symbol: string): SymbolProfile => {
  const known = KNOWN[symbol]
  if (known !== undefined) return known
  const h = fnv1a(symbol)
  const u1 = unit(mix32(h ^ 0x9e3779b9))
  const u2 = unit(mix32(h ^ 0x7f4a7c15))
  const u3 = unit(mix32(h ^ 0x2545f491))
  const magnitude = -3 + 6 * u1
  const priceDecimals = clamp(4 - Math.floor(magnitude), 2, 8)
  const basePrice = Math.round(10 ** magnitude * 10 ** priceDecimals) / 10 ** priceDecimals
  return {
    basePrice: Math.max(basePrice, 10 ** -priceDecimals * 100),
    priceDecimals,
    lotDecimals: clamp(Math.floor(magnitude) + 1, 0, 8),
    annualVolatility: 0.6 + 0.3 * u2,
    dailyQuoteVolume: 10 ** (6 + 2 * u3)
  }
}

/** mulberry32: a small, fast PRNG with 32 bits of state; uniform numbers in [0, 1). */
export const mulberry32 = (seed: number) => {
  let a = seed >>> 0
  return (): number => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Standard normal draws (Box–Muller, both values of each pair used) from a uniform source. */
export const gaussian = (uniform: () => number) => {
  let spare = 0
  let hasSpare = false
  return (): number => {
    if (hasSpare) {
      hasSpare = false
      return spare
    }
    let u = 0
    while (u === 0) u = uniform()
    const r = Math.sqrt(-2 * Math.log(u))
    const theta = 2 * Math.PI * uniform()
    spare = r * Math.sin(theta)
    hasSpare = true
    return r * Math.cos(theta)
  }
}

/** The 32-bit seed of one symbol's PRNG: the whole SIM_SEED (any safe integer) and the symbol's name. */
const symbolSeed = (seed: number, symbol: string) => mix32(fnv1a(`${seed}|${symbol}`))

/** Microseconds from the start to event `k` at `rate` events per second: ⌊k·10⁶ / rate⌋, exact for any k. */
export const offsetMicros = (k: number, rate: number): number => {
  const whole = Math.floor(k / rate)
  return whole * 1_000_000 + Math.floor(((k - whole * rate) * 1_000_000) / rate)
}

/** A non-negative integer `units` scaled by 10^-decimals as a decimal string: (6800120, 2) → "68001.20". */
export const formatScaled = (units: number, decimals: number): string => {
  let digits = String(units)
  if (decimals === 0) return digits
  if (digits.length <= decimals) digits = "0".repeat(decimals - digits.length + 1) + digits
  return `${digits.slice(0, digits.length - decimals)}.${digits.slice(digits.length - decimals)}`
}

export const SECONDS_PER_YEAR = 365 * 86_400
const MINUTE_MICROS = 60_000_000
const MINUTES_PER_DAY = 1_440
const VOLUME_DECIMALS = 8

/** The walk and 24 h history of one symbol. Minute `i`'s slot is `i mod 1440`. */
interface SymbolState {
  readonly symbol: TickerSymbol
  readonly gauss: () => number
  /** 10^priceDecimals: price ticks per unit of quote. */
  readonly scale: number
  readonly priceDecimals: number
  readonly lotDecimals: number
  /** What pads the volume to 8 decimals (with the point when the lot step is whole). */
  readonly volumePad: string
  /** Standard deviation of one event's log return, and its Itô correction σ²/2 (the walk is a martingale). */
  readonly sigma: number
  readonly halfVariance: number
  /** Mean volume of one minute, in lot units. */
  readonly minuteVolume: number
  logPrice: number
  /** Price ticks at the start of each of the last 1440 minutes. */
  readonly minuteOpen: Float64Array
  /** Volume (lot units) of each of the last 1440 minutes, the current one included. */
  readonly minuteVolumes: Float64Array
  /** The minute of the latest event. */
  minute: number
  /** The price ticks 24 h before the current minute began. */
  open24h: number
  /** Volume of the 1439 whole minutes between the minute 24 h ago and the current one. */
  middleVolume: number
  /** Volume of the minute 24 h ago (counted pro rata) and of the current minute (likewise). */
  oldestVolume: number
  currentVolume: number
}

export interface SimSettings {
  /** Any safe integer. */
  readonly seed: number
  /** Whole events per second over all symbols, 1..200,000. */
  readonly eventsPerSecond: number
  /** At least one; events go round-robin over them in this order. */
  readonly symbols: ReadonlyArray<TickerSymbol>
  /** The instant of event 0, in microseconds since the epoch. */
  readonly startMicros: number
}

export interface SimMarket {
  readonly settings: SimSettings
  /** The index of the next event (how many were generated). */
  readonly position: () => number
  /** Microseconds from the start to the next event. */
  readonly nextOffsetMicros: () => number
  /** The next event. */
  readonly next: () => Tick
  /** The next events whose offset from the start is at most `untilOffsetMicros`, at most `max` of them. */
  readonly takeDue: (untilOffsetMicros: number, max: number) => Array<Tick>
}

/** A simulated market positioned at event 0. */
export const makeSimMarket = (settings: SimSettings): SimMarket => {
  const { eventsPerSecond: rate, startMicros, symbols, seed } = settings
  if (!Number.isInteger(rate) || rate < 1) throw new RangeError(`eventsPerSecond must be a positive whole number, got ${rate}`)
  if (symbols.length === 0) throw new RangeError("the simulated market needs at least one symbol")
  if (!Number.isSafeInteger(startMicros)) throw new RangeError(`startMicros must be a whole number of microseconds, got ${startMicros}`)
  const n = symbols.length
  /** Seconds between two events of the same symbol. */
  const perSymbolStep = n / rate

  const states: Array<SymbolState> = symbols.map((symbol) => {
    const profile = profileOf(symbol)
    const gauss = gaussian(mulberry32(symbolSeed(seed, symbol)))
    const scale = 10 ** profile.priceDecimals
    const sigma = profile.annualVolatility * Math.sqrt(perSymbolStep / SECONDS_PER_YEAR)
    const minuteSigma = profile.annualVolatility * Math.sqrt(60 / SECONDS_PER_YEAR)
    const minuteVolume = (profile.dailyQuoteVolume / profile.basePrice / MINUTES_PER_DAY) * 10 ** profile.lotDecimals
    const state: SymbolState = {
      symbol,
      gauss,
      scale,
      priceDecimals: profile.priceDecimals,
      lotDecimals: profile.lotDecimals,
      volumePad: (profile.lotDecimals === 0 ? "." : "") + "0".repeat(VOLUME_DECIMALS - profile.lotDecimals),
      sigma,
      halfVariance: (sigma * sigma) / 2,
      minuteVolume,
      logPrice: Math.log(profile.basePrice) + 0.02 * gauss(),
      minuteOpen: new Float64Array(MINUTES_PER_DAY),
      minuteVolumes: new Float64Array(MINUTES_PER_DAY),
      minute: 0,
      open24h: 0,
      middleVolume: 0,
      oldestVolume: 0,
      currentVolume: 0
    }
    // The day before the start, minute by minute, so the first events carry 24 h figures.
    const first = Math.floor(startMicros / MINUTE_MICROS)
    for (let m = first - MINUTES_PER_DAY; m < first; m++) {
      const slot = ((m % MINUTES_PER_DAY) + MINUTES_PER_DAY) % MINUTES_PER_DAY
      state.minuteOpen[slot] = priceTicks(state)
      state.minuteVolumes[slot] = minuteVolumeDraw(state)
      state.logPrice += minuteSigma * gauss() - (minuteSigma * minuteSigma) / 2
    }
    state.minute = first - 1
    return state
  })

  let k = 0
  let cachedSecond = Number.NaN
  let cachedPrefix = ""

  /** The contract's spelling of `micros`, reusing the ISO text of the current second. */
  const instantText = (micros: number) => {
    const second = Math.floor(micros / 1_000_000)
    if (second !== cachedSecond) {
      cachedSecond = second
      cachedPrefix = `${new Date(second * 1000).toISOString().slice(0, 19)}.`
    }
    return String(micros - second * 1_000_000).padStart(6, "0")
  }

  const next = (): Tick => {
    const micros = startMicros + offsetMicros(k, rate)
    const s = states[k % n]!
    k++
    const minute = Math.floor(micros / MINUTE_MICROS)
    if (minute !== s.minute) rollOver(s, minute)
    s.logPrice += s.sigma * s.gauss() - s.halfVariance
    const ticks = priceTicks(s)
    const into = (micros - minute * MINUTE_MICROS) / MINUTE_MICROS
    const volume =
      s.middleVolume + Math.round(s.currentVolume * into) + Math.round(s.oldestVolume * (1 - into))
    const change = ((ticks / s.open24h - 1) * 100).toFixed(3)
    const fraction = instantText(micros)
    const event: TickerEvent = {
      timestamp_utc: `${cachedPrefix}${fraction}+00:00`,
      symbol: s.symbol,
      lastPrice: formatScaled(ticks, s.priceDecimals),
      priceChangePercent: change === "-0.000" ? "0.000" : change,
      volume: formatScaled(volume, s.lotDecimals) + s.volumePad,
      source: SIMULATED_SOURCE,
      // Like Binance's closeTime: the end of the 24 h window, in milliseconds.
      event_time: `${cachedPrefix}${fraction.slice(0, 3)}000+00:00`
    }
    return { event, symbol: s.symbol, tsMicros: micros, price: ticks / s.scale }
  }

  return {
    settings,
    position: () => k,
    nextOffsetMicros: () => offsetMicros(k, rate),
    next,
    takeDue: (untilOffsetMicros, max) => {
      const out: Array<Tick> = []
      while (out.length < max && offsetMicros(k, rate) <= untilOffsetMicros) out.push(next())
      return out
    }
  }
}

/** The current price in ticks: at least one tick, so a price is always positive. */
const priceTicks = (s: SymbolState) => Math.max(1, Math.round(Math.exp(s.logPrice) * s.scale))

/** One minute's volume in lot units: log-normal around the symbol's mean (mean preserved). */
const minuteVolumeDraw = (s: SymbolState) => Math.round(s.minuteVolume * Math.exp(0.5 * s.gauss() - 0.125))

/**
 * Moves `s` to `minute`, passing through every minute since its last event (at most a day of them):
 * the open of each minute is recorded, its volume drawn, and the 24 h window's figures re-based.
 */
const rollOver = (s: SymbolState, minute: number) => {
  const from = Math.max(s.minute + 1, minute - MINUTES_PER_DAY + 1)
  for (let m = from; m <= minute; m++) {
    const slot = ((m % MINUTES_PER_DAY) + MINUTES_PER_DAY) % MINUTES_PER_DAY
    // The slot still holds minute m - 1440: the start of the 24 h window.
    s.open24h = s.minuteOpen[slot]!
    s.oldestVolume = s.minuteVolumes[slot]!
    s.minuteOpen[slot] = priceTicks(s)
    s.minuteVolumes[slot] = minuteVolumeDraw(s)
  }
  let total = 0
  for (let i = 0; i < MINUTES_PER_DAY; i++) total += s.minuteVolumes[i]!
  const currentSlot = ((minute % MINUTES_PER_DAY) + MINUTES_PER_DAY) % MINUTES_PER_DAY
  s.currentVolume = s.minuteVolumes[currentSlot]!
  s.middleVolume = total - s.currentVolume
  s.minute = minute
}

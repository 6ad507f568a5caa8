import {
  fnv1a,
  formatScaled,
  gaussian,
  makeSimMarket,
  mix32,
  mulberry32,
  offsetMicros,
  profileOf,
  SECONDS_PER_YEAR,
  type SimSettings
} from "./SimMarket.js"
import type { TickerSymbol } from "./Ticker.js"
import { type Trade, TRADE_SIM_SOURCE } from "./Trade.js"

/**
 * Simulated aggregate trades (no I/O), deterministic like the simulated market they trade in.
 *
 * Trade `k` happens at `start + k / rate` (`offsetMicros`) on the symbol `k mod n`, its time cut to
 * the millisecond as Binance's are (so several trades share one). Its price follows the market's own
 * path: the ticks of `makeSimMarket` with the same settings are points of that path, and between two
 * ticks of a symbol the trades walk a Brownian bridge at the symbol's volatility, so they meet each
 * tick's price. A trade is on the bid (the buyer is the maker) or one tick above, on the ask.
 *
 * Ids are consecutive per symbol. The first is a seeded base plus the number of trades the symbol
 * would have had since the epoch at this rate: a later start continues above an earlier run's ids,
 * and the ids a sim that was down did not produce show as a gap, as on Binance.
 */

/** Binance prints prices and quantities of trades with 8 decimals. */
const WIRE_DECIMALS = 8
/** Mean quote value of one aggregate trade (log-normal sizes around it). */
const MEAN_TRADE_QUOTE = 2_000

/** A point of a symbol's price path: an instant (µs) and the log of the price. */
interface Point {
  readonly micros: number
  readonly log: number
}

interface SymbolTrades {
  readonly symbol: TickerSymbol
  readonly uniform: () => number
  readonly gauss: () => number
  readonly scale: number
  readonly priceDecimals: number
  readonly lotDecimals: number
  readonly pricePad: string
  readonly quantityPad: string
  /** Volatility of the log price per √second. */
  readonly sigma: number
  /** Mean size of one aggregate trade, in lot units. */
  readonly meanLots: number
  nextId: number
  nextTradeId: number
  /** When this symbol's next trade happens. */
  nextTradeMicros: number
  /** The latest known point of the path at or before the next trade (a tick or the last trade); none before the first tick. */
  last: Point | undefined
  /** Ticks after the next trade, oldest first: the first is where the bridge goes. */
  readonly ahead: Array<Point>
}

export interface SimTrades {
  readonly settings: SimSettings
  readonly tradesPerSecond: number
  /** The index of the next trade (how many were generated). */
  readonly position: () => number
  /** Microseconds from the start to the next trade. */
  readonly nextOffsetMicros: () => number
  readonly next: () => Trade
  /** The next trades whose offset from the start is at most `untilOffsetMicros`, at most `max` of them. */
  readonly takeDue: (untilOffsetMicros: number, max: number) => Array<Trade>
}

/** The padding that prints `decimals` decimals with WIRE_DECIMALS (with the point when there are none). */
const padTo8 = (decimals: number) => (decimals === 0 ? "." : "") + "0".repeat(WIRE_DECIMALS - decimals)

/** Simulated trades at `tradesPerSecond` over the market of `settings`, positioned at trade 0. */
export const makeSimTrades = (settings: SimSettings, tradesPerSecond: number): SimTrades => {
  if (!Number.isInteger(tradesPerSecond) || tradesPerSecond < 1) {
    throw new RangeError(`tradesPerSecond must be a positive whole number, got ${tradesPerSecond}`)
  }
  const rate = tradesPerSecond
  const { seed, startMicros, symbols } = settings
  const market = makeSimMarket(settings)
  const n = symbols.length
  // Trades the symbol would have had since the epoch: ids of a later start begin above an earlier one's.
  const sinceEpoch = Math.max(0, Math.floor((startMicros / 1e6) * (rate / n)))

  const states = new Map<string, SymbolTrades>()
  const ordered: Array<SymbolTrades> = symbols.map((symbol, i) => {
    const profile = profileOf(symbol)
    const uniform = mulberry32(mix32(fnv1a(`${seed}|${symbol}|trades`)))
    const idBase = 1_000_000_000 + (mix32(fnv1a(`${seed}|${symbol}|ids`)) % 1_000_000_000) + sinceEpoch
    const state: SymbolTrades = {
      symbol,
      uniform,
      gauss: gaussian(uniform),
      scale: 10 ** profile.priceDecimals,
      priceDecimals: profile.priceDecimals,
      lotDecimals: profile.lotDecimals,
      pricePad: padTo8(profile.priceDecimals),
      quantityPad: padTo8(profile.lotDecimals),
      sigma: profile.annualVolatility / Math.sqrt(SECONDS_PER_YEAR),
      meanLots: Math.max(1, (MEAN_TRADE_QUOTE / profile.basePrice) * 10 ** profile.lotDecimals),
      nextId: idBase,
      nextTradeId: 2 * idBase,
      nextTradeMicros: startMicros + offsetMicros(i, rate),
      last: undefined,
      ahead: []
    }
    states.set(symbol, state)
    return state
  })

  /** The market's next tick, as a point of its symbol's path. */
  const absorbTick = () => {
    const tick = market.next()
    const s = states.get(tick.symbol)!
    const point = { micros: tick.tsMicros, log: Math.log(tick.price) }
    if (s.ahead.length === 0 && point.micros <= s.nextTradeMicros) s.last = point
    else s.ahead.push(point)
  }

  let k = 0
  const next = (): Trade => {
    const s = ordered[k % n]!
    const at = s.nextTradeMicros
    while (s.ahead.length === 0) absorbTick()
    const to = s.ahead[0]!
    const from = s.last ?? { micros: startMicros, log: to.log }
    // Brownian bridge from `from` to `to`, sampled at `at` (seconds).
    const elapsed = (at - from.micros) / 1e6
    const rest = (to.micros - at) / 1e6
    const span = elapsed + rest
    const mean = span === 0 ? to.log : from.log + (elapsed / span) * (to.log - from.log)
    const sd = span === 0 ? 0 : s.sigma * Math.sqrt((elapsed * rest) / span)
    const log = mean + sd * s.gauss()
    s.last = { micros: at, log }

    const bid = Math.max(1, Math.floor(Math.exp(log) * s.scale))
    const isBuyerMaker = s.uniform() < 0.5
    const lots = Math.max(1, Math.round(s.meanLots * Math.exp(s.gauss() - 0.5)))
    let count = 1
    while (count < 20 && s.uniform() < 0.35) count++
    const trade: Trade = {
      symbol: s.symbol,
      id: s.nextId++,
      price: formatScaled(isBuyerMaker ? bid : bid + 1, s.priceDecimals) + s.pricePad,
      quantity: formatScaled(lots, s.lotDecimals) + s.quantityPad,
      firstTradeId: s.nextTradeId,
      lastTradeId: s.nextTradeId + count - 1,
      timeMicros: Math.floor(at / 1000) * 1000,
      isBuyerMaker,
      source: TRADE_SIM_SOURCE
    }
    s.nextTradeId += count
    k++
    // The symbol's next trade: ticks up to it are points before it, the rest stay ahead.
    s.nextTradeMicros = startMicros + offsetMicros(k + n - 1, rate)
    while (s.ahead.length > 0 && s.ahead[0]!.micros <= s.nextTradeMicros) s.last = s.ahead.shift()!
    return trade
  }

  return {
    settings,
    tradesPerSecond,
    position: () => k,
    nextOffsetMicros: () => offsetMicros(k, rate),
    next,
    takeDue: (untilOffsetMicros, max) => {
      const out: Array<Trade> = []
      while (out.length < max && offsetMicros(k, rate) <= untilOffsetMicros) out.push(next())
      return out
    }
  }
}

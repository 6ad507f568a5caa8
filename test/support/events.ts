import {
  formatInstantMicros,
  type Tick,
  TICKER_24HR_SOURCE,
  type TickerEvent,
  type TickerSymbol,
  toTick
} from "../../src/domain/Ticker.js"

/** A contract event for `symbol` observed at `micros` (epoch microseconds). */
export const makeEvent = (symbol: string, micros: number, lastPrice = "100.00"): TickerEvent => ({
  timestamp_utc: formatInstantMicros(micros),
  symbol: symbol as TickerSymbol,
  lastPrice,
  priceChangePercent: "1.250",
  volume: "1000.50000000",
  source: TICKER_24HR_SOURCE
})

/** The same event as the Tick a broker delivers (decoded once, identity and price beside it). */
export const makeTick = (symbol: string, micros: number, lastPrice = "100.00"): Tick => toTick(makeEvent(symbol, micros, lastPrice))

/** Epoch microseconds of an ISO instant. */
export const us = (iso: string) => Date.parse(iso) * 1000

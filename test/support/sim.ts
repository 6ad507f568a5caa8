import type { SimSettings } from "../../src/domain/SimMarket.js"
import { makeSimTrades } from "../../src/domain/SimTrades.js"
import type { TickerSymbol } from "../../src/domain/Ticker.js"
import type { Trade } from "../../src/domain/Trade.js"

export const sym = (s: string) => s as TickerSymbol

/** The instant of the simulated market's event 0 in the unit tests: 2026-01-15T14:03:22Z, in µs. */
export const SIM_START = Date.UTC(2026, 0, 15, 14, 3, 22) * 1000

/** Seed 42, 10 events a second over BTCUSDT and ETHUSDT from SIM_START; `over` wins. */
export const simSettings = (over: Partial<SimSettings> = {}): SimSettings => ({
  seed: 42,
  eventsPerSecond: 10,
  symbols: [sym("BTCUSDT"), sym("ETHUSDT")],
  startMicros: SIM_START,
  ...over
})

/** The first `n` trades the simulated market makes at `tradesPerSecond` (src/domain/SimTrades.ts). */
export const simTrades = (settings: SimSettings, tradesPerSecond: number, n: number): Array<Trade> =>
  makeSimTrades(settings, tradesPerSecond).takeDue(Number.MAX_SAFE_INTEGER, n)

/**
 * A fake Binance Spot REST server (market-data subset) for tests and benchmarks.
 *
 * Plain `node:http` (plus `ws` for the WebSocket side). Shapes, error bodies, validation order and
 * weight accounting follow /work/shared/BINANCE_API.md (§1, §2, §3, §5) and the fixtures in
 * /work/shared/fixtures/binance/ (whose base values are embedded below).
 *
 * REST `/api/v3/aggTrades` and the 1m klines from `trades.worldStart` on are answered from the trade
 * world of fakeMarket.ts, which the WebSocket side (fakeBinanceWs.ts, same port, `wsUrl`) streams.
 */
import { randomUUID } from "node:crypto"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { attachFakeBinanceWs, type FakeBinanceWs, type FakeWsOptions } from "./fakeBinanceWs.js"
import {
  type AggTrade, barRow, d8, fixed, makeMarket, type MarketOptions, type MinuteBar, roundTo, type SymbolSeed, unit
} from "./fakeMarket.js"

export type { AggTrade, FakeBinanceWs, FakeWsOptions, MarketOptions, MinuteBar }

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

export type Fault =
  | { readonly kind: "status"; readonly status: 429 | 418; readonly retryAfterSeconds: number }
  | { readonly kind: "status"; readonly status: 500 | 502 | 503 }
  | { readonly kind: "status"; readonly status: 451 }
  | { readonly kind: "malformed" }
  | { readonly kind: "wrongShape" }
  | { readonly kind: "slow"; readonly delayMs: number }
  | { readonly kind: "hang" }
  | { readonly kind: "reset" }

export interface RecordedRequest {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly at: number
}

export interface FakeBinance {
  /** "http://127.0.0.1:<port>" */
  readonly url: string
  /** Every request received, in arrival order (live view). */
  readonly requests: ReadonlyArray<RecordedRequest>
  /** The next requests (any route) are answered with these faults, in order; after that, normally. */
  enqueueFaults(...faults: ReadonlyArray<Fault>): void
  /** Fault applied to every request until cleared with `undefined`. Queued faults are used first. */
  setPersistentFault(fault: Fault | undefined): void
  /** Freeze the clock at `ms` (used for serverTime, ticker closeTime, klines, trades and the weight window). */
  setNow(ms: number): void
  /** "ws://127.0.0.1:<port>": the value for BINANCE_WS_URL (same server and port as `url`). */
  readonly wsUrl: string
  /** The WebSocket side: controls and observations (fakeBinanceWs.ts). */
  readonly ws: FakeBinanceWs
  /** The trade world REST aggTrades/klines and the streams answer from (fakeMarket.ts). */
  readonly trades: FakeTrades
  close(): Promise<void>
}

/** Controls of the trade world. Symbols in upper case ("BTCUSDT"). Every read first grows the world to now. */
export interface FakeTrades {
  /** The first minute covered by trades (1m klines from it on are aggregated from them). */
  readonly worldStart: number
  /** `count` trades right now (all at the same ms), streamed at once; returns them. */
  emit(symbol: string, count: number): ReadonlyArray<AggTrade>
  /** Every trade so far, including the ones REST no longer serves. */
  all(symbol: string): ReadonlyArray<AggTrade>
  firstId(symbol: string): number
  lastId(symbol: string): number
  /** Average trades per second, for one symbol or as the default of all (0: only `emit`). */
  setRate(tradesPerSecond: number, symbol?: string): void
  /** REST no longer serves ids below `id` (a `fromId` below it answers from `id` on). */
  forgetBefore(symbol: string, id: number): void
  /** REST never returns ids in [fromId, toId] (a `fromId` inside answers `[]`). */
  hide(symbol: string, fromId: number, toId: number): void
  /** The 1m bar opening at `openTime` as aggregated from the trades (what REST and the stream send). */
  bar(symbol: string, openTime: number): MinuteBar
}

export interface FakeBinanceOptions {
  readonly port?: number
  /** Clock used until `setNow` is called. Defaults to `Date.now`. */
  readonly now?: () => number
  /** Extra symbols besides BTCUSDT, ETHUSDT, SOLUSDT, BNBUSDT, XRPUSDT. */
  readonly knownSymbols?: ReadonlyArray<string>
  /** The WebSocket side's rules (always served; these only change the defaults). */
  readonly ws?: FakeWsOptions
  /** The trade world: rate (default 4 trades/s per symbol), history before start (default 10 min). */
  readonly market?: MarketOptions
}

// ---------------------------------------------------------------------------------------------
// Constants (Binance bodies and limits)
// ---------------------------------------------------------------------------------------------

const WEIGHT_LIMIT = 6000
const WINDOW_MS = 60_000
const FIRST_BAN_SECONDS = 120
const MAX_BAN_SECONDS = 3 * 24 * 3600
const DAY_MS = 86_400_000
const KLINES_DEFAULT_LIMIT = 500
const KLINES_MAX_LIMIT = 1000
const AGG_TRADES_DEFAULT_LIMIT = 500
const AGG_TRADES_MAX_LIMIT = 1000

const JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
const SYMBOL_RANGE = "^[A-Z0-9-_.]{1,20}$"
const SYMBOL_RE = /^[A-Z0-9\-_.]{1,20}$/
const SYMBOLS_RANGE = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'
const SYMBOLS_RE = /^\[("[A-Z0-9\-_.]{1,20}"(,"[A-Z0-9\-_.]{1,20}")*)?\]$/
const LONG_RANGE = "^[0-9]{1,20}$"
const LONG_RE = /^[0-9]{1,20}$/

const MSG_429 =
  "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
const msg418 = (bannedUntil: number): string =>
  `Way too much request weight used; IP banned until ${bannedUntil}. Please use WebSocket Streams for live updates to avoid bans.`
const MSG_451 =
  "Service unavailable from a restricted location according to 'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer service if you believe you received this message in error."
const MSG_UNKNOWN = "An unknown error occured while processing the request."
const HTML_502 =
  "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
const MALFORMED_BODY = '[{"symbol":"BTCUSDT","priceChange":"1240.11000000","priceChangePercent":"1.8'
const WRONG_SHAPE_BODY = '[{"symbol":1}]'

const DEFAULT_SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"] as const

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

class ApiError {
  constructor(
    readonly status: number,
    readonly code: number,
    readonly msg: string
  ) {}
}

const badRequest = (code: number, msg: string): ApiError => new ApiError(400, code, msg)
const mandatory = (param: string): ApiError =>
  badRequest(-1102, `Mandatory parameter '${param}' was not sent, was empty/null, or malformed.`)
const illegalChars = (param: string, range: string): ApiError =>
  badRequest(-1100, `Illegal characters found in parameter '${param}'; legal range is '${range}'.`)
const invalidSymbol = (): ApiError => badRequest(-1121, "Invalid symbol.")
const invalidParam = (param: string): ApiError => badRequest(-1130, `Data sent for parameter '${param}' is not valid.`)
const badCombination = (): ApiError => badRequest(-1128, "Combination of optional parameters invalid.")

// ---------------------------------------------------------------------------------------------
// Deterministic helpers
// ---------------------------------------------------------------------------------------------

// unit (FNV-1a hash to [0, 1)), fixed, d8 and roundTo live in fakeMarket.ts, shared with the trade world.

// ---------------------------------------------------------------------------------------------
// Simulated market (ticker state)
// ---------------------------------------------------------------------------------------------

interface Seed {
  readonly open: number
  readonly prevClose: number
  readonly last: number
  readonly high: number
  readonly low: number
  readonly lastQty: number
  readonly bidQty: number
  readonly askQty: number
  readonly volume: number
  readonly quoteVolume: number
  readonly firstId: number
  readonly lastId: number
  readonly tick: number
  readonly qtyStep: number
}

/** BTC/ETH/SOL from ticker_24hr_symbols.json; BNB/XRP synthesized in the same style. */
const SEEDS: Readonly<Record<string, Seed>> = {
  BTCUSDT: {
    open: 66210.01, prevClose: 66209.99, last: 67450.12, high: 69150, low: 65880,
    lastQty: 0.002, bidQty: 0.41237, askQty: 2.9815, volume: 47893.11204, quoteVolume: 3216282637.4913614,
    firstId: 3460359785, lastId: 3462118904, tick: 0.01, qtyStep: 0.00001
  },
  ETHUSDT: {
    open: 3512.4, prevClose: 3512.39, last: 3807.55, high: 3880, low: 3480.12,
    lastQty: 0.0521, bidQty: 12.4031, askQty: 31.7742, volume: 612345.6789, quoteVolume: 2266832830.398924,
    firstId: 1355599702, lastId: 1356602118, tick: 0.01, qtyStep: 0.0001
  },
  SOLUSDT: {
    open: 124.56, prevClose: 124.55, last: 131.77, high: 134.2, low: 122.05,
    lastQty: 3.415, bidQty: 412.102, askQty: 287.331, volume: 4123456.789, quoteVolume: 533749207.03976,
    firstId: 598165107, lastId: 598776310, tick: 0.01, qtyStep: 0.001
  },
  BNBUSDT: {
    open: 398.1, prevClose: 398.09, last: 412.3, high: 418, low: 395.4,
    lastQty: 1.234, bidQty: 87.412, askQty: 53.019, volume: 1523456.789, quoteVolume: 618734512.25473,
    firstId: 745120334, lastId: 745689021, tick: 0.01, qtyStep: 0.001
  },
  XRPUSDT: {
    open: 0.605, prevClose: 0.6049, last: 0.6213, high: 0.635, low: 0.599,
    lastQty: 1520, bidQty: 184210, askQty: 99812, volume: 412345678.9, quoteVolume: 253124870.4421,
    firstId: 612003455, lastId: 612734992, tick: 0.0001, qtyStep: 1
  }
}

const synthesizeSeed = (symbol: string): Seed => {
  const u = unit(`seed|${symbol}`)
  const last0 = 0.05 * Math.pow(10, u * 4) // 0.05 .. 500
  const tick = last0 < 1 ? 0.0001 : 0.01
  const qtyStep = last0 < 1 ? 1 : 0.001
  const last = roundTo(last0, tick)
  const open = roundTo(last * (0.95 + 0.1 * unit(`open|${symbol}`)), tick)
  const high = roundTo(Math.max(open, last) * 1.02, tick)
  const low = roundTo(Math.min(open, last) * 0.98, tick)
  const volume = roundTo((2_000_000 / last) * (0.5 + unit(`vol|${symbol}`)), qtyStep)
  const lastId = 100_000_000 + Math.floor(unit(`id|${symbol}`) * 100_000_000)
  return {
    open, prevClose: open - tick, last, high, low,
    lastQty: roundTo((50 / last) + qtyStep, qtyStep), bidQty: roundTo(1000 / last + qtyStep, qtyStep),
    askQty: roundTo(800 / last + qtyStep, qtyStep), volume, quoteVolume: volume * ((open + last) / 2),
    firstId: lastId - 250_000, lastId, tick, qtyStep
  }
}

interface TickerState {
  readonly symbol: string
  readonly seed: Seed
  n: number
  last: number
  high: number
  low: number
  lastQty: number
  bidQty: number
  askQty: number
  volume: number
  quoteVolume: number
  lastId: number
}

const newTickerState = (symbol: string): TickerState => {
  const seed = SEEDS[symbol] ?? synthesizeSeed(symbol)
  return {
    symbol, seed, n: 0, last: seed.last, high: seed.high, low: seed.low, lastQty: seed.lastQty,
    bidQty: seed.bidQty, askQty: seed.askQty, volume: seed.volume, quoteVolume: seed.quoteVolume, lastId: seed.lastId
  }
}

/** One deterministic market step: a trade or a few at a price up to ±0.05% away. */
const stepTicker = (t: TickerState): void => {
  t.n += 1
  const { tick, qtyStep } = t.seed
  const key = `${t.symbol}|${t.n}`
  let ticks = Math.round(((unit(`dp|${key}`) - 0.5) * 0.001 * t.last) / tick)
  if (ticks === 0) ticks = unit(`dir|${key}`) < 0.5 ? -1 : 1
  t.last = Math.max(tick, roundTo(t.last + ticks * tick, tick))
  t.high = Math.max(t.high, t.last)
  t.low = Math.min(t.low, t.last)
  t.lastQty = Math.max(qtyStep, roundTo(t.seed.lastQty * (0.2 + 3 * unit(`q|${key}`)), qtyStep))
  t.bidQty = Math.max(qtyStep, roundTo(t.seed.bidQty * (0.5 + unit(`bq|${key}`)), qtyStep))
  t.askQty = Math.max(qtyStep, roundTo(t.seed.askQty * (0.5 + unit(`aq|${key}`)), qtyStep))
  const trades = 1 + Math.floor(unit(`k|${key}`) * 5)
  t.lastId += trades
  t.volume += t.lastQty * trades
  t.quoteVolume += t.lastQty * trades * t.last
}

const fullTicker = (t: TickerState, now: number): Record<string, unknown> => {
  const { open, prevClose, tick, firstId } = t.seed
  const change = t.last - open
  return {
    symbol: t.symbol,
    priceChange: d8(change),
    priceChangePercent: fixed((change / open) * 100, 3),
    weightedAvgPrice: d8(t.quoteVolume / t.volume),
    prevClosePrice: d8(prevClose),
    lastPrice: d8(t.last),
    lastQty: d8(t.lastQty),
    bidPrice: d8(Math.max(tick, t.last - tick)),
    bidQty: d8(t.bidQty),
    askPrice: d8(t.last),
    askQty: d8(t.askQty),
    openPrice: d8(open),
    highPrice: d8(t.high),
    lowPrice: d8(t.low),
    volume: d8(t.volume),
    quoteVolume: d8(t.quoteVolume),
    openTime: now - DAY_MS,
    closeTime: now,
    firstId,
    lastId: t.lastId,
    count: t.lastId - firstId + 1
  }
}

const miniTicker = (t: TickerState, now: number): Record<string, unknown> => ({
  symbol: t.symbol,
  openPrice: d8(t.seed.open),
  highPrice: d8(t.high),
  lowPrice: d8(t.low),
  lastPrice: d8(t.last),
  volume: d8(t.volume),
  quoteVolume: d8(t.quoteVolume),
  openTime: now - DAY_MS,
  closeTime: now,
  firstId: t.seed.firstId,
  lastId: t.lastId,
  count: t.lastId - t.seed.firstId + 1
})

// ---------------------------------------------------------------------------------------------
// Klines
// ---------------------------------------------------------------------------------------------

interface IntervalSpec {
  /** Open time of the candle containing t. */
  readonly floor: (t: number) => number
  /** Open time of the candle after the one opening at `open`. */
  readonly next: (open: number) => number
  /** Open time of the candle before the one opening at `open`. */
  readonly prev: (open: number) => number
}

const fixedInterval = (ms: number, offset = 0): IntervalSpec => ({
  floor: (t) => t - (((t - offset) % ms) + ms) % ms,
  next: (open) => open + ms,
  prev: (open) => open - ms
})

const monthStart = (t: number, deltaMonths: number): number => {
  const d = new Date(t)
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + deltaMonths, 1)
}

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const INTERVALS: Readonly<Record<string, IntervalSpec>> = {
  "1s": fixedInterval(1000),
  "1m": fixedInterval(MINUTE),
  "3m": fixedInterval(3 * MINUTE),
  "5m": fixedInterval(5 * MINUTE),
  "15m": fixedInterval(15 * MINUTE),
  "30m": fixedInterval(30 * MINUTE),
  "1h": fixedInterval(HOUR),
  "2h": fixedInterval(2 * HOUR),
  "4h": fixedInterval(4 * HOUR),
  "6h": fixedInterval(6 * HOUR),
  "8h": fixedInterval(8 * HOUR),
  "12h": fixedInterval(12 * HOUR),
  "1d": fixedInterval(DAY_MS),
  "3d": fixedInterval(3 * DAY_MS),
  // 1970-01-01 was a Thursday; weekly candles open on Monday 00:00 UTC (1970-01-05).
  "1w": fixedInterval(7 * DAY_MS, 4 * DAY_MS),
  "1M": {
    floor: (t) => monthStart(t, 0),
    next: (open) => monthStart(open, 1),
    prev: (open) => monthStart(open, -1)
  }
}

/** Deterministic synthetic mid price at time t (continuous across candles: close(k) = open(k+1)). */
const priceAt = (symbol: string, base: number, tick: number, t: number): number => {
  const phase1 = unit(`ph1|${symbol}`) * 2 * Math.PI
  const phase2 = unit(`ph2|${symbol}`) * 2 * Math.PI
  const slow = 0.08 * Math.sin((2 * Math.PI * t) / (30 * DAY_MS) + phase1)
  const daily = 0.015 * Math.sin((2 * Math.PI * t) / DAY_MS + phase2)
  const noise = 0.002 * (unit(`px|${symbol}|${t}`) - 0.5)
  return Math.max(tick, roundTo(base * (1 + slow + daily + noise), tick))
}

type KlineRow = [number, string, string, string, string, string, number, string, number, string, string, string]

const makeKline = (
  symbol: string,
  seed: Seed,
  interval: string,
  spec: IntervalSpec,
  open: number,
  now: number
): KlineRow => {
  const nextOpen = spec.next(open)
  const closeTime = nextOpen - 1
  const isOpen = closeTime >= now
  const durationMs = nextOpen - open
  const { tick, qtyStep } = seed
  const key = `${symbol}|${interval}|${open}`
  const o = priceAt(symbol, seed.last, tick, open)
  const c = isOpen ? priceAt(symbol, seed.last, tick, now) : priceAt(symbol, seed.last, tick, nextOpen)
  const fraction = isOpen ? Math.max(0, Math.min(1, (now - open + 1) / durationMs)) : 1
  const range = 0.0005 + 0.002 * Math.sqrt(durationMs / HOUR) * fraction
  const h = roundTo(Math.max(o, c) * (1 + range * unit(`hi|${key}`)), tick)
  const l = Math.max(tick, roundTo(Math.min(o, c) * (1 - range * unit(`lo|${key}`)), tick))
  const high = Math.max(h, o, c)
  const low = Math.min(l, o, c)
  const expectedVolume = (seed.volume * durationMs) / DAY_MS
  const volume = roundTo(expectedVolume * (0.5 + unit(`v|${key}`)) * fraction, qtyStep)
  const avg = (o + c + high + low) / 4
  const quoteVolume = volume * avg
  const dailyCount = seed.lastId - seed.firstId + 1
  const trades = volume === 0 ? 0 : Math.max(1, Math.round(((dailyCount * durationMs) / DAY_MS) * (0.5 + unit(`n|${key}`)) * fraction))
  const takerBase = roundTo(volume * (0.3 + 0.4 * unit(`tb|${key}`)), qtyStep)
  return [
    open, d8(o), d8(high), d8(low), d8(c), d8(volume), closeTime, d8(quoteVolume), trades,
    d8(takerBase), d8(takerBase * avg), "0"
  ]
}

// ---------------------------------------------------------------------------------------------
// Request helpers
// ---------------------------------------------------------------------------------------------

const checkNoDuplicateParams = (q: URLSearchParams): void => {
  const seen = new Set<string>()
  for (const key of q.keys()) {
    if (seen.has(key)) throw badRequest(-1101, `Duplicate values for parameter '${key}'.`)
    seen.add(key)
  }
}

/** Parses `symbols=["A","B"]` (already URL-decoded). Throws -1102 / -1100 / -1151. */
const parseSymbolsParam = (raw: string): ReadonlyArray<string> => {
  if (raw === "") throw mandatory("symbols")
  if (!SYMBOLS_RE.test(raw)) throw illegalChars("symbols", SYMBOLS_RANGE)
  const list = JSON.parse(raw) as Array<string>
  if (list.length === 0) throw mandatory("symbols")
  if (new Set(list).size !== list.length) throw badRequest(-1151, "Symbol is present multiple times in the list.")
  return list
}

/** Parses a LONG parameter; undefined when absent. Throws -1100 on illegal chars. */
const parseLong = (q: URLSearchParams, name: string): number | undefined => {
  const raw = q.get(name)
  if (raw === null || raw === "") return undefined
  if (!LONG_RE.test(raw)) throw illegalChars(name, LONG_RANGE)
  return Number(raw)
}

interface Verdict {
  readonly status: number
  readonly body: string
  readonly headers?: Readonly<Record<string, string>>
  readonly contentType?: string
}

const jsonVerdict = (status: number, value: unknown, headers?: Readonly<Record<string, string>>): Verdict =>
  headers === undefined ? { status, body: JSON.stringify(value) } : { status, body: JSON.stringify(value), headers }

const errorVerdict = (e: ApiError, headers?: Readonly<Record<string, string>>): Verdict =>
  jsonVerdict(e.status, { code: e.code, msg: e.msg }, headers)

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

const splitSymbol = (symbol: string): { base: string; quote: string } => {
  for (const quote of ["FDUSD", "USDT", "USDC", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL"]) {
    if (symbol.endsWith(quote) && symbol.length > quote.length) {
      return { base: symbol.slice(0, -quote.length), quote }
    }
  }
  return { base: symbol.slice(0, Math.max(1, symbol.length - 3)), quote: symbol.slice(Math.max(1, symbol.length - 3)) }
}

export function startFakeBinance(options: FakeBinanceOptions = {}): Promise<FakeBinance> {
  const clock = options.now ?? Date.now
  let frozenNow: number | undefined
  const now = (): number => frozenNow ?? clock()

  const symbols: Array<string> = [...DEFAULT_SYMBOLS]
  for (const s of options.knownSymbols ?? []) if (!symbols.includes(s)) symbols.push(s)
  const known = new Set(symbols)
  const tickers = new Map<string, TickerState>()
  const ticker = (symbol: string): TickerState => {
    let t = tickers.get(symbol)
    if (t === undefined) {
      t = newTickerState(symbol)
      tickers.set(symbol, t)
    }
    return t
  }

  const seedFor = (symbol: string): SymbolSeed => {
    const seed = ticker(symbol).seed
    return {
      tick: seed.tick, qtyStep: seed.qtyStep, typicalQty: seed.lastQty,
      firstAggId: Math.floor(seed.lastId * 0.8308), firstTradeId: seed.lastId + 1,
      mid: (t) => priceAt(symbol, seed.last, seed.tick, t)
    }
  }
  const market = makeMarket(options.market ?? {}, seedFor, now())

  const requests: Array<RecordedRequest> = []
  const faultQueue: Array<Fault> = []
  let persistentFault: Fault | undefined

  // Weight limiter: fixed 1-minute windows on the `now` clock.
  let windowStart = Math.floor(now() / WINDOW_MS) * WINDOW_MS
  let usedWeight = 0
  let limitedThisWindow = false
  let bannedUntil = 0
  let banCount = 0

  const timers = new Set<NodeJS.Timeout>()
  const sockets = new Set<Socket>()

  // -- Routing ---------------------------------------------------------------------------------

  const routeWeight = (path: string, q: URLSearchParams): number => {
    switch (path) {
      case "/api/v3/ping":
      case "/api/v3/time":
        return 1
      case "/api/v3/exchangeInfo":
        return 20
      case "/api/v3/klines":
      case "/api/v3/uiKlines":
        return 2
      case "/api/v3/aggTrades":
        return 4
      case "/api/v3/ticker/24hr": {
        if (q.has("symbol")) return 2
        const raw = q.get("symbols")
        if (raw === null) return 80
        let n = 1
        try {
          const parsed: unknown = JSON.parse(raw)
          if (Array.isArray(parsed)) n = parsed.length
        } catch {
          // malformed: charged as a small request
        }
        return n <= 20 ? 2 : n <= 100 ? 40 : 80
      }
      case "/api/v3/ticker/price":
        return q.has("symbol") ? 2 : 4
      default:
        return 1
    }
  }

  /** symbol / symbols / neither, per the ticker endpoints' rules. */
  const selectSymbols = (q: URLSearchParams): { single: boolean; list: ReadonlyArray<string> } => {
    const symbol = q.get("symbol")
    const symbolsRaw = q.get("symbols")
    if (symbol !== null && symbolsRaw !== null) throw badCombination()
    if (symbol !== null) {
      if (symbol === "") throw mandatory("symbol")
      if (!SYMBOL_RE.test(symbol)) throw illegalChars("symbol", SYMBOL_RANGE)
      if (!known.has(symbol)) throw invalidSymbol()
      return { single: true, list: [symbol] }
    }
    if (symbolsRaw !== null) {
      const list = parseSymbolsParam(symbolsRaw)
      for (const s of list) if (!known.has(s)) throw invalidSymbol()
      return { single: false, list }
    }
    return { single: false, list: symbols }
  }

  const ticker24hr = (q: URLSearchParams): Verdict => {
    const type = q.get("type") ?? "FULL"
    const sel = selectSymbols(q)
    if (type !== "FULL" && type !== "MINI") throw illegalChars("type", "^(FULL|MINI)$")
    const t = now()
    const rows = sel.list.map((s) => {
      const state = ticker(s)
      stepTicker(state)
      return type === "MINI" ? miniTicker(state, t) : fullTicker(state, t)
    })
    return jsonVerdict(200, sel.single ? rows[0] : rows)
  }

  const tickerPrice = (q: URLSearchParams): Verdict => {
    const sel = selectSymbols(q)
    const rows = sel.list.map((s) => ({ symbol: s, price: d8(ticker(s).last) }))
    return jsonVerdict(200, sel.single ? rows[0] : rows)
  }

  const exchangeInfo = (q: URLSearchParams): Verdict => {
    const sel = selectSymbols(q)
    return jsonVerdict(200, {
      timezone: "UTC",
      serverTime: now(),
      rateLimits: [
        { rateLimitType: "REQUEST_WEIGHT", interval: "MINUTE", intervalNum: 1, limit: WEIGHT_LIMIT },
        { rateLimitType: "ORDERS", interval: "SECOND", intervalNum: 10, limit: 50 },
        { rateLimitType: "ORDERS", interval: "DAY", intervalNum: 1, limit: 160000 },
        { rateLimitType: "RAW_REQUESTS", interval: "MINUTE", intervalNum: 5, limit: 61000 }
      ],
      exchangeFilters: [],
      symbols: sel.list.map((symbol) => {
        const { base, quote } = splitSymbol(symbol)
        const seed = ticker(symbol).seed
        return {
          symbol,
          status: "TRADING",
          baseAsset: base,
          baseAssetPrecision: 8,
          quoteAsset: quote,
          quotePrecision: 8,
          quoteAssetPrecision: 8,
          filters: [
            { filterType: "PRICE_FILTER", minPrice: d8(seed.tick), maxPrice: d8(1_000_000), tickSize: d8(seed.tick) },
            { filterType: "LOT_SIZE", minQty: d8(seed.qtyStep), maxQty: d8(9000 * Math.max(1, seed.qtyStep * 1000)), stepSize: d8(seed.qtyStep) }
          ]
        }
      })
    })
  }

  const klines = (q: URLSearchParams): Verdict => {
    // 1. mandatory parameters
    const symbol = q.get("symbol")
    const interval = q.get("interval")
    if (symbol === null || symbol === "") throw mandatory("symbol")
    if (interval === null || interval === "") throw mandatory("interval")
    // 2. malformed values
    if (!SYMBOL_RE.test(symbol)) throw illegalChars("symbol", SYMBOL_RANGE)
    const startTime = parseLong(q, "startTime")
    const endTime = parseLong(q, "endTime")
    const limitRaw = parseLong(q, "limit")
    // 3. unknown symbol, 4. bad interval
    if (!known.has(symbol)) throw invalidSymbol()
    const spec = INTERVALS[interval]
    if (spec === undefined) throw badRequest(-1120, "Invalid interval.")
    if (limitRaw !== undefined && (limitRaw < 1 || limitRaw > KLINES_MAX_LIMIT)) throw invalidParam("limit")
    const limit = limitRaw ?? KLINES_DEFAULT_LIMIT

    const t = now()
    const lastOpen = spec.floor(t)
    const opens: Array<number> = []
    if (startTime !== undefined) {
      // oldest first from startTime (openTime >= startTime), not past endTime (openTime <= endTime)
      const f = spec.floor(startTime)
      let open = f === startTime ? f : spec.next(f)
      const stop = endTime === undefined ? lastOpen : Math.min(endTime, lastOpen)
      while (open <= stop && opens.length < limit) {
        opens.push(open)
        open = spec.next(open)
      }
    } else {
      // the most recent `limit` candles up to endTime (or now)
      let open = endTime === undefined ? lastOpen : spec.floor(Math.min(endTime, t))
      while (open >= 0 && opens.length < limit) {
        opens.push(open)
        open = spec.prev(open)
      }
      opens.reverse()
    }
    const seed = ticker(symbol).seed
    const fromTrades = (open: number): KlineRow | undefined => {
      if (interval !== "1m") return undefined
      const bar = market.bar(symbol, open, t)
      return bar === undefined ? undefined : barRow(bar)
    }
    return jsonVerdict(200, opens.map((open) => fromTrades(open) ?? makeKline(symbol, seed, interval, spec, open, t)))
  }

  const aggTrades = (q: URLSearchParams): Verdict => {
    const symbol = q.get("symbol")
    if (symbol === null || symbol === "") throw mandatory("symbol")
    if (!SYMBOL_RE.test(symbol)) throw illegalChars("symbol", SYMBOL_RANGE)
    const fromId = parseLong(q, "fromId")
    const startTime = parseLong(q, "startTime")
    const endTime = parseLong(q, "endTime")
    const limitRaw = parseLong(q, "limit")
    if (!known.has(symbol)) throw invalidSymbol()
    if (limitRaw !== undefined && (limitRaw < 1 || limitRaw > AGG_TRADES_MAX_LIMIT)) throw invalidParam("limit")
    if (fromId !== undefined && (startTime !== undefined || endTime !== undefined)) throw badCombination()
    const limit = limitRaw ?? AGG_TRADES_DEFAULT_LIMIT
    return jsonVerdict(200, market.aggTrades(symbol, { fromId, startTime, endTime, limit }, now()))
  }

  const route = (method: string, path: string, q: URLSearchParams): Verdict => {
    const handler = ((): ((q: URLSearchParams) => Verdict) | undefined => {
      switch (path) {
        case "/api/v3/ping":
          return () => jsonVerdict(200, {})
        case "/api/v3/time":
          return () => jsonVerdict(200, { serverTime: now() })
        case "/api/v3/exchangeInfo":
          return exchangeInfo
        case "/api/v3/ticker/24hr":
          return ticker24hr
        case "/api/v3/ticker/price":
          return tickerPrice
        case "/api/v3/klines":
        case "/api/v3/uiKlines":
          return klines
        case "/api/v3/aggTrades":
          return aggTrades
        default:
          return undefined
      }
    })()
    if (handler === undefined) return errorVerdict(new ApiError(404, -1000, `Path not found: ${path}`))
    if (method !== "GET") return errorVerdict(new ApiError(405, -1000, `Method ${method} not allowed.`))
    try {
      checkNoDuplicateParams(q)
      return handler(q)
    } catch (e) {
      if (e instanceof ApiError) return errorVerdict(e)
      return errorVerdict(new ApiError(500, -1000, MSG_UNKNOWN))
    }
  }

  // -- Weight limiter --------------------------------------------------------------------------

  const rollWindow = (t: number): void => {
    const start = Math.floor(t / WINDOW_MS) * WINDOW_MS
    if (start !== windowStart) {
      windowStart = start
      usedWeight = 0
      limitedThisWindow = false
    }
  }

  const banVerdict = (t: number): Verdict =>
    jsonVerdict(418, { code: -1003, msg: msg418(bannedUntil) }, {
      "retry-after": String(Math.max(1, Math.ceil((bannedUntil - t) / 1000)))
    })

  /** Returns a 429/418 verdict when the limiter refuses the request (weight already charged). */
  const limiterVerdict = (t: number): Verdict | undefined => {
    if (t < bannedUntil) return banVerdict(t)
    if (usedWeight <= WEIGHT_LIMIT) return undefined
    if (limitedThisWindow) {
      banCount += 1
      const seconds = Math.min(MAX_BAN_SECONDS, FIRST_BAN_SECONDS * 2 ** (banCount - 1))
      bannedUntil = t + seconds * 1000
      return banVerdict(t)
    }
    limitedThisWindow = true
    return jsonVerdict(429, { code: -1003, msg: MSG_429 }, {
      "retry-after": String(Math.max(1, Math.ceil((windowStart + WINDOW_MS - t) / 1000)))
    })
  }

  // -- Faults ----------------------------------------------------------------------------------

  const statusFaultVerdict = (status: number, retryAfterSeconds: number | undefined, t: number): Verdict => {
    switch (status) {
      case 429:
        return jsonVerdict(429, { code: -1003, msg: MSG_429 }, { "retry-after": String(retryAfterSeconds ?? 60) })
      case 418:
        return jsonVerdict(418, { code: -1003, msg: msg418(t + (retryAfterSeconds ?? 120) * 1000) }, {
          "retry-after": String(retryAfterSeconds ?? 120)
        })
      case 451:
        return jsonVerdict(451, { code: 0, msg: MSG_451 })
      case 502:
        return { status: 502, body: HTML_502, contentType: "text/html" }
      default:
        return jsonVerdict(status, { code: -1000, msg: MSG_UNKNOWN })
    }
  }

  // -- HTTP plumbing ---------------------------------------------------------------------------

  const send = (res: ServerResponse, v: Verdict): void => {
    if (res.destroyed || res.headersSent) return
    const body = Buffer.from(v.body, "utf8")
    res.writeHead(v.status, {
      "content-type": v.contentType ?? JSON_CONTENT_TYPE,
      "content-length": String(body.length),
      "x-mbx-uuid": randomUUID(),
      "x-mbx-used-weight": String(usedWeight),
      "x-mbx-used-weight-1m": String(usedWeight),
      ...v.headers
    })
    res.end(body)
  }

  /** Normal processing: limiter then route. */
  const answer = (res: ServerResponse, method: string, path: string, q: URLSearchParams): void => {
    const t = now()
    send(res, limiterVerdict(t) ?? route(method, path, q))
  }

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const t = now()
    const method = req.method ?? "GET"
    const url = new URL(req.url ?? "/", "http://127.0.0.1")
    const path = url.pathname
    const q = url.searchParams
    requests.push({ method, path, query: q, at: t })

    rollWindow(t)
    usedWeight += routeWeight(path, q)

    const fault = faultQueue.shift() ?? persistentFault
    if (fault === undefined) return answer(res, method, path, q)
    switch (fault.kind) {
      case "status":
        return send(res, statusFaultVerdict(fault.status, "retryAfterSeconds" in fault ? fault.retryAfterSeconds : undefined, t))
      case "malformed":
        return send(res, { status: 200, body: MALFORMED_BODY })
      case "wrongShape":
        return send(res, { status: 200, body: WRONG_SHAPE_BODY })
      case "slow": {
        const timer = setTimeout(() => {
          timers.delete(timer)
          answer(res, method, path, q)
        }, fault.delayMs)
        timers.add(timer)
        return
      }
      case "hang":
        return // the socket is destroyed by close()
      case "reset": {
        const socket = req.socket
        if (typeof socket.resetAndDestroy === "function") socket.resetAndDestroy()
        else socket.destroy()
        return
      }
    }
  }

  // Large enough for a /stream?streams=… URL of 1024 streams (Node's default is 16 KiB).
  const server = createServer({ maxHeaderSize: 256 * 1024 }, handle)
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })

  return new Promise<FakeBinance>((resolve, reject) => {
    server.once("error", reject)
    server.listen(options.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject)
      const { port } = server.address() as AddressInfo
      const ws = attachFakeBinanceWs({
        server, url: `ws://127.0.0.1:${port}`, now, market, isKnown: (s) => known.has(s),
        body451: JSON.stringify({ code: 0, msg: MSG_451 }), options: options.ws
      })
      let closing: Promise<void> | undefined
      resolve({
        url: `http://127.0.0.1:${port}`,
        wsUrl: ws.url,
        ws,
        trades: {
          worldStart: market.worldStart,
          emit: (symbol, count) => market.emit(symbol, count, now()),
          all: (symbol) => {
            market.advance(symbol, now())
            return market.trades(symbol)
          },
          firstId: (symbol) => market.firstId(symbol),
          lastId: (symbol) => {
            market.advance(symbol, now())
            return market.lastId(symbol)
          },
          setRate: (rate, symbol) => market.setRate(rate, symbol),
          forgetBefore: (symbol, id) => market.forgetBefore(symbol, id),
          hide: (symbol, fromId, toId) => market.hide(symbol, fromId, toId),
          bar: (symbol, openTime) => {
            const bar = market.bar(symbol, openTime, now())
            if (bar === undefined) throw new Error(`fake Binance: no trades before ${new Date(market.worldStart).toISOString()}`)
            return bar
          }
        },
        get requests() {
          return requests
        },
        enqueueFaults: (...faults) => {
          faultQueue.push(...faults)
        },
        setPersistentFault: (fault) => {
          persistentFault = fault
        },
        setNow: (ms) => {
          frozenNow = ms
        },
        close: () => {
          closing ??= new Promise<void>((done) => {
            for (const timer of timers) clearTimeout(timer)
            timers.clear()
            ws.close()
            server.close(() => done())
            server.closeAllConnections()
            for (const socket of sockets) socket.destroy()
          })
          return closing
        }
      })
    })
  })
}

/**
 * The fake Binance's trade world: per symbol, one deterministic, consistent history of aggregate
 * trades that REST (`/api/v3/aggTrades`, and `/api/v3/klines?interval=1m` for the minutes it covers)
 * and the WebSocket streams (`@aggTrade`, `@kline_1m`) all answer from.
 *
 * - Aggregate ids `a` are consecutive per symbol; `f`/`l` (underlying trade ids) too, 1–3 per
 *   aggregate trade. Prices and quantities are 8-decimal strings on the symbol's tick/step; `T` never
 *   decreases and several trades may share a millisecond (one slot in eight is a 3-trade sweep).
 * - The world of a symbol starts at the whole minute `historyMs` before the fake started (that
 *   history is never streamed), and grows lazily up to the fake's clock whenever someone looks (a
 *   REST request, the WebSocket tick: those trades are streamed), at `tradesPerSecond` on average.
 *   Spans longer than `maxCatchUpMs` (a `setNow` jump) are quiet before their last
 *   `maxCatchUpMs`. A frozen clock grows nothing: use `emit`.
 * - The first trade of each minute repeats the previous trade's price, so a 1m bar opens at the
 *   previous bar's close (an empty minute is flat at the previous close, n=0, f=L=-1).
 * - REST serves ids from `oldestServed` (the world's first id, or `forgetBefore`'s) on: a `fromId`
 *   older than that answers from the oldest served id (as Binance does for history it no longer
 *   has: the client sees the first id it gets is not the one it asked for); a `fromId` past the last
 *   trade answers `[]`. Ranges hidden with `hide` are never returned: a `fromId` inside one answers
 *   `[]`, an answer starting before one stops just before it; time queries leave them out.
 */

export const MINUTE_MS = 60_000

/** FNV-1a 32-bit hash of a string with a final avalanche, mapped to [0, 1). */
export const unit = (s: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 15
  h = Math.imul(h, 0x2c1b3c6d)
  h ^= h >>> 12
  return (h >>> 0) / 4294967296
}

/** Decimal string with `decimals` places, never "-0.000…". */
export const fixed = (x: number, decimals: number): string => {
  const s = x.toFixed(decimals)
  return /^-0\.?0*$/.test(s) ? s.slice(1) : s
}
export const d8 = (x: number): string => fixed(x, 8)
export const roundTo = (x: number, step: number): number => Math.round(x / step) * step

/** One aggregate trade as REST `/api/v3/aggTrades` returns it. */
export interface AggTrade {
  readonly a: number
  readonly p: string
  readonly q: string
  readonly f: number
  readonly l: number
  readonly T: number
  readonly m: boolean
  readonly M: boolean
}

/** What the world needs to know about a symbol (built by fakeBinance.ts from its seeds). */
export interface SymbolSeed {
  readonly tick: number
  readonly qtyStep: number
  readonly typicalQty: number
  readonly firstAggId: number
  readonly firstTradeId: number
  /** The synthetic mid price at time t (the one synthetic klines use), on the tick. */
  readonly mid: (t: number) => number
}

export interface MarketOptions {
  /** Average aggregate trades per second per symbol (default 4); a record sets it per symbol (others 4). 0: only `emitTrades`. */
  readonly tradesPerSecond?: number | Readonly<Record<string, number>>
  /** Trade history before the fake started (default 10 minutes; rounded down to a whole minute). */
  readonly historyMs?: number
  /** Longest span generated in one catch-up (default 10 minutes); earlier parts of a longer jump are quiet. */
  readonly maxCatchUpMs?: number
}

/** One 1m bar aggregated from the trades (numbers; format with `barRow` / `barWs`). */
export interface MinuteBar {
  readonly t: number
  readonly T: number
  readonly f: number
  readonly L: number
  readonly o: number
  readonly h: number
  readonly l: number
  readonly c: number
  readonly v: number
  readonly q: number
  readonly n: number
  readonly V: number
  readonly Q: number
}

export interface AggTradesQuery {
  readonly fromId?: number | undefined
  readonly startTime?: number | undefined
  readonly endTime?: number | undefined
  readonly limit: number
}

export type TradesListener = (symbol: string, trades: ReadonlyArray<AggTrade>) => void

interface Trade {
  readonly a: number
  readonly p: number
  readonly q: number
  readonly f: number
  readonly l: number
  readonly T: number
  readonly m: boolean
}

interface Book {
  readonly symbol: string
  readonly seed: SymbolSeed
  readonly trades: Array<Trade>
  readonly initialPrice: number
  genUntil: number
  lastPrice: number
  nextAggId: number
  nextTradeId: number
  rate: number | undefined
  oldestServed: number
  readonly hidden: Array<{ readonly from: number; readonly to: number }>
}

const DEFAULT_RATE = 4
/** One slot in eight carries a 3-trade sweep: 1.25 trades per slot on average. */
const TRADES_PER_SLOT = 1.25

export const wireTrade = (t: Trade): AggTrade => ({ a: t.a, p: d8(t.p), q: d8(t.q), f: t.f, l: t.l, T: t.T, m: t.m, M: true })

/** A bar as a REST klines row. */
export const barRow = (b: MinuteBar): [number, string, string, string, string, string, number, string, number, string, string, string] => [
  b.t, d8(b.o), d8(b.h), d8(b.l), d8(b.c), d8(b.v), b.T, d8(b.q), b.n, d8(b.V), d8(b.Q), "0"
]

/** A bar as the `k` object of a WebSocket kline event. */
export const barWs = (symbol: string, b: MinuteBar, closed: boolean): Record<string, unknown> => ({
  t: b.t, T: b.T, s: symbol, i: "1m", f: b.f, L: b.L, o: d8(b.o), c: d8(b.c), h: d8(b.h), l: d8(b.l),
  v: d8(b.v), n: b.n, x: closed, q: d8(b.q), V: d8(b.V), Q: d8(b.Q), B: "0"
})

export interface Market {
  /** The first minute the world covers (1m klines from here on are aggregated from its trades). */
  readonly worldStart: number
  /** Grows the symbol's world up to `now`; returns (and announces) the new trades. */
  advance(symbol: string, now: number): ReadonlyArray<AggTrade>
  /** `count` trades right now (at max(now, last trade time)), after growing the world up to `now`. */
  emit(symbol: string, count: number, now: number): ReadonlyArray<AggTrade>
  /** Every trade of the world so far, REST-forgotten ones included. */
  trades(symbol: string): ReadonlyArray<AggTrade>
  lastId(symbol: string): number
  firstId(symbol: string): number
  /** The 1m bar opening at `open` (a minute boundary), or undefined before `worldStart`. */
  bar(symbol: string, open: number, now: number): MinuteBar | undefined
  /** REST aggTrades answer (see the module comment for the rules). */
  aggTrades(symbol: string, query: AggTradesQuery, now: number): ReadonlyArray<AggTrade>
  forgetBefore(symbol: string, id: number): void
  hide(symbol: string, fromId: number, toId: number): void
  /** Sets the rate for one symbol, or for every symbol without its own. */
  setRate(rate: number, symbol?: string): void
  onTrades(listener: TradesListener): void
}

export const makeMarket = (options: MarketOptions, seedFor: (symbol: string) => SymbolSeed, startedAt: number): Market => {
  const historyMs = options.historyMs ?? 10 * MINUTE_MS
  const maxCatchUpMs = options.maxCatchUpMs ?? 10 * MINUTE_MS
  const worldStart = Math.floor((startedAt - historyMs) / MINUTE_MS) * MINUTE_MS
  const rates = options.tradesPerSecond
  let defaultRate = typeof rates === "number" ? rates : DEFAULT_RATE
  const books = new Map<string, Book>()
  const listeners: Array<TradesListener> = []

  const book = (symbol: string): Book => {
    let b = books.get(symbol)
    if (b === undefined) {
      const seed = seedFor(symbol)
      const initialPrice = seed.mid(worldStart)
      b = {
        symbol, seed, trades: [], initialPrice, genUntil: worldStart - 1, lastPrice: initialPrice,
        nextAggId: seed.firstAggId, nextTradeId: seed.firstTradeId,
        rate: typeof rates === "object" ? rates[symbol] : undefined,
        oldestServed: seed.firstAggId, hidden: []
      }
      books.set(symbol, b)
      grow(b, startedAt) // the history before the fake started, never streamed
    }
    return b
  }

  const makeTrade = (b: Book, T: number): Trade => {
    const { tick, qtyStep, typicalQty } = b.seed
    const a = b.nextAggId++
    const key = `${b.symbol}|${a}`
    const prev = b.trades.at(-1)
    let p = b.lastPrice
    if (prev !== undefined && Math.floor(prev.T / MINUTE_MS) === Math.floor(T / MINUTE_MS)) {
      const pull = 0.2 * (b.seed.mid(T) - p)
      const noise = (unit(`tp|${key}`) - 0.5) * p * 0.0004
      p = Math.max(tick, roundTo(p + pull + noise, tick))
    }
    const u = unit(`tq|${key}`)
    const q = Math.max(qtyStep, roundTo(typicalQty * (0.2 + 3 * u * u), qtyStep))
    const n = 1 + Math.floor(unit(`tn|${key}`) * 3)
    const f = b.nextTradeId
    b.nextTradeId += n
    b.lastPrice = p
    const trade: Trade = { a, p, q, f, l: f + n - 1, T, m: unit(`tm|${key}`) < 0.5 }
    b.trades.push(trade)
    return trade
  }

  const announce = (symbol: string, fresh: ReadonlyArray<Trade>): ReadonlyArray<AggTrade> => {
    const wire = fresh.map(wireTrade)
    if (wire.length > 0) for (const l of listeners) l(symbol, wire)
    return wire
  }

  const grow = (b: Book, now: number): Array<Trade> => {
    const fresh: Array<Trade> = []
    if (now <= b.genUntil) return fresh
    const rate = b.rate ?? defaultRate
    if (rate > 0) {
      const slotMs = (1000 * TRADES_PER_SLOT) / rate
      const from = Math.max(b.genUntil, now - maxCatchUpMs)
      const lastT = b.trades.at(-1)?.T ?? -Infinity
      for (let s = Math.floor(from / slotMs); s * slotMs <= now; s++) {
        const T = Math.floor(s * slotMs + unit(`ts|${b.symbol}|${s}`) * slotMs)
        if (T <= from || T > now || T < lastT) continue
        const k = unit(`sw|${b.symbol}|${s}`) < 0.125 ? 3 : 1
        for (let j = 0; j < k; j++) fresh.push(makeTrade(b, T))
      }
    }
    b.genUntil = now
    return fresh
  }

  const lowerBound = (trades: ReadonlyArray<Trade>, t: number): number => {
    let lo = 0
    let hi = trades.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (trades[mid]!.T < t) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  const hiddenAt = (b: Book, id: number): boolean => b.hidden.some((r) => id >= r.from && id <= r.to)

  const advance = (symbol: string, now: number): ReadonlyArray<AggTrade> => announce(symbol, grow(book(symbol), now))

  return {
    worldStart,
    advance,
    emit: (symbol, count, now) => {
      advance(symbol, now)
      const b = book(symbol)
      const T = Math.max(now, b.trades.at(-1)?.T ?? now)
      const fresh: Array<Trade> = []
      for (let i = 0; i < count; i++) fresh.push(makeTrade(b, T))
      return announce(symbol, fresh)
    },
    trades: (symbol) => book(symbol).trades.map(wireTrade),
    lastId: (symbol) => book(symbol).nextAggId - 1,
    firstId: (symbol) => book(symbol).seed.firstAggId,
    bar: (symbol, open, now) => {
      if (open < worldStart) return undefined
      advance(symbol, now)
      const b = book(symbol)
      const i0 = lowerBound(b.trades, open)
      const i1 = lowerBound(b.trades, open + MINUTE_MS)
      const prevClose = i0 > 0 ? b.trades[i0 - 1]!.p : b.initialPrice
      const empty = { t: open, T: open + MINUTE_MS - 1, f: -1, L: -1, o: prevClose, h: prevClose, l: prevClose, c: prevClose, v: 0, q: 0, n: 0, V: 0, Q: 0 }
      if (i1 === i0) return empty
      let h = -Infinity
      let l = Infinity
      let v = 0
      let q = 0
      let n = 0
      let V = 0
      let Q = 0
      for (let i = i0; i < i1; i++) {
        const t = b.trades[i]!
        h = Math.max(h, t.p)
        l = Math.min(l, t.p)
        v += t.q
        q += t.p * t.q
        n += t.l - t.f + 1
        if (!t.m) {
          V += t.q
          Q += t.p * t.q
        }
      }
      const first = b.trades[i0]!
      const last = b.trades[i1 - 1]!
      return { ...empty, f: first.f, L: last.l, o: first.p, h, l, c: last.p, v, q, n, V, Q }
    },
    aggTrades: (symbol, query, now) => {
      advance(symbol, now)
      const b = book(symbol)
      const first = b.seed.firstAggId
      const last = b.nextAggId - 1
      const oldestIndex = Math.max(0, b.oldestServed - first)
      const out: Array<Trade> = []
      if (query.fromId !== undefined) {
        const start = Math.max(query.fromId, b.oldestServed)
        for (let id = start; id <= last && out.length < query.limit && !hiddenAt(b, id); id++) out.push(b.trades[id - first]!)
      } else if (query.startTime !== undefined) {
        const end = query.endTime ?? Infinity
        for (let i = Math.max(oldestIndex, lowerBound(b.trades, query.startTime)); i < b.trades.length && out.length < query.limit; i++) {
          const t = b.trades[i]!
          if (t.T > end) break
          if (!hiddenAt(b, t.a)) out.push(t)
        }
      } else {
        const end = query.endTime ?? Infinity
        for (let i = lowerBound(b.trades, end === Infinity ? Infinity : end + 1) - 1; i >= oldestIndex && out.length < query.limit; i--) {
          const t = b.trades[i]!
          if (!hiddenAt(b, t.a)) out.push(t)
        }
        out.reverse()
      }
      return out.map(wireTrade)
    },
    forgetBefore: (symbol, id) => {
      const b = book(symbol)
      b.oldestServed = Math.max(b.oldestServed, id)
    },
    hide: (symbol, fromId, toId) => {
      book(symbol).hidden.push({ from: fromId, to: toId })
    },
    setRate: (rate, symbol) => {
      if (symbol === undefined) defaultRate = rate
      else book(symbol).rate = rate
    },
    onTrades: (listener) => {
      listeners.push(listener)
    }
  }
}

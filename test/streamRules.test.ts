import { describe, expect, it } from "vitest"
import { decodeStreamMessage, streamGroups } from "../src/domain/StreamMessage.js"
import {
  ATTEMPT_WINDOW_MS,
  AttemptLimiter,
  BACKOFF_BASE_MS,
  BACKOFF_CAP_MS,
  backoffMs,
  MAX_ATTEMPTS_PER_WINDOW
} from "../src/market/stream/Reconnect.js"

// Binance's documented payloads (the shapes of ../shared/fixtures/binance/ws_*.json), in the combined envelope.
const aggTrade = {
  e: "aggTrade",
  E: 1709647517125,
  s: "BTCUSDT",
  a: 2876543214,
  p: "67450.12000000",
  q: "0.04200000",
  f: 3462118903,
  l: 3462118904,
  T: 1709647517123,
  m: false,
  M: true
}
const closedKline = {
  e: "kline",
  E: 1709647500000,
  s: "BTCUSDT",
  k: {
    t: 1709647440000,
    T: 1709647499999,
    s: "BTCUSDT",
    i: "1m",
    f: 3462117214,
    L: 3462118641,
    o: "67366.05000000",
    c: "67441.87000000",
    h: "67458.31000000",
    l: "67360.00000000",
    v: "17.05589000",
    n: 1428,
    x: true,
    q: "1149745.73172720",
    V: "9.62018000",
    Q: "648535.48793260",
    B: "0"
  }
}
const combined = (stream: string, data: unknown) => JSON.stringify({ stream, data })

describe("stream messages", () => {
  it("an aggTrade becomes the trades contract: ids, decimal strings unchanged, trade time in µs, the stream source", () => {
    const message = decodeStreamMessage(combined("btcusdt@aggTrade", aggTrade))
    expect(message).toEqual({
      _tag: "trade",
      trade: {
        symbol: "BTCUSDT",
        id: 2876543214,
        price: "67450.12000000",
        quantity: "0.04200000",
        firstTradeId: 3462118903,
        lastTradeId: 3462118904,
        timeMicros: 1709647517123000,
        isBuyerMaker: false,
        source: "binance_ws_aggTrade"
      }
    })
  })

  it("a closed 1m kline is a closed bar; a running one is only a sign of life", () => {
    const bar = decodeStreamMessage(combined("btcusdt@kline_1m", closedKline))
    expect(bar._tag).toBe("bar")
    if (bar._tag !== "bar") return
    expect(bar.bar).toMatchObject({ symbol: "BTCUSDT", interval: "1m", openTime: 1709647440000, open: "67366.05000000", close: "67441.87000000", trades: 1428, closed: true })
    const running = decodeStreamMessage(combined("btcusdt@kline_1m", { ...closedKline, k: { ...closedKline.k, x: false } }))
    expect(running._tag).toBe("progress")
  })

  it("serverShutdown is recognised in the combined and the raw form", () => {
    expect(decodeStreamMessage(combined("!serverShutdown", { e: "serverShutdown", E: 1709650000000 }))._tag).toBe("shutdown")
    expect(decodeStreamMessage(JSON.stringify({ e: "serverShutdown", E: 1709650000000 }))._tag).toBe("shutdown")
  })

  it("a message of another shape is invalid with a reason, never a trade", () => {
    expect(decodeStreamMessage("not json")).toEqual({ _tag: "invalid", reason: "a message that is not JSON" })
    const badPrice = decodeStreamMessage(combined("btcusdt@aggTrade", { ...aggTrade, p: 67450.12 }))
    expect(badPrice._tag).toBe("invalid")
    if (badPrice._tag === "invalid") expect(badPrice.reason).toContain('price "p"')
    expect(decodeStreamMessage(combined("btcusdt@aggTrade", { ...aggTrade, a: -1 }))._tag).toBe("invalid")
  })

  it("streams are lowercase, two per symbol, at most 1,024 per connection, a symbol's pair never split", () => {
    expect(streamGroups(["BTCUSDT", "ETHUSDT"])).toEqual([["btcusdt@aggTrade", "btcusdt@kline_1m", "ethusdt@aggTrade", "ethusdt@kline_1m"]])
    const symbols = Array.from({ length: 1500 }, (_, i) => `S${i}USDT`)
    const groups = streamGroups(symbols)
    expect(groups.map((g) => g.length)).toEqual([1024, 1024, 952])
    expect(groups.flat()).toHaveLength(3000)
    for (const g of groups) expect(g[0]!.endsWith("@aggTrade") && g[g.length - 1]!.endsWith("@kline_1m")).toBe(true)
  })
})

describe("reconnect rules", () => {
  it("backoff grows exponentially from the base, is capped, and is jittered within [d/2, d]", () => {
    expect(backoffMs(0, 1)).toBe(BACKOFF_BASE_MS)
    expect(backoffMs(0, 0)).toBe(BACKOFF_BASE_MS / 2)
    expect(backoffMs(3, 1)).toBe(BACKOFF_BASE_MS * 8)
    expect(backoffMs(50, 1)).toBe(BACKOFF_CAP_MS)
    for (let i = 0; i < 100; i++) {
      const d = backoffMs(4, Math.random())
      expect(d).toBeGreaterThanOrEqual(BACKOFF_BASE_MS * 8)
      expect(d).toBeLessThanOrEqual(BACKOFF_BASE_MS * 16)
    }
  })

  it("never more than 300 attempts in any 5 minutes", () => {
    const limiter = new AttemptLimiter()
    let now = 0
    const made: Array<number> = []
    // Try every 10 ms for 20 minutes; attempt whenever allowed.
    for (; now < 20 * 60_000; now += 10) {
      if (limiter.nextAllowed(now) <= now) {
        limiter.record(now)
        made.push(now)
      }
    }
    for (let i = 0; i + MAX_ATTEMPTS_PER_WINDOW < made.length; i++) {
      expect(made[i + MAX_ATTEMPTS_PER_WINDOW]! - made[i]!).toBeGreaterThanOrEqual(ATTEMPT_WINDOW_MS)
    }
    expect(made.length).toBe(4 * MAX_ATTEMPTS_PER_WINDOW)
    // When refused, it names the instant the oldest attempt leaves the window.
    const full = new AttemptLimiter(2, 1000)
    full.record(0)
    full.record(100)
    expect(full.nextAllowed(500)).toBe(1000)
    expect(full.nextAllowed(1000)).toBe(1000)
  })
})

import { describe, expect, it } from "vitest"
import { type FakeBinance, type FakeBinanceOptions, startFakeBinance } from "./support/fakeBinance.js"

/** The fixtures' moment: 2024-03-05 14:05:17.123 UTC. */
const NOW = 1709647517123
const MINUTE = 60_000

interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

const get = async (fake: FakeBinance, pathAndQuery: string, init?: RequestInit): Promise<Reply> => {
  const res = await fetch(fake.url + pathAndQuery, init)
  return { status: res.status, headers: res.headers, text: await res.text() }
}
const json = <A = any>(r: Reply): A => JSON.parse(r.text) as A

const withFake = async (f: (fake: FakeBinance) => Promise<void>, options: FakeBinanceOptions = {}): Promise<void> => {
  const fake = await startFakeBinance({ now: () => NOW, ...options })
  try {
    await f(fake)
  } finally {
    await fake.close()
  }
}

const enc = (symbols: ReadonlyArray<string>): string => encodeURIComponent(JSON.stringify(symbols))
const DEC8 = /^-?\d+\.\d{8}$/
const DEC3 = /^-?\d+\.\d{3}$/
const FULL_STRING_FIELDS = [
  "priceChange", "weightedAvgPrice", "prevClosePrice", "lastPrice", "lastQty", "bidPrice", "bidQty", "askPrice",
  "askQty", "openPrice", "highPrice", "lowPrice", "volume", "quoteVolume"
] as const

type Kline = [number, string, string, string, string, string, number, string, number, string, string, string]

describe("fake Binance: ticker/24hr", () => {
  it("answers symbols=[…] with an array of full tickers, weight 2", () =>
    withFake(async (fake) => {
      const r = await get(fake, `/api/v3/ticker/24hr?symbols=${enc(["BTCUSDT", "ETHUSDT"])}`)
      expect(r.status).toBe(200)
      expect(r.headers.get("content-type")).toBe("application/json;charset=UTF-8")
      expect(r.headers.get("x-mbx-used-weight")).toBe("2")
      expect(r.headers.get("x-mbx-used-weight-1m")).toBe("2")
      const rows = json<Array<Record<string, unknown>>>(r)
      expect(rows.map((t) => t["symbol"])).toEqual(["BTCUSDT", "ETHUSDT"])
      for (const t of rows) {
        for (const f of FULL_STRING_FIELDS) expect(t[f]).toMatch(DEC8)
        expect(t["priceChangePercent"]).toMatch(DEC3)
        expect(t["closeTime"]).toBe(NOW)
        expect(t["openTime"]).toBe(NOW - 86_400_000)
        expect(typeof t["firstId"]).toBe("number")
        expect(t["count"]).toBe((t["lastId"] as number) - (t["firstId"] as number) + 1)
        expect(Number(t["highPrice"])).toBeGreaterThanOrEqual(Number(t["lastPrice"]))
        expect(Number(t["lowPrice"])).toBeLessThanOrEqual(Number(t["lastPrice"]))
      }
      // unencoded JSON array, MINI type
      const mini = json<Array<Record<string, unknown>>>(
        await get(fake, '/api/v3/ticker/24hr?symbols=["SOLUSDT","XRPUSDT"]&type=MINI')
      )
      expect(mini.map((t) => t["symbol"])).toEqual(["SOLUSDT", "XRPUSDT"])
      expect(Object.keys(mini[0]!).sort()).toEqual(
        ["symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume", "quoteVolume", "openTime",
          "closeTime", "firstId", "lastId", "count"].sort()
      )
      expect(fake.requests.map((q) => q.path)).toEqual(["/api/v3/ticker/24hr", "/api/v3/ticker/24hr"])
      expect(fake.requests[0]!.query.get("symbols")).toBe('["BTCUSDT","ETHUSDT"]')
      expect(fake.requests[1]!.at).toBe(NOW)
    }))

  it("answers symbol=X with one object whose price moves deterministically per request", async () => {
    const run = async (): Promise<Array<Record<string, unknown>>> => {
      const out: Array<Record<string, unknown>> = []
      await withFake(async (fake) => {
        for (let i = 0; i < 3; i++) out.push(json(await get(fake, "/api/v3/ticker/24hr?symbol=BTCUSDT")))
      })
      return out
    }
    const a = await run()
    expect(a[0]!["symbol"]).toBe("BTCUSDT")
    expect(Array.isArray(a[0])).toBe(false)
    expect(a[0]!["lastPrice"]).not.toBe(a[1]!["lastPrice"])
    expect(a[1]!["lastId"] as number).toBeGreaterThan(a[0]!["lastId"] as number)
    expect(Math.abs(Number(a[0]!["lastPrice"]) / 67450.12 - 1)).toBeLessThan(0.01)
    expect(await run()).toEqual(a)
  })

  it("validates like Binance", () =>
    withFake(async (fake) => {
      const expectError = async (q: string, status: number, code: number, msg?: string): Promise<void> => {
        const r = await get(fake, "/api/v3/ticker/24hr" + q)
        expect(r.status, q).toBe(status)
        expect(json(r).code, q).toBe(code)
        if (msg !== undefined) expect(json(r).msg).toBe(msg)
        expect(r.headers.get("x-mbx-used-weight-1m")).not.toBeNull()
      }
      await expectError("?symbol=FOOUSDT", 400, -1121, "Invalid symbol.")
      expect((await get(fake, "/api/v3/ticker/24hr?symbol=FOOUSDT")).text).toBe('{"code":-1121,"msg":"Invalid symbol."}')
      await expectError(
        "?symbol=btcusdt", 400, -1100,
        "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
      )
      await expectError("?symbol=BTC%20USDT", 400, -1100)
      await expectError("?symbol=", 400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
      await expectError(`?symbols=${enc(["btcusdt"])}`, 400, -1100)
      await expectError(`?symbols=${enc(["BTCUSDT", "FOOUSDT"])}`, 400, -1121)
      await expectError(`?symbols=${enc(["BTCUSDT", "BTCUSDT"])}`, 400, -1151)
      await expectError(`?symbol=BTCUSDT&symbols=${enc(["ETHUSDT"])}`, 400, -1128)
      await expectError("?symbol=BTCUSDT&symbol=ETHUSDT", 400, -1101)
      // neither parameter: every known symbol, weight 80
      const before = Number((await get(fake, "/api/v3/ping")).headers.get("x-mbx-used-weight"))
      const all = await get(fake, "/api/v3/ticker/24hr")
      expect(json<Array<{ symbol: string }>>(all).map((t) => t.symbol)).toEqual([
        "BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"
      ])
      expect(Number(all.headers.get("x-mbx-used-weight"))).toBe(before + 80)
    }))

  it("knows extra symbols and serves ticker/price, exchangeInfo, ping, time, 404", () =>
    withFake(
      async (fake) => {
        const one = json(await get(fake, "/api/v3/ticker/24hr?symbol=DOGEUSDT"))
        expect(one.lastPrice).toMatch(DEC8)
        expect(json(await get(fake, "/api/v3/ticker/price?symbol=BTCUSDT"))).toEqual({
          symbol: "BTCUSDT", price: "67450.12000000"
        })
        const prices = json<Array<{ symbol: string; price: string }>>(
          await get(fake, `/api/v3/ticker/price?symbols=${enc(["ETHUSDT", "SOLUSDT"])}`)
        )
        expect(prices).toEqual([{ symbol: "ETHUSDT", price: "3807.55000000" }, { symbol: "SOLUSDT", price: "131.77000000" }])
        const info = json(await get(fake, "/api/v3/exchangeInfo"))
        expect(info.timezone).toBe("UTC")
        expect(info.serverTime).toBe(NOW)
        expect(info.rateLimits[0]).toEqual({ rateLimitType: "REQUEST_WEIGHT", interval: "MINUTE", intervalNum: 1, limit: 6000 })
        expect(info.symbols.map((s: { symbol: string }) => s.symbol)).toContain("DOGEUSDT")
        expect(info.symbols[0]).toMatchObject({ symbol: "BTCUSDT", status: "TRADING", baseAsset: "BTC", quoteAsset: "USDT" })
        expect(json(await get(fake, "/api/v3/ping"))).toEqual({})
        fake.setNow(NOW + 5)
        expect(json(await get(fake, "/api/v3/time"))).toEqual({ serverTime: NOW + 5 })
        const missing = await get(fake, "/api/v3/nope")
        expect(missing.status).toBe(404)
        expect(typeof json(missing).code).toBe("number")
        expect(missing.headers.get("x-mbx-used-weight")).not.toBeNull()
      },
      { knownSymbols: ["DOGEUSDT"] }
    ))
})

describe("fake Binance: klines", () => {
  const minuteOpen = NOW - (NOW % MINUTE)

  const page = async (fake: FakeBinance, q: string): Promise<Array<Kline>> => {
    const r = await get(fake, `/api/v3/klines?${q}`)
    expect(r.status, r.text).toBe(200)
    expect(r.headers.get("x-mbx-used-weight")).not.toBeNull()
    return json<Array<Kline>>(r)
  }

  /** Row invariants, checked in plain JS (thousands of `expect` calls would be slow). */
  const checkRows = (rows: ReadonlyArray<Kline>, intervalMs: number): void => {
    const problems: Array<string> = []
    for (const [i, k] of rows.entries()) {
      const [open, o, h, l, c, v, close, qv, n, tb, tq, unused] = k
      const bad = (what: string): number => problems.push(`row ${i} (${open}): ${what}`)
      if (k.length !== 12) bad("length")
      if (close !== open + intervalMs - 1) bad("closeTime")
      for (const s of [o, h, l, c, v, qv, tb, tq]) if (!DEC8.test(s)) bad(`not a decimal string: ${s}`)
      if (Number(h) < Math.max(Number(o), Number(c))) bad("high")
      if (Number(l) > Math.min(Number(o), Number(c))) bad("low")
      if (!Number.isInteger(n)) bad("trades")
      if (Number(tb) > Number(v)) bad("taker volume")
      if (unused !== "0") bad("unused")
      if (i > 0 && open !== rows[i - 1]![0] + intervalMs) bad("not contiguous")
      if (i > 0 && o !== rows[i - 1]![4]) bad("open != previous close")
    }
    expect(problems).toEqual([])
  }

  it("pages 2500 1m candles with startTime + limit=1000: contiguous, deterministic, last one open", () =>
    withFake(async (fake) => {
      const start = minuteOpen - 2499 * MINUTE
      const pageAll = async (): Promise<Array<Array<Kline>>> => {
        const pages: Array<Array<Kline>> = []
        let from = start
        for (;;) {
          const rows = await page(fake, `symbol=BTCUSDT&interval=1m&startTime=${from}&limit=1000`)
          if (rows.length === 0) break
          pages.push(rows)
          from = rows[rows.length - 1]![6] + 1
        }
        return pages
      }
      const pages = await pageAll()
      expect(pages.map((p) => p.length)).toEqual([1000, 1000, 500])
      const all = pages.flat()
      expect(all[0]![0]).toBe(start)
      checkRows(all, MINUTE)
      const last = all[all.length - 1]!
      expect(last[0]).toBe(minuteOpen)
      expect(last[6]).toBeGreaterThan(NOW)
      expect(await pageAll()).toEqual(pages)
      // no start/end: the most recent `limit` (default 500), ending with the open candle
      const recent = await page(fake, "symbol=BTCUSDT&interval=1m")
      expect(recent).toHaveLength(500)
      expect(recent[499]).toEqual(last)
      // endTime only: most recent up to endTime; both: from start, not past end
      const upTo = await page(fake, `symbol=BTCUSDT&interval=1m&endTime=${start + 10 * MINUTE + 5}&limit=3`)
      expect(upTo.map((k) => k[0])).toEqual([start + 8 * MINUTE, start + 9 * MINUTE, start + 10 * MINUTE])
      expect(upTo).toEqual(all.slice(8, 11))
      const both = await page(fake, `symbol=BTCUSDT&interval=1m&startTime=${start + 1}&endTime=${start + 3 * MINUTE}`)
      expect(both.map((k) => k[0])).toEqual([start + MINUTE, start + 2 * MINUTE, start + 3 * MINUTE])
      expect(await page(fake, `symbol=BTCUSDT&interval=1m&startTime=${NOW + MINUTE}`)).toEqual([])
    }))

  it("aligns 1h/1d/1w/1M to UTC and never goes past now", () =>
    withFake(async (fake) => {
      const hours = await page(fake, "symbol=ETHUSDT&interval=1h&limit=30")
      checkRows(hours, 3_600_000)
      expect(hours[29]![0]).toBe(NOW - (NOW % 3_600_000))
      const days = await page(fake, "symbol=BTCUSDT&interval=1d&limit=6")
      expect(days.map((k) => k[0])).toEqual([1709164800000, 1709251200000, 1709337600000, 1709424000000, 1709510400000, 1709596800000])
      const weeks = await page(fake, "symbol=BTCUSDT&interval=1w&limit=3")
      for (const k of weeks) expect(new Date(k[0]).getUTCDay()).toBe(1)
      expect(weeks[2]![6]).toBeGreaterThan(NOW)
      const months = await page(fake, "symbol=BTCUSDT&interval=1M&limit=3")
      expect(months.map((k) => [k[0], k[6]])).toEqual([
        [Date.UTC(2024, 0, 1), Date.UTC(2024, 1, 1) - 1],
        [Date.UTC(2024, 1, 1), Date.UTC(2024, 2, 1) - 1],
        [Date.UTC(2024, 2, 1), Date.UTC(2024, 3, 1) - 1]
      ])
      const seconds = await page(fake, "symbol=SOLUSDT&interval=1s&limit=5")
      checkRows(seconds, 1000)
      expect(seconds[4]![0]).toBe(NOW - (NOW % 1000))
    }))

  it("validates in Binance's order", () =>
    withFake(async (fake) => {
      const err = async (q: string): Promise<{ status: number; code: number; msg: string }> => {
        const r = await get(fake, `/api/v3/klines?${q}`)
        return { status: r.status, ...json<{ code: number; msg: string }>(r) }
      }
      expect(await err("interval=1m")).toMatchObject({ status: 400, code: -1102 })
      expect(await err("symbol=BTCUSDT")).toMatchObject({ status: 400, code: -1102 })
      expect(await err("symbol=btcusdt&interval=7m")).toMatchObject({ status: 400, code: -1100 })
      expect(await err("symbol=FOOUSDT&interval=7m")).toMatchObject({ status: 400, code: -1121 })
      expect(await err("symbol=BTCUSDT&interval=7m")).toEqual({ status: 400, code: -1120, msg: "Invalid interval." })
      expect(await err("symbol=BTCUSDT&interval=1H")).toMatchObject({ code: -1120 })
      expect(await err("symbol=BTCUSDT&interval=1m&limit=1001")).toEqual({
        status: 400, code: -1130, msg: "Data sent for parameter 'limit' is not valid."
      })
      expect(await err("symbol=BTCUSDT&interval=1m&startTime=abc")).toMatchObject({ status: 400, code: -1100 })
      const ok = await get(fake, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1000")
      expect(json<Array<Kline>>(ok)).toHaveLength(1000)
    }))
})

describe("fake Binance: faults", () => {
  it("serves queued faults in order, then answers normally", () =>
    withFake(async (fake) => {
      fake.enqueueFaults(
        { kind: "status", status: 429, retryAfterSeconds: 43 },
        { kind: "status", status: 418, retryAfterSeconds: 120 },
        { kind: "status", status: 500 },
        { kind: "status", status: 502 },
        { kind: "status", status: 503 },
        { kind: "status", status: 451 },
        { kind: "malformed" },
        { kind: "wrongShape" }
      )
      const p = "/api/v3/ticker/24hr?symbol=BTCUSDT"
      const r429 = await get(fake, p)
      expect(r429.status).toBe(429)
      expect(r429.headers.get("retry-after")).toBe("43")
      expect(json(r429)).toEqual({
        code: -1003,
        msg: "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
      })
      const r418 = await get(fake, "/api/v3/ping")
      expect(r418.status).toBe(418)
      expect(r418.headers.get("retry-after")).toBe("120")
      expect(json(r418)).toEqual({
        code: -1003,
        msg: "Way too much request weight used; IP banned until 1709647637123. Please use WebSocket Streams for live updates to avoid bans."
      })
      const r500 = await get(fake, p)
      expect([r500.status, json(r500).code]).toEqual([500, -1000])
      const r502 = await get(fake, p)
      expect(r502.status).toBe(502)
      expect(r502.headers.get("content-type")).toBe("text/html")
      expect(() => JSON.parse(r502.text)).toThrow()
      const r503 = await get(fake, p)
      expect([r503.status, json(r503).code]).toEqual([503, -1000])
      const r451 = await get(fake, p)
      expect(r451.status).toBe(451)
      expect(json(r451)).toEqual({
        code: 0,
        msg: "Service unavailable from a restricted location according to 'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer service if you believe you received this message in error."
      })
      for (const r of [r429, r418, r500, r502, r503, r451]) expect(r.headers.get("x-mbx-used-weight-1m")).not.toBeNull()
      const malformed = await get(fake, p)
      expect(malformed.status).toBe(200)
      expect(malformed.headers.get("content-type")).toBe("application/json;charset=UTF-8")
      expect(() => JSON.parse(malformed.text)).toThrow()
      const wrong = await get(fake, p)
      expect(wrong.status).toBe(200)
      expect(json(wrong)).toEqual([{ symbol: 1 }])
      const normal = await get(fake, p)
      expect([normal.status, json(normal).symbol]).toEqual([200, "BTCUSDT"])
      expect(fake.requests).toHaveLength(9)
    }))

  it("applies a persistent fault until cleared", () =>
    withFake(async (fake) => {
      fake.setPersistentFault({ kind: "status", status: 503 })
      expect((await get(fake, "/api/v3/ping")).status).toBe(503)
      expect((await get(fake, "/api/v3/time")).status).toBe(503)
      fake.enqueueFaults({ kind: "status", status: 451 })
      expect((await get(fake, "/api/v3/ping")).status).toBe(451)
      expect((await get(fake, "/api/v3/ping")).status).toBe(503)
      fake.setPersistentFault(undefined)
      expect((await get(fake, "/api/v3/ping")).status).toBe(200)
    }))

  it("slow, hang and reset", () =>
    withFake(async (fake) => {
      fake.enqueueFaults({ kind: "slow", delayMs: 120 })
      const t0 = performance.now()
      const slow = await get(fake, "/api/v3/ticker/24hr?symbol=ETHUSDT")
      expect(performance.now() - t0).toBeGreaterThanOrEqual(110)
      expect(json(slow).symbol).toBe("ETHUSDT")

      fake.enqueueFaults({ kind: "hang" })
      await expect(get(fake, "/api/v3/ping", { signal: AbortSignal.timeout(100) })).rejects.toThrow()

      fake.enqueueFaults({ kind: "reset" })
      await expect(get(fake, "/api/v3/ping")).rejects.toThrow()
      expect((await get(fake, "/api/v3/ping")).status).toBe(200)
    }))

  it("close() ends hanging and slow requests", async () => {
    const fake = await startFakeBinance()
    fake.enqueueFaults({ kind: "hang" }, { kind: "slow", delayMs: 60_000 })
    const hanging = get(fake, "/api/v3/ping")
    const slow = get(fake, "/api/v3/ping")
    while (fake.requests.length < 2) await new Promise((r) => setTimeout(r, 5))
    await fake.close()
    await expect(hanging).rejects.toThrow()
    await expect(slow).rejects.toThrow()
  })
})

describe("fake Binance: weight limiter", () => {
  it("429 above 6000 in the minute window, then 418 ban if the client keeps calling", () =>
    withFake(async (fake) => {
      // 75 × 80 = 6000: still allowed
      const ok = await Promise.all(Array.from({ length: 75 }, () => get(fake, "/api/v3/ticker/24hr")))
      expect(ok.every((r) => r.status === 200)).toBe(true)
      expect(Math.max(...ok.map((r) => Number(r.headers.get("x-mbx-used-weight-1m"))))).toBe(6000)

      const r429 = await get(fake, "/api/v3/ping")
      expect(r429.status).toBe(429)
      expect(json(r429).code).toBe(-1003)
      expect(r429.headers.get("x-mbx-used-weight")).toBe("6001")
      expect(r429.headers.get("retry-after")).toBe("43") // 14:05:17.123 → window ends 14:06:00

      const r418 = await get(fake, "/api/v3/ping")
      expect(r418.status).toBe(418)
      expect(r418.headers.get("retry-after")).toBe("120")
      expect(json(r418).msg).toBe(
        "Way too much request weight used; IP banned until 1709647637123. Please use WebSocket Streams for live updates to avoid bans."
      )

      // a new window resets the weight but not the ban
      fake.setNow(NOW + 60_000)
      const stillBanned = await get(fake, "/api/v3/ping")
      expect(stillBanned.status).toBe(418)
      expect(stillBanned.headers.get("retry-after")).toBe("60")
      expect(stillBanned.headers.get("x-mbx-used-weight-1m")).toBe("1")

      fake.setNow(NOW + 120_000)
      const after = await get(fake, "/api/v3/ping")
      expect(after.status).toBe(200)
      expect(after.headers.get("x-mbx-used-weight-1m")).toBe("1")
    }))
})

import { describe, expect, it } from "vitest"
import { type ClientOptions, WebSocket } from "ws"
import { type FakeBinance, type FakeBinanceOptions, startFakeBinance } from "./support/fakeBinance.js"

/** The fixtures' moment: 2024-03-05 14:05:17.123 UTC. */
const NOW = 1709647517123
const MINUTE = 60_000
const MINUTE_OPEN = NOW - (NOW % MINUTE)
const DEC8 = /^\d+\.\d{8}$/
// Field names and order of ../shared/fixtures/binance/ws_aggTrade.json and ws_kline_1m_closed.json.
const AGG_TRADE_KEYS = ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"]
const KLINE_KEYS = ["t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"]
const BODY_451 =
  '{"code":0,"msg":"Service unavailable from a restricted location according to \'b. Eligibility\' in https://www.binance.com/en/terms. Please contact customer service if you believe you received this message in error."}'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const until = async (cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> => {
  const end = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

interface Client {
  readonly ws: WebSocket
  readonly messages: Array<any>
  readonly closed: Promise<{ code: number; reason: string }>
}

const connect = (url: string, options?: ClientOptions): Promise<Client> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options)
    const messages: Array<any> = []
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on("close", (code, reason) => r({ code, reason: reason.toString() })))
    ws.on("message", (d) => messages.push(JSON.parse(d.toString())))
    ws.on("error", reject)
    ws.once("open", () => resolve({ ws, messages, closed }))
  })

/** Opens a client and waits until the fake has registered its connection. */
const open = async (fake: FakeBinance, path: string, options?: ClientOptions): Promise<Client> => {
  const before = fake.ws.connections.length
  const client = await connect(fake.wsUrl + path, options)
  await until(() => fake.ws.connections.length > before, "the connection")
  return client
}

const rest = async (fake: FakeBinance, pathAndQuery: string): Promise<{ status: number; weight: number; body: any }> => {
  const res = await fetch(fake.url + pathAndQuery)
  return { status: res.status, weight: Number(res.headers.get("x-mbx-used-weight-1m")), body: await res.json() }
}

const withFake = async (options: FakeBinanceOptions, f: (fake: FakeBinance) => Promise<void>): Promise<void> => {
  const fake = await startFakeBinance(options)
  try {
    await f(fake)
  } finally {
    await fake.close()
  }
}

const BOTH = "/stream?streams=btcusdt@aggTrade/btcusdt@kline_1m"

describe("fake Binance WebSocket: streams", () => {
  it("wraps aggTrade and kline_1m events in the combined envelope with the fixtures' fields, as REST has them", () =>
    withFake({ now: () => NOW, ws: { klineUpdateMs: 0 } }, async (fake) => {
      expect(fake.wsUrl).toBe(fake.url.replace("http://", "ws://"))
      const c = await open(fake, BOTH)
      const emitted = fake.trades.emit("BTCUSDT", 3)
      await until(() => c.messages.length === 3, "3 trades")
      expect(emitted.map((t) => t.a)).toEqual([0, 1, 2].map((i) => fake.trades.lastId("BTCUSDT") - 2 + i))
      expect(emitted[0]!.a).toBeGreaterThan(2 ** 31)
      for (const [i, m] of c.messages.entries()) {
        expect(Object.keys(m)).toEqual(["stream", "data"])
        expect(m.stream).toBe("btcusdt@aggTrade")
        expect(Object.keys(m.data)).toEqual(AGG_TRADE_KEYS)
        expect(m.data).toMatchObject({ e: "aggTrade", E: NOW, s: "BTCUSDT", T: NOW, M: true })
        expect(m.data.p).toMatch(DEC8)
        expect(m.data.q).toMatch(DEC8)
        expect(typeof m.data.m).toBe("boolean")
        const { e: _e, E: _E, s: _s, ...row } = m.data
        expect(row).toEqual(emitted[i])
      }
      // the same trades by REST, and the ids/trade ids consecutive
      const byRest = await rest(fake, `/api/v3/aggTrades?symbol=BTCUSDT&fromId=${emitted[0]!.a}`)
      expect(byRest.body).toEqual(emitted)
      expect(emitted[1]!.f).toBe(emitted[0]!.l + 1)

      // a closed kline sent on demand equals the REST row of that minute
      const prev = MINUTE_OPEN - MINUTE
      fake.ws.sendKline("BTCUSDT", prev)
      await until(() => c.messages.length === 4, "the kline")
      const k = c.messages[3]
      expect(k.stream).toBe("btcusdt@kline_1m")
      expect(Object.keys(k.data)).toEqual(["e", "E", "s", "k"])
      expect(Object.keys(k.data.k)).toEqual(KLINE_KEYS)
      expect(k.data.k).toMatchObject({ t: prev, T: prev + MINUTE - 1, s: "BTCUSDT", i: "1m", x: true, B: "0" })
      const [row] = (await rest(fake, `/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=${prev}&limit=1`)).body
      const { o, h, l, c: close, v, n, q, V, Q } = k.data.k
      expect([prev, o, h, l, close, v, prev + MINUTE - 1, q, n, V, Q, "0"]).toEqual(row)
      expect(n).toBeGreaterThan(0)

      // the clock passes the minute boundary: the trades of the 43 s come, then the closed bar of 14:05
      const lastBefore = fake.trades.lastId("BTCUSDT")
      fake.setNow(MINUTE_OPEN + MINUTE + 1000)
      const klines = (): Array<any> => c.messages.filter((m) => m.stream === "btcusdt@kline_1m").slice(1)
      await until(() => klines().length === 1, "the boundary kline")
      expect(klines()[0].data.k).toMatchObject({ t: MINUTE_OPEN, x: true })
      const [row2] = (await rest(fake, `/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=${MINUTE_OPEN}&limit=1`)).body
      expect(klines()[0].data.k.c).toBe(row2[4])
      expect(klines()[0].data.k.n).toBe(row2[8])
      const streamed = fake.ws.connections[0]!.trades.map((t) => t.a)
      expect(streamed.length).toBeGreaterThan(100) // ~4/s
      expect(streamed).toEqual(Array.from({ length: fake.trades.lastId("BTCUSDT") - emitted[0]!.a + 1 }, (_, i) => emitted[0]!.a + i))
      expect(streamed[3]).toBe(lastBefore + 1)
    }))

  it("sends raw payloads on /ws/<stream>, and serves SUBSCRIBE/LIST_SUBSCRIPTIONS on /ws", () =>
    withFake({ now: () => NOW, market: { tradesPerSecond: 0 }, ws: { klineUpdateMs: 0 } }, async (fake) => {
      const raw = await open(fake, "/ws/ethusdt@aggTrade")
      const bare = await open(fake, "/ws")
      bare.ws.send(JSON.stringify({ method: "SUBSCRIBE", params: ["ethusdt@aggTrade"], id: 1 }))
      bare.ws.send(JSON.stringify({ method: "LIST_SUBSCRIPTIONS", id: 3 }))
      await until(() => bare.messages.length === 2, "replies")
      expect(bare.messages).toEqual([{ result: null, id: 1 }, { result: ["ethusdt@aggTrade"], id: 3 }])
      fake.trades.emit("ETHUSDT", 1)
      await until(() => raw.messages.length === 1 && bare.messages.length === 3, "the trade on both")
      expect(Object.keys(raw.messages[0])).toEqual(AGG_TRADE_KEYS)
      expect(bare.messages[2]).toEqual(raw.messages[0])
      expect(fake.ws.open().map((c) => [c.path, c.combined, c.streams])).toEqual([
        ["/ws/ethusdt@aggTrade", false, ["ethusdt@aggTrade"]],
        ["/ws", false, ["ethusdt@aggTrade"]]
      ])
    }))

  it("streams trades as time passes, at the configured rate, the same REST serves", () =>
    withFake({ market: { tradesPerSecond: { BTCUSDT: 40 } }, ws: { klineUpdateMs: 0, tickMs: 20 } }, async (fake) => {
      const c = await open(fake, "/stream?streams=btcusdt@aggTrade")
      await until(() => c.messages.length >= 20, "20 trades")
      const ids = c.messages.map((m) => m.data.a as number)
      ids.forEach((id, i) => i > 0 && expect(id).toBe(ids[i - 1]! + 1))
      const times = c.messages.map((m) => m.data.T as number)
      times.forEach((t, i) => i > 0 && expect(t).toBeGreaterThanOrEqual(times[i - 1]!))
      const byRest = (await rest(fake, `/api/v3/aggTrades?symbol=BTCUSDT&fromId=${ids[0]}&limit=20`)).body
      expect(byRest).toEqual(c.messages.slice(0, 20).map((m) => {
        const { e: _e, E: _E, s: _s, ...row } = m.data
        return row
      }))
    }))
  it("never streams trades made while nobody was connected: a reconnect has a gap REST fills", () =>
    withFake({ market: { tradesPerSecond: { BTCUSDT: 50 } }, ws: { klineUpdateMs: 0, tickMs: 20 } }, async (fake) => {
      const a = await open(fake, "/stream?streams=btcusdt@aggTrade")
      await until(() => a.messages.length >= 5, "trades on the first connection")
      a.ws.terminate()
      await until(() => fake.ws.open().length === 0, "the close")
      const lastSeen = fake.ws.connections[0]!.trades.at(-1)!.a
      await sleep(300)
      const b = await open(fake, "/stream?streams=btcusdt@aggTrade")
      await until(() => b.messages.length >= 1, "trades on the second connection")
      const firstAfter = b.messages[0].data.a as number
      expect(firstAfter - lastSeen).toBeGreaterThan(5)
      const missed = (await rest(fake, `/api/v3/aggTrades?symbol=BTCUSDT&fromId=${lastSeen + 1}&limit=1000`)).body
      expect(missed.slice(0, firstAfter - lastSeen - 1).map((t: { a: number }) => t.a)).toEqual(
        Array.from({ length: firstAfter - lastSeen - 1 }, (_, i) => lastSeen + 1 + i)
      )
    }))
})

describe("fake Binance WebSocket: connection rules", () => {
  it("pings with a payload, records the echoed pongs, closes a connection that does not answer", () =>
    withFake({ ws: { pingIntervalMs: 250, pongTimeoutMs: 300 } }, async (fake) => {
      await open(fake, "/ws/btcusdt@aggTrade")
      const silent = await open(fake, "/ws/btcusdt@aggTrade", { autoPong: false })
      const wrong = await open(fake, "/ws/btcusdt@aggTrade", { autoPong: false })
      wrong.ws.on("ping", () => wrong.ws.pong("not-the-payload"))
      await until(() => fake.ws.connections[0]!.pongs.length >= 3, "3 pongs", 3000)
      const [good, quiet, bad] = fake.ws.connections
      expect(good!.pongs.map((p) => p.payload)).toEqual(good!.pings.slice(0, good!.pongs.length).map((p) => p.payload))
      expect(new Set(good!.pings.map((p) => p.payload)).size).toBe(good!.pings.length)
      expect(await silent.closed).toMatchObject({ code: 1006 })
      await wrong.closed
      expect([quiet!.closedBy, quiet!.serverReason, quiet!.pongs.length]).toEqual(["server", "pong timeout", 0])
      expect([bad!.closedBy, bad!.serverReason, bad!.pongs[0]?.payload]).toEqual(["server", "pong timeout", "not-the-payload"])
      await until(() => fake.ws.open().length === 1, "the server side of the closes")
      expect(fake.ws.open().map((c) => c.id)).toEqual([good!.id])
    }))

  it("closes a connection sending more than 5 frames in a second", () =>
    withFake({}, async (fake) => {
      const c = await open(fake, "/ws/btcusdt@aggTrade")
      for (let i = 0; i < 5; i++) c.ws.send(JSON.stringify({ method: "LIST_SUBSCRIPTIONS", id: i }))
      await until(() => c.messages.length === 5, "5 replies")
      await sleep(50)
      expect(fake.ws.open()).toHaveLength(1)
      c.ws.send(JSON.stringify({ method: "LIST_SUBSCRIPTIONS", id: 5 }))
      expect(await c.closed).toEqual({ code: 1008, reason: "too many messages" })
      expect(fake.ws.connections[0]).toMatchObject({ closedBy: "server", serverReason: "too many messages", incoming: 6 })
      // a client pinging counts too
      const pinger = await open(fake, "/ws/btcusdt@aggTrade")
      for (let i = 0; i < 6; i++) pinger.ws.ping()
      expect((await pinger.closed).code).toBe(1008)
    }))

  it("answers the handshake with HTTP 451 and Binance's body while told to", () =>
    withFake({}, async (fake) => {
      fake.ws.reject451(true)
      const refused = await new Promise<{ status: number; body: string }>((resolve) => {
        const ws = new WebSocket(fake.wsUrl + BOTH)
        ws.on("error", () => undefined)
        ws.on("unexpected-response", (_req, res) => {
          let body = ""
          res.on("data", (d: Buffer) => (body += d.toString()))
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
        })
      })
      expect(refused).toEqual({ status: 451, body: BODY_451 })
      fake.ws.reject451(false)
      await open(fake, BOTH)
      expect(fake.ws.attempts.map((a) => [a.path, a.status])).toEqual([[BOTH, 451], [BOTH, 101]])
      expect(fake.ws.attempts[1]!.connectionId).toBe(fake.ws.connections[0]!.id)
    }))

  it("caps a connection at 1024 streams", () =>
    withFake({}, async (fake) => {
      const names = (n: number): string => Array.from({ length: n }, (_, i) => `sym${i}usdt@aggTrade`).join("/")
      await expect(connect(`${fake.wsUrl}/stream?streams=${names(1025)}`)).rejects.toThrow(/400/)
      const c = await open(fake, `/stream?streams=${names(1024)}`)
      expect(fake.ws.open()[0]!.streams).toHaveLength(1024)
      c.ws.close()
      await c.closed
      await until(() => fake.ws.open().length === 0, "the close")
      expect(fake.ws.connections[0]!.closedBy).toBe("client")
      await expect(connect(`${fake.wsUrl}/nope`)).rejects.toThrow(/404/)
    }))

  it("drops connections abruptly, and closes them at the lifetime", () =>
    withFake({ ws: { maxLifetimeMs: 300 } }, async (fake) => {
      const a = await open(fake, BOTH)
      const b = await open(fake, BOTH)
      fake.ws.drop(fake.ws.connections[0]!.id)
      expect((await a.closed).code).toBe(1006)
      expect(await b.closed).toEqual({ code: 1000, reason: "lifetime" })
      expect(fake.ws.connections.map((c) => [c.closedBy, c.serverReason])).toEqual([["server", "dropped"], ["server", "lifetime"]])
      fake.ws.configure({ maxLifetimeMs: 60_000 })
      const c = await open(fake, BOTH)
      const d = await open(fake, "/ws/btcusdt@aggTrade")
      fake.ws.dropAll()
      expect([(await c.closed).code, (await d.closed).code]).toEqual([1006, 1006])
    }))

  it("announces serverShutdown, serves on until the client leaves, closes after the grace", () =>
    withFake({ now: () => NOW, market: { tradesPerSecond: 0 }, ws: { klineUpdateMs: 0 } }, async (fake) => {
      const combined = await open(fake, BOTH)
      const raw = await open(fake, "/ws/btcusdt@aggTrade")
      fake.ws.serverShutdown({ graceMs: 400 })
      await until(() => combined.messages.length === 1 && raw.messages.length === 1, "the notices")
      expect(combined.messages[0]).toEqual({ stream: "!serverShutdown", data: { e: "serverShutdown", E: NOW } })
      expect(raw.messages[0]).toEqual({ e: "serverShutdown", E: NOW })
      fake.trades.emit("BTCUSDT", 1)
      await until(() => combined.messages.length === 2, "data after the notice")
      combined.ws.close()
      await combined.closed
      expect(await raw.closed).toEqual({ code: 1001, reason: "shutdown" })
      expect(fake.ws.connections.map((c) => [c.closedBy, c.serverReason, c.shutdownNoticeAt !== undefined])).toEqual([
        ["client", undefined, true], ["server", "shutdown", true]
      ])
    }))

  it("goes silent (pings continue), and skips trades that REST then has", () =>
    withFake({ now: () => NOW, market: { tradesPerSecond: 0 }, ws: { klineUpdateMs: 0, pingIntervalMs: 250 } }, async (fake) => {
      const c = await open(fake, BOTH)
      fake.ws.silence()
      const quiet = fake.trades.emit("BTCUSDT", 2)
      await sleep(600)
      expect(c.messages).toEqual([])
      expect(fake.ws.connections[0]!.pings.length).toBeGreaterThanOrEqual(2)
      expect(fake.ws.open()).toHaveLength(1)
      fake.ws.resume()
      fake.ws.skip("BTCUSDT", 3)
      const six = fake.trades.emit("BTCUSDT", 6)
      await until(() => c.messages.length === 3, "the 3 trades after the skip")
      expect(c.messages.map((m) => m.data.a)).toEqual(six.slice(3).map((t) => t.a))
      expect(fake.ws.withheld("BTCUSDT")).toEqual([
        ...quiet.map((t) => ({ symbol: "BTCUSDT", a: t.a, why: "silence" })),
        ...six.slice(0, 3).map((t) => ({ symbol: "BTCUSDT", a: t.a, why: "skip" }))
      ])
      // the gap, by REST
      const gap = await rest(fake, `/api/v3/aggTrades?symbol=BTCUSDT&fromId=${quiet[0]!.a}&limit=5`)
      expect(gap.body).toEqual([...quiet, ...six.slice(0, 3)])
      // silence for a while only
      fake.ws.silence(200)
      fake.trades.emit("BTCUSDT", 1)
      await sleep(250)
      fake.trades.emit("BTCUSDT", 1)
      await until(() => c.messages.length === 4, "the trade after the silence")
    }))
})

describe("fake Binance: aggTrades and the trade world", () => {
  it("answers aggTrades like Binance: weight 4, limit, fromId, time ranges, forgotten and hidden ids", () =>
    withFake({ now: () => NOW }, async (fake) => {
      const get = (q: string) => rest(fake, `/api/v3/aggTrades?symbol=BTCUSDT${q}`)
      const first = fake.trades.firstId("BTCUSDT")
      const last = fake.trades.lastId("BTCUSDT")
      expect(last - first + 1).toBeGreaterThan(2000) // ~10 minutes of history at ~4/s
      const recent = await get("")
      expect(recent.weight).toBe(4)
      expect(recent.body).toHaveLength(500)
      expect(recent.body.at(-1).a).toBe(last)
      expect((await get("&limit=1000")).weight).toBe(8)
      const page = (await get(`&fromId=${first}&limit=1000`)).body as Array<{ a: number; T: number; f: number; l: number }>
      expect(page.map((t) => t.a)).toEqual(Array.from({ length: 1000 }, (_, i) => first + i))
      page.forEach((t, i) => i > 0 && expect([t.T >= page[i - 1]!.T, t.f === page[i - 1]!.l + 1]).toEqual([true, true]))
      expect((await get(`&fromId=${last + 1}`)).body).toEqual([])
      const t0 = page[100]!.T
      const from = (await get(`&startTime=${t0}&limit=3`)).body
      expect(from[0].T).toBe(t0)
      expect(from[0].a).toBeLessThanOrEqual(page[100]!.a)
      const upTo = (await get(`&endTime=${t0}&limit=3`)).body
      expect(upTo.at(-1).T).toBe(t0)
      expect(upTo.at(-1).a).toBeGreaterThanOrEqual(page[100]!.a)
      expect((await get(`&startTime=${t0}&endTime=${t0}`)).body.every((t: { T: number }) => t.T === t0)).toBe(true)

      fake.trades.forgetBefore("BTCUSDT", first + 100)
      expect((await get(`&fromId=${first}&limit=2`)).body.map((t: { a: number }) => t.a)).toEqual([first + 100, first + 101])
      expect((await get(`&startTime=0&limit=1`)).body[0].a).toBe(first + 100)
      fake.trades.hide("BTCUSDT", first + 200, first + 209)
      const before = (await get(`&fromId=${first + 150}&limit=100`)).body
      expect(before.at(-1).a).toBe(first + 199)
      expect((await get(`&fromId=${first + 205}`)).body).toEqual([])
      expect((await get(`&fromId=${first + 210}&limit=1`)).body[0].a).toBe(first + 210)
      expect(fake.trades.all("BTCUSDT")[0]!.a).toBe(first)

      const error = async (q: string) => {
        const r = await rest(fake, `/api/v3/aggTrades${q}`)
        return [r.status, r.body.code]
      }
      expect(await error("")).toEqual([400, -1102])
      expect(await error("?symbol=btcusdt")).toEqual([400, -1100])
      expect(await error("?symbol=BTCUSDT&fromId=x")).toEqual([400, -1100])
      expect(await error("?symbol=FOOUSDT")).toEqual([400, -1121])
      expect(await error("?symbol=BTCUSDT&limit=1001")).toEqual([400, -1130])
      expect(await error("?symbol=BTCUSDT&limit=0")).toEqual([400, -1130])
      expect(await error(`?symbol=BTCUSDT&fromId=${first}&startTime=${t0}`)).toEqual([400, -1128])
    }))

  it("aggregates the 1m klines of the minutes it covers from its trades", () =>
    withFake({ now: () => NOW }, async (fake) => {
      const start = fake.trades.worldStart
      expect(start).toBe(MINUTE_OPEN - 10 * MINUTE)
      const rows = (await rest(fake, `/api/v3/klines?symbol=ETHUSDT&interval=1m&startTime=${start - 2 * MINUTE}&limit=20`)).body
      expect(rows).toHaveLength(13)
      rows.forEach((k: Array<unknown>, i: number) => i > 0 && expect(k[1]).toBe(rows[i - 1][4]))
      const trades = fake.trades.all("ETHUSDT")
      for (const k of rows.slice(2)) {
        const inMinute = trades.filter((t) => t.T >= k[0] && t.T < k[0] + MINUTE)
        expect(k[8]).toBe(inMinute.reduce((n, t) => n + t.l - t.f + 1, 0))
        expect(k[1]).toBe(inMinute[0]!.p)
        expect(k[4]).toBe(inMinute.at(-1)!.p)
        expect(Number(k[5])).toBeCloseTo(inMinute.reduce((v, t) => v + Number(t.q), 0), 6)
        const bar = fake.trades.bar("ETHUSDT", k[0])
        expect([bar.n, bar.f, bar.L]).toEqual([k[8], inMinute[0]!.f, inMinute.at(-1)!.l])
      }
    }))
})

import { ConfigProvider, Effect, Exit, Layer, ManagedRuntime, Scope } from "effect"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { LiveFeed, OUTBOX_EVENTS, type Subscription } from "../src/api/live/LiveFeed.js"
import { makeFilter, ReplayBuffer } from "../src/api/live/ReplayBuffer.js"
import { eventJson } from "../src/domain/EventJson.js"
import { formatInstantMicros, type TickerSymbol } from "../src/domain/Ticker.js"
import { tradeJson } from "../src/domain/Trade.js"
import { connectSse, pausedClient, sseParser, until } from "./support/sse.js"
import { mainJs, type RunningMain, startRoleAll } from "./support/process.js"
import { freshStore, STORE_KINDS, type StoreKind } from "./support/stores.js"

/**
 * GET /stream. The feed in process over a database the test writes (what is sent, in what order,
 * from where; resume; heartbeat; a client that stops taking is dropped), then the built binary with
 * SOURCE=sim: the contract on the wire, filters, resume, keys, 400s, slow sockets and shutdown.
 */

interface Db {
  prepare(sql: string): { run(...params: ReadonlyArray<unknown>): unknown }
  transaction(fn: () => void): () => void
  close(): void
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new (file: string) => Db

const MIN = 60_000
const decoder = new TextDecoder()

describe("the replay ring", () => {
  it("holds the newest frames within its count, bytes and age, whole and in order, across wrap-arounds", () => {
    const ring = new ReplayBuffer(8, 600, 1000, 100, 5)
    const sent: Array<string> = []
    for (let i = 0; i < 60; i++) {
      const json = JSON.stringify({ n: i, pad: "x".repeat((i * 7) % 40) })
      ring.append(i % 3, i % 2 === 0 ? "BTCUSDT" : "ETHUSDT", json, i)
      sent.push(`id: ${100 + i}\nevent: ${["ticker", "trade", "candle"][i % 3]}\ndata: ${json}\n\n`)
      const held: Array<string> = []
      for (let cursor = 0, step = ring.take(makeFilter(undefined, undefined), cursor); ; step = ring.take(makeFilter(undefined, undefined), cursor)) {
        if (step.bytes === undefined) break
        held.push(step.bytes.toString("utf8"))
        cursor = step.cursor
      }
      assert.isAtMost(ring.size, 8)
      assert.strictEqual(ring.next, 101 + i)
      assert.strictEqual(held.join(""), sent.slice(ring.oldest - 100).join(""))
      assert.isAtMost(held.join("").length, 600)
    }
    const trades = ring.take(makeFilter(["trade"], ["ETHUSDT"]), 0)
    assert.match(trades.bytes?.toString() ?? "", /^(id: \d+\nevent: trade\ndata: [^\n]+\n\n)+$/)
    ring.expire(59 + 1000)
    assert.strictEqual(ring.size, 0)
    assert.strictEqual(ring.take(makeFilter(undefined, undefined), 0).bytes, undefined)
  })
})

/**
 * Rows written straight into a store of `kind`, as another process would: statements are queued and
 * `commit` runs them as one transaction.
 */
const storeWriter = async (kind: StoreKind, location: string) => {
  const queued: Array<readonly [string, ReadonlyArray<unknown>]> = []
  const run = (text: string, ...params: ReadonlyArray<unknown>) => void queued.push([text, params])
  if (kind === "sqlite") {
    const db = new Database(location)
    return {
      run,
      commit: async () => db.transaction(() => void queued.splice(0).forEach(([text, params]) => db.prepare(text).run(...params)))(),
      close: async () => db.close()
    }
  }
  const client = new pg.Client({ connectionString: location })
  await client.connect()
  return {
    run,
    commit: async () => {
      await client.query("BEGIN")
      for (const [text, params] of queued.splice(0)) {
        let n = 0
        await client.query(text.replace(/\?/g, () => `$${++n}`), params as Array<unknown>)
      }
      await client.query("COMMIT")
    },
    close: () => client.end()
  }
}

describe.each(STORE_KINDS)("the live feed, in process, on %s", (kind) => {
  const config = new Map([["SYMBOLS", "BTCUSDT,ETHUSDT"], ["SSE_HEARTBEAT_SECONDS", "1"]])
  const scope = Effect.runSync(Scope.make())
  let runtime: ManagedRuntime.ManagedRuntime<LiveFeed, unknown>
  let db: Awaited<ReturnType<typeof storeWriter>>
  // ten minutes ago, on a minute: history before it, "new" rows after it
  const base = Math.floor(Date.now() / MIN) * MIN - 10 * MIN
  const us = (ms: number) => ms * 1000
  const tick = (symbol: string, ms: number, price: string) => {
    db.run(
      "INSERT INTO ticks (symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time, ingested_at) VALUES (?,?,?,?,?,?,?,?,?)",
      symbol, us(ms), formatInstantMicros(us(ms)), price, "1.5", "100", "simulated", null, "2026-01-01T00:00:00Z")
    return eventJson({ timestamp_utc: formatInstantMicros(us(ms)), symbol, lastPrice: price, priceChangePercent: "1.5", volume: "100", source: "simulated" } as never)
  }
  const candle = (symbol: string, source: "klines" | "ticks", open: number, price: string) =>
    db.run(
      "INSERT INTO candles (symbol, interval, source, open_time, open, high, low, close, volume, quote_volume, trades, closed) VALUES (?, '1m', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      symbol, source, open, price, price, price, price, source === "klines" ? "2.5" : "0", source === "klines" ? "10" : "0", source === "klines" ? 7 : 0, source === "klines" ? 1 : 0)
  const trade = (symbol: string, id: number, ms: number) => {
    db.run(
      "INSERT INTO trades (symbol, agg_trade_id, price, quantity, first_trade_id, last_trade_id, trade_time_us, is_buyer_maker, source) VALUES (?,?,?,?,?,?,?,?,?)",
      symbol, id, "100.5", "0.25", id * 2, id * 2 + 1, us(ms), 1, "simulated")
    return tradeJson({ symbol: symbol as TickerSymbol, id, price: "100.5", quantity: "0.25", firstTradeId: id * 2, lastTradeId: id * 2 + 1, timeMicros: us(ms), isBuyerMaker: true, source: "simulated" })
  }
  const candleJson = (symbol: string, open: number, price: string, kline: boolean) =>
    JSON.stringify({
      symbol, interval: "1m", open_time: new Date(open).toISOString(), open: price, high: price, low: price, close: price,
      volume: kline ? "2.5" : "0", quote_volume: kline ? "10" : "0", trades: kline ? 7 : 0, closed: true
    })
  let feed: LiveFeed
  const body = (sub: Partial<Subscription>) =>
    feed.subscribe({ kinds: undefined, symbols: undefined, lastEventId: undefined, drop: () => {}, server: undefined, ...sub })
  const subscribe = (sub: Partial<Subscription> = {}) => {
    const parser = sseParser()
    const stream = body(sub)
    stream.on("data", (bytes: Buffer) => parser.push(decoder.decode(bytes)))
    return { ...parser, stop: () => stream.destroy() }
  }
  const settle = () => new Promise((r) => setTimeout(r, 700)) // more than two polls

  beforeAll(async () => {
    const store = await Effect.runPromise(Scope.extend(freshStore(kind), scope))
    runtime = ManagedRuntime.make(LiveFeed.Default.pipe(Layer.provideMerge(store.layer), Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(config)))))
    feed = await runtime.runPromise(LiveFeed)
    db = await storeWriter(kind, store.location)
    // history: none of it is news
    tick("BTCUSDT", base - 30_000, "90")
    trade("BTCUSDT", 100, base - 20_000)
    candle("BTCUSDT", "klines", base - MIN, "90")
    await db.commit()
  }, 30_000)
  afterAll(async () => {
    await db?.close()
    await runtime?.dispose()
    await Effect.runPromise(Scope.close(scope, Exit.void))
  })

  it("sends what is stored after the first client came, in the order of its instants, with increasing ids", async () => {
    const all = subscribe()
    const candlesOfEth = subscribe({ kinds: ["candle"], symbols: ["ETHUSDT"] })
    await settle()
    const expected: Array<[string, string]> = []
    {
      const t1 = tick("BTCUSDT", base + MIN + 1000, "101")
      candle("BTCUSDT", "ticks", base + MIN, "101")
      const tr = trade("BTCUSDT", 101, base + MIN + 2000)
      trade("BTCUSDT", 50, base + MIN + 3000) // a repaired id below the last one: history
      candle("BTCUSDT", "klines", base + 2 * MIN, "102") // a closed kline
      candle("BTCUSDT", "ticks", base + 2 * MIN, "102") // its tick minute: the kline wins
      const t2 = tick("BTCUSDT", base + 2 * MIN + 1000, "102")
      const t3 = tick("BTCUSDT", base + 3 * MIN + 1000, "103") // closes the tick minutes before it
      expected.push(["ticker", t1], ["trade", tr], ["candle", candleJson("BTCUSDT", base + MIN, "101", false)], ["ticker", t2])
      expected.push(["candle", candleJson("BTCUSDT", base + 2 * MIN, "102", true)], ["ticker", t3])
    }
    await db.commit()
    await until(() => all.events.length >= expected.length, 5000, "the new rows")
    await settle()
    assert.deepStrictEqual(all.events.map((e) => [e.event, e.data]), expected)
    all.events.forEach((e, i) => i > 0 && assert.strictEqual(e.id, all.events[i - 1]!.id + 1))
    assert.strictEqual(all.order[0], "retry")
    assert.strictEqual(all.retry(), 1000)
    assert.deepStrictEqual(candlesOfEth.events, [])
    // ETHUSDT had no kline yet: one backfilled from the past is history, a bar closing now is news
    candle("ETHUSDT", "klines", base + 4 * MIN, "6")
    candle("ETHUSDT", "klines", base + 10 * MIN, "7")
    await db.commit()
    await until(() => candlesOfEth.events.length === 1, 5000, "the ETHUSDT kline")
    await settle()
    assert.deepStrictEqual(candlesOfEth.events.map((e) => e.data), [candleJson("ETHUSDT", base + 10 * MIN, "7", true)])
    await until(() => all.comments.includes("heartbeat"), 3000, "a heartbeat")
    all.stop()
    candlesOfEth.stop()
  })

  it("resumes after Last-Event-ID, and says when it cannot", async () => {
    const reference = subscribe()
    await settle()
    for (let i = 0; i < 20; i++) tick("ETHUSDT", base + 5 * MIN + i * 1000, `${200 + i}`)
    await db.commit()
    await until(() => reference.events.length === 20, 5000, "20 ticks")
    const from = reference.events[4]!.id
    const resumed = subscribe({ lastEventId: from })
    const old = subscribe({ lastEventId: 5, kinds: ["ticker"] })
    const future = subscribe({ lastEventId: 9e15 })
    await until(() => resumed.events.length === 15 && old.order.length > 2, 5000, "the resumed streams")
    assert.deepStrictEqual(resumed.events, reference.events.slice(5))
    assert.deepStrictEqual(resumed.comments, [])
    assert.match(old.comments[0]!, /^the events after id 5 up to id \d+ are no longer held/)
    assert.deepStrictEqual(old.order.slice(0, 2), ["retry", "comment"])
    assert.include(old.events.map((e) => e.id), from)
    assert.match(future.comments[0]!, /not an id of this server; live events follow/)
    assert.deepStrictEqual(future.events, [])
    for (const c of [reference, resumed, old, future]) c.stop()
  })

  it("drops a client that stops taking events, while the others get everything", async () => {
    let dropped = 0
    const reader = subscribe()
    const parser = sseParser()
    // takes its first write (the preamble), then stops reading, as a socket that does not drain
    const stalled = body({ drop: () => dropped++ })
    stalled.once("data", (bytes: Buffer) => {
      parser.push(decoder.decode(bytes))
      stalled.pause()
    })
    await settle()
    const count = OUTBOX_EVENTS + 3000
    for (let i = 0; i < count; i++) tick("ETHUSDT", base + 6 * MIN + i, "300")
    await db.commit()
    await until(() => dropped === 1, 10_000, "the stalled client to be dropped")
    await until(() => reader.events.length === count, 10_000, "every tick at the reader")
    assert.strictEqual(parser.retry(), 1000)
    assert.deepStrictEqual(parser.events, [])
    const status = await runtime.runPromise(feed.status)
    assert.strictEqual(status.dropped, 1)
    reader.stop()
    stalled.destroy()
    await until(() => feed.status.pipe(Effect.runSync).clients === 0, 2000, "every client gone")
  })
})

// ---------------------------------------------------------------------------------------------
// The built binary

const KEY = "sse-test-key-0123456789"
const NO_BINANCE = "http://127.0.0.1:9"
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024

describe("GET /stream, dist/main.js --role=all SOURCE=sim", () => {
  let dir: string
  let main: RunningMain
  let base: string
  let port: number
  const keyed = { "x-api-key": KEY }

  beforeAll(async () => {
    if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` first")
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-e2e-"))
    ;({ base, main, port } = await startRoleAll(NO_BINANCE, dir, {
      SOURCE: "sim",
      SIM_SEED: "11",
      SIM_EVENTS_PER_SECOND: "1500",
      SIM_TRADES_PER_SECOND: "1500",
      SSE_HEARTBEAT_SECONDS: "1",
      API_KEYS: KEY
    }))
  })
  afterAll(() => {
    if (main !== undefined && main.child.exitCode === null) main.child.kill("SIGKILL")
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true })
  })

  it("needs the API key, answers 400 as the other endpoints, and is in the OpenAPI document", async () => {
    assert.strictEqual((await fetch(`${base}/stream`)).status, 401)
    assert.strictEqual((await fetch(`${base}/stream`, { headers: { "x-api-key": "not-the-key-0123456789" } })).status, 401)
    const bad = async (query: string, says: string) => {
      const res = await fetch(`${base}/stream?${query}`, { headers: keyed })
      assert.strictEqual(res.status, 400, query)
      assert.include(await res.text(), says, query)
    }
    await bad("symbols=NOPEUSDT", "known symbols: BTCUSDT, ETHUSDT")
    await bad("symbols=btc-usdt", "expected a Binance symbol")
    await bad("symbols=", "expected a Binance symbol")
    await bad("kinds=ticker,quote", "kinds must be a comma-separated subset of ticker,trade,candle")
    await bad("last_event_id=abc", "last_event_id must be")
    const doc = (await (await fetch(`${base}/openapi.json`, { headers: keyed })).json()) as { paths: Record<string, { get?: unknown }> }
    assert.property(doc.paths["/stream"], "get")
  })

  it("streams ticker events, trades and candles in their contract JSON, filtered, resumable", async () => {
    const all = await connectSse(`${base}/stream`, keyed)
    assert.strictEqual(all.status, 200)
    assert.strictEqual(all.headers["content-type"], "text/event-stream")
    assert.strictEqual(all.headers["cache-control"], "no-cache")
    assert.strictEqual(all.headers["x-accel-buffering"], "no")
    assert.isUndefined(all.headers["content-encoding"])
    const ethTrades = await connectSse(`${base}/stream?symbols=ETHUSDT&kinds=trade`, keyed)
    await until(() => all.events.some((e) => e.event === "trade") && all.events.some((e) => e.event === "ticker"), 10_000, "ticks and trades")
    // a closed kline, written as the stream consumer would: sent as a candle
    const open = Math.floor(Date.now() / MIN) * MIN - MIN
    const db = new Database(path.join(dir, "app.db"))
    db.prepare(
      "INSERT INTO candles (symbol, interval, source, open_time, open, high, low, close, volume, quote_volume, trades, closed) VALUES ('BTCUSDT','1m','klines',?,'1.5','2','1','1.75','3','4.5',9,1)"
    ).run(open)
    db.close()
    await until(() => all.events.some((e) => e.event === "candle" && JSON.parse(e.data).open === "1.5"), 5000, "the kline")
    const lastA = all.events[all.events.length - 1]!.id
    const resumedHeader = await connectSse(`${base}/stream?last_event_id=1`, { ...keyed, "last-event-id": String(lastA) })
    const resumedQuery = await connectSse(`${base}/stream?kinds=trade&symbols=ETHUSDT&last_event_id=${lastA}`, keyed)
    await until(() => resumedHeader.events.length > 3000 && resumedQuery.events.length > 300 && ethTrades.events.length > 300, 15_000, "events")
    for (const c of [all, ethTrades, resumedHeader, resumedQuery]) c.close()

    all.events.forEach((e, i) => i > 0 && assert.isAbove(e.id, all.events[i - 1]!.id))
    assert.deepStrictEqual([...new Set(all.events.map((e) => e.event))].sort(), ["candle", "ticker", "trade"])
    assert.isTrue(ethTrades.events.every((e) => e.event === "trade" && JSON.parse(e.data).symbol === "ETHUSDT"))
    // resumed: exactly what the first client got after lastA (and what it did not get yet, none missing)
    const after = (c: typeof all, pick: (e: (typeof all.events)[number]) => boolean) => c.events.filter((e) => e.id > lastA && pick(e))
    const common = (x: ReadonlyArray<unknown>, y: ReadonlyArray<unknown>) => Math.min(x.length, y.length)
    const every = after(all, () => true)
    assert.isAbove(every.length, 100)
    assert.deepStrictEqual(resumedHeader.events.slice(0, common(every, resumedHeader.events)), every.slice(0, common(every, resumedHeader.events)))
    assert.strictEqual(resumedHeader.events[0]!.id, every[0]!.id)
    const eth = [...ethTrades.events.filter((e) => e.id > lastA)]
    assert.deepStrictEqual(resumedQuery.events.slice(0, common(eth, resumedQuery.events)), eth.slice(0, common(eth, resumedQuery.events)))
    assert.strictEqual(resumedQuery.events[0]!.id, eth[0]!.id)

    // the data is the contract JSON the JSON endpoints serve
    const ticker = all.events.find((e) => e.event === "ticker")!
    const tick = JSON.parse(ticker.data)
    const range = (await (await fetch(`${base}/trades/range?symbol=${tick.symbol}&start=${encodeURIComponent(tick.timestamp_utc)}&end=2100-01-01&limit=1`, { headers: keyed })).json()) as Array<unknown>
    assert.strictEqual(JSON.stringify(range[0]), ticker.data)
    const tradeEvent = all.events.find((e) => e.event === "trade")!
    const t = JSON.parse(tradeEvent.data)
    const trades = (await (await fetch(`${base}/agg-trades/range?symbol=${t.symbol}&start=${encodeURIComponent(t.trade_time)}&end=2100-01-01&limit=50`, { headers: keyed })).json()) as Array<{ agg_trade_id: number }>
    assert.strictEqual(JSON.stringify(trades.find((x) => x.agg_trade_id === t.agg_trade_id)), tradeEvent.data)
    const candleEvent = all.events.find((e) => e.event === "candle" && JSON.parse(e.data).open === "1.5")!
    const iso = (ms: number) => new Date(ms).toISOString()
    const candles = (await (await fetch(`${base}/candles?symbol=BTCUSDT&interval=1m&start=${iso(open)}&end=${iso(open + MIN)}`, { headers: keyed })).json()) as Array<unknown>
    assert.strictEqual(JSON.stringify(candles[0]), candleEvent.data)
    assert.include(all.comments, "heartbeat")
    assert.deepStrictEqual(all.order[0], "retry")
  })

  it("drops clients that stop reading, keeps serving the others, and its memory stays bounded", { timeout: 90_000 }, async () => {
    const reader = await connectSse(`${base}/stream`, keyed)
    const before = rssMb(main.child.pid!)
    const paused = Array.from({ length: 20 }, () => pausedClient(port, "/stream", keyed))
    await until(() => reader.events.length > 0, 5000, "the reader's first event")
    const startId = reader.events[0]!.id
    // far more than a paused socket's kernel buffers (a few MB) and the outbox take
    await until(() => reader.events.filter((e) => e.id > startId).length > 40_000, 60_000, "40,000 events at the reader")
    const peak = rssMb(main.child.pid!)
    for (const p of paused) p.resume()
    await until(() => paused.every((p) => p.closed()), 15_000, "every paused client to be ended")
    const seen = reader.events.length
    await until(() => reader.events.length > seen + 100, 5000, "the reader to go on")
    reader.close()
    console.log(`server RSS ${before.toFixed(0)} MB before the paused clients, ${peak.toFixed(0)} MB with them; each paused client got ≤ ${Math.max(...paused.map((p) => p.received()))} bytes`)
    assert.isBelow(peak, before + 150)
  })

  it("ends its streams at once on SIGTERM", async () => {
    const client = await connectSse(`${base}/stream`, keyed)
    await until(() => client.events.length > 0, 5000, "an event")
    const started = Date.now()
    main.child.kill("SIGTERM")
    await until(() => client.ended(), 4000, "the stream to end")
    assert.isBelow(Date.now() - started, 2000)
    assert.strictEqual(await main.exited, 0)
  })
})

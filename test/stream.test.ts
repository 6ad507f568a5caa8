import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import { type FakeBinance, startFakeBinance } from "./support/fakeBinance.js"
import { getJson, mainJs, type RunningMain, startRoleAll, waitFor } from "./support/process.js"
import { rawTradeLines } from "./support/simRun.js"
import { query } from "./support/sqlite.js"

// The stream source against the fake Binance (WebSocket + REST on one port), one rule per test, on the
// built binary: SOURCE=stream, short STREAM_* settings, a fake pinging every 300 ms.

beforeAll(() => {
  if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does it first)")
})

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

const fakeWith = async (options: Parameters<typeof startFakeBinance>[0] = {}) => {
  const fake = await startFakeBinance({ ws: { pingIntervalMs: 300, klineUpdateMs: 500, ...options.ws }, ...options })
  cleanups.push(() => fake.close())
  return fake
}

const tempDir = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stream-"))
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

const start = async (fake: FakeBinance, dir: string, env: Record<string, string> = {}) => {
  const running = await startRoleAll(fake.url, dir, {
    SOURCE: "stream",
    BINANCE_WS_URL: fake.wsUrl,
    STREAM_STALE_SECONDS: "2",
    ...env
  })
  cleanups.push(async () => {
    running.main.child.kill("SIGKILL")
    await running.main.exited
  })
  return running
}

const stop = async (main: RunningMain) => {
  main.child.kill("SIGTERM")
  return main.exited
}

const storedIds = (dir: string, symbol: string): Array<number> => {
  try {
    return query(path.join(dir, "app.db"), "SELECT agg_trade_id AS id FROM trades WHERE symbol = ? ORDER BY agg_trade_id", symbol).map((r) =>
      Number(r.id)
    )
  } catch {
    return []
  }
}

/** Every id from the first stored to `lastId` is stored, once (the table's key makes "once" hold; count proves "every"). */
const expectWhole = (ids: ReadonlyArray<number>, lastId: number) => {
  expect(ids.length).toBeGreaterThan(0)
  expect(ids[ids.length - 1]).toBeGreaterThanOrEqual(lastId)
  expect(ids.length).toBe(ids[ids.length - 1]! - ids[0]! + 1)
}

const rawTradeIds = (dir: string, symbol: string): Array<number> =>
  rawTradeLines(path.join(dir, "raw"))
    .map((l) => JSON.parse(l) as { symbol: string; agg_trade_id: number })
    .filter((t) => t.symbol === symbol)
    .map((t) => t.agg_trade_id)
    .sort((a, b) => a - b)

const until = <A>(check: () => A | undefined | Promise<A | undefined>, ms: number, what: string) => waitFor(check, ms, what)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * The platform streaming from a fake market of 10 trades a second; once it stored trades of `symbol`,
 * the fake withholds the next `count` of them from the stream. Their ids are `skipped`.
 */
const startAndSkip = async (symbol: string, count: number) => {
  const fake = await fakeWith({ market: { tradesPerSecond: 10 } })
  const dir = tempDir()
  const { base } = await start(fake, dir)
  await until(() => (storedIds(dir, symbol).length > 5 ? true : undefined), 10_000, "streamed trades")
  fake.ws.skip(symbol, count)
  await until(() => (fake.ws.withheld(symbol).length === count ? true : undefined), 10_000, "the skip")
  return { fake, dir, base, skipped: fake.ws.withheld(symbol).map((t) => t.a) }
}

/**
 * The body of /coverage for `symbol` (a day), once it answers 200 and `ready` holds for it. On a
 * timeout the error carries the last answer and, when given, the platform's log.
 */
const coverageOnce = async (base: string, symbol: string, ready: (body: any) => boolean, ms: number, what: string, log?: () => string) => {
  let last: unknown
  try {
    return await until(
      async () => {
        const res = await getJson(`${base}/coverage?symbol=${symbol}&days=1`)
        last = res
        return res?.status === 200 && ready(res.body) ? res.body : undefined
      },
      ms,
      what
    )
  } catch (e) {
    throw new Error(`${String(e)}; the last answer was ${JSON.stringify(last)}${log === undefined ? "" : `; the platform printed:\n${log()}`}`)
  }
}

describe("stream connection lifecycle (SOURCE=stream against the fake Binance)", () => {
  it("opens one combined connection, answers every ping with its payload, stays under 5 messages/s, and stores each trade once", async () => {
    const fake = await fakeWith()
    const dir = tempDir()
    const { base, main } = await start(fake, dir)
    const conn = await until(() => fake.ws.open()[0], 10_000, "a connection")
    expect(conn.path).toBe("/stream?streams=btcusdt@aggTrade/btcusdt@kline_1m/ethusdt@aggTrade/ethusdt@kline_1m")
    await sleep(3_000)
    // Every ping older than a moment has its pong, with the same payload.
    const answered = new Set(conn.pongs.map((p) => p.payload))
    const due = conn.pings.filter((p) => p.at < Date.now() - 200)
    expect(due.length).toBeGreaterThanOrEqual(8)
    for (const ping of due) expect(answered.has(ping.payload)).toBe(true)
    expect(conn.closedBy).toBeUndefined()
    expect(fake.ws.connections).toHaveLength(1)

    const last = fake.trades.lastId("BTCUSDT")
    await until(() => (storedIds(dir, "BTCUSDT").at(-1)! >= last ? true : undefined), 10_000, "the streamed trades stored")
    const sent = conn.trades.filter((t) => t.symbol === "BTCUSDT").map((t) => t.a)
    const ids = storedIds(dir, "BTCUSDT")
    expect(ids.slice(0, sent.length)).toEqual(sent.slice(0, ids.length))
    expectWhole(ids, last)
    expect(rawTradeIds(dir, "BTCUSDT").slice(0, ids.length)).toEqual(ids)

    const health = (await getJson(`${base}/health`))!
    expect(health.status).toBe(200)
    const stream = health.body.components.stream
    expect(stream.state).toBe("up")
    expect(stream.connections).toHaveLength(1)
    expect(stream.connections[0]).toMatchObject({ name: "binance-ws-1", state: "connected", streams: 4, reconnects: 0, detail: null })
    expect(typeof stream.connections[0].connected_since).toBe("string")
    expect(stream.connections[0].last_message_age_ms).toBeLessThan(2_000)
    expect(await stop(main)).toBe(0)
    expect(fake.ws.connections[0]!.closedBy).toBe("client")
  }, 40_000)

  it("replaces a connection that carries no data for STREAM_STALE_SECONDS (pings do not count), and repairs what it missed", async () => {
    const fake = await fakeWith()
    const dir = tempDir()
    const { base } = await start(fake, dir)
    const first = await until(() => fake.ws.open()[0], 10_000, "a connection")
    await sleep(1_000)
    const silencedAt = Date.now()
    fake.ws.silence()
    const second = await until(() => fake.ws.connections.find((c) => c.id !== first.id), 10_000, "a new connection")
    // Stale after 2 s without data, though pings went on and were answered.
    expect(second.openedAt - silencedAt).toBeGreaterThanOrEqual(1_900)
    expect(second.openedAt - silencedAt).toBeLessThan(4_000)
    expect(first.pings.filter((p) => p.at > silencedAt).length).toBeGreaterThan(0)
    await until(() => (first.closedAt !== undefined ? true : undefined), 5_000, "the stale connection closed")
    fake.ws.resume()
    expect(fake.ws.withheld("BTCUSDT").length).toBeGreaterThan(0)
    const last = fake.trades.lastId("BTCUSDT")
    await until(() => (storedIds(dir, "BTCUSDT").at(-1)! >= last && storedIds(dir, "BTCUSDT").length === storedIds(dir, "BTCUSDT").at(-1)! - storedIds(dir, "BTCUSDT")[0]! + 1 ? true : undefined), 15_000, "the missed trades repaired")
    expectWhole(storedIds(dir, "BTCUSDT"), last)
    const health = (await getJson(`${base}/health`))!.body.components.stream
    expect(health.connections[0].reconnects).toBe(1)
  }, 40_000)

  it("renews after STREAM_RENEW_SECONDS make-before-break: the new connection carries data before the old one is closed by the platform, and the overlap is stored once", async () => {
    const fake = await fakeWith({ market: { tradesPerSecond: 20 } })
    const dir = tempDir()
    await start(fake, dir, { STREAM_RENEW_SECONDS: "3" })
    const first = await until(() => fake.ws.open()[0], 10_000, "a connection")
    const second = await until(() => fake.ws.connections.find((c) => c.id !== first.id), 10_000, "the renewal")
    expect(second.openedAt - first.openedAt).toBeGreaterThanOrEqual(2_900)
    await until(() => (first.closedAt !== undefined ? true : undefined), 5_000, "the old connection closed")
    expect(first.closedBy).toBe("client")
    // The old one closed only after the new one had carried data: both carried some trades.
    const overlap = first.trades.filter((t) => second.trades.some((u) => u.symbol === t.symbol && u.a === t.a))
    expect(overlap.length).toBeGreaterThan(0)
    const last = fake.trades.lastId("BTCUSDT")
    await until(() => (storedIds(dir, "BTCUSDT").at(-1)! >= last ? true : undefined), 10_000, "trades after the renewal")
    expectWhole(storedIds(dir, "BTCUSDT"), last)
    expect(rawTradeIds(dir, "BTCUSDT")).toEqual(storedIds(dir, "BTCUSDT").filter((id) => id <= rawTradeIds(dir, "BTCUSDT").at(-1)!))
    const gaps = query(path.join(dir, "app.db"), "SELECT COUNT(*) AS n FROM trade_gaps")[0]!.n
    expect(Number(gaps)).toBe(0)
  }, 40_000)

  it("renews within 1 s of a serverShutdown, closing the old connection itself once the new one carries data", async () => {
    const fake = await fakeWith()
    const dir = tempDir()
    await start(fake, dir)
    const first = await until(() => fake.ws.open()[0], 10_000, "a connection")
    await sleep(1_000)
    fake.ws.serverShutdown({ graceMs: 10_000 })
    const second = await until(() => fake.ws.connections.find((c) => c.id !== first.id), 5_000, "the new connection")
    expect(second.openedAt - first.shutdownNoticeAt!).toBeLessThan(1_000)
    await until(() => (first.closedAt !== undefined ? true : undefined), 5_000, "the old connection closed")
    expect(first.closedBy).toBe("client")
    const last = fake.trades.lastId("ETHUSDT")
    await until(() => (storedIds(dir, "ETHUSDT").at(-1)! >= last ? true : undefined), 10_000, "trades after the renewal")
    expectWhole(storedIds(dir, "ETHUSDT"), last)
  }, 40_000)

  it("on HTTP 451: one log line naming BINANCE_WS_URL, /health down with the reason, and at most one attempt a minute", async () => {
    const fake = await fakeWith()
    fake.ws.reject451(true)
    const dir = tempDir()
    const { base, main } = await start(fake, dir)
    await until(() => (fake.ws.attempts.length > 0 ? true : undefined), 10_000, "an attempt")
    const health = await until(
      async () => {
        const res = await getJson(`${base}/health`)
        return res?.body.components.stream.state === "down" ? res : undefined
      },
      5_000,
      "the stream reported down"
    )
    expect(health.status).toBe(503)
    expect(health.body.components.stream.detail).toContain("451")
    expect(health.body.components.stream.detail).toContain(`BINANCE_WS_URL=${fake.wsUrl}`)
    expect(health.body.components.stream.connections[0].state).toBe("rejected")
    await sleep(4_000)
    expect(fake.ws.attempts).toHaveLength(1)
    const lines = main.output().split("\n").filter((l) => l.includes("451") && l.includes("BINANCE_WS_URL"))
    expect(lines).toHaveLength(1)
  }, 40_000)

  it("retries a refused connection with growing, jittered delays", async () => {
    const attempts: Array<number> = []
    const server = net.createServer((socket) => {
      attempts.push(Date.now())
      socket.destroy()
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const wsPort = (server.address() as net.AddressInfo).port
    const fake = await fakeWith()
    const dir = tempDir()
    await start(fake, dir, { BINANCE_WS_URL: `ws://127.0.0.1:${wsPort}` })
    await sleep(7_000)
    // Delays 0.25-0.5, 0.5-1, 1-2, 2-4 s...: about five attempts in 7 s, each wait longer than the one before but one.
    expect(attempts.length).toBeGreaterThanOrEqual(3)
    expect(attempts.length).toBeLessThanOrEqual(7)
    const waits = attempts.slice(1).map((t, i) => t - attempts[i]!)
    expect(waits.at(-1)!).toBeGreaterThan(waits[0]! * 2)
  }, 40_000)
})

describe("gap detection and repair", () => {
  it("a range the stream skipped is fetched through REST: every id stored once, /coverage reports it repaired and nothing missing", async () => {
    const { fake, dir, base, skipped } = await startAndSkip("BTCUSDT", 40)
    const last = fake.trades.lastId("BTCUSDT") + 5
    await until(() => (storedIds(dir, "BTCUSDT").at(-1)! >= last ? true : undefined), 10_000, "trades after the gap")
    const coverage = await coverageOnce(base, "BTCUSDT", (body) => body.trades.repaired.length > 0, 10_000, "the repair on /coverage")
    expect(coverage.trades.missing).toEqual([])
    expect(coverage.trades.unrepairable).toEqual([])
    expect(coverage.trades.repaired).toEqual([{ from_id: skipped[0], to_id: skipped.at(-1), at: expect.any(String) }])
    const ids = storedIds(dir, "BTCUSDT")
    expectWhole(ids, last)
    for (const id of skipped) expect(ids).toContain(id)
    const raw = rawTradeIds(dir, "BTCUSDT")
    expect(new Set(raw).size).toBe(raw.length)
    for (const id of skipped) expect(raw).toContain(id)
  }, 40_000)

  it("a range Binance no longer serves is recorded unrepairable with the reason, once, and not asked for again", async () => {
    const { fake, base, skipped } = await startAndSkip("ETHUSDT", 20)
    fake.trades.hide("ETHUSDT", skipped[0]!, skipped.at(-1)!)
    const coverage = await coverageOnce(base, "ETHUSDT", (body) => body.trades.unrepairable.length > 0, 15_000, "the unrepairable range on /coverage")
    expect(coverage.trades.missing).toEqual([])
    expect(coverage.trades.unrepairable).toEqual([{ from_id: skipped[0], to_id: skipped.at(-1), reason: expect.stringContaining("Binance") }])
    const asked = () => fake.requests.filter((r) => r.path === "/api/v3/aggTrades" && r.query.get("symbol") === "ETHUSDT").length
    const before = asked()
    await sleep(3_000)
    expect(asked()).toBe(before)
  }, 40_000)

  it("after a SIGKILL, the trades made while the platform was down are repaired on start", async () => {
    const fake = await fakeWith({ market: { tradesPerSecond: 10 } })
    const dir = tempDir()
    const first = await start(fake, dir)
    await until(() => (storedIds(dir, "BTCUSDT").length > 10 ? true : undefined), 10_000, "streamed trades")
    first.main.child.kill("SIGKILL")
    await first.main.exited
    const lastBefore = storedIds(dir, "BTCUSDT").at(-1)!
    await sleep(2_000)
    const madeWhileDown = fake.trades.all("BTCUSDT").filter((t) => t.a > lastBefore).map((t) => t.a)
    expect(madeWhileDown.length).toBeGreaterThan(10)
    const { base } = await start(fake, dir)
    const last = fake.trades.lastId("BTCUSDT") + 5
    await until(() => (storedIds(dir, "BTCUSDT").at(-1)! >= last ? true : undefined), 10_000, "trades after the restart")
    await until(
      async () => ((await getJson(`${base}/coverage?symbol=BTCUSDT&days=1`))?.body.trades.repaired.length > 0 ? true : undefined),
      10_000,
      "the repair"
    )
    const ids = storedIds(dir, "BTCUSDT")
    expectWhole(ids, last)
    for (const id of madeWhileDown) expect(ids).toContain(id)
    const coverage = (await getJson(`${base}/coverage?symbol=BTCUSDT&days=1`))!.body
    expect(coverage.trades.missing).toEqual([])
    expect(coverage.trades.repaired[0].from_id).toBe(lastBefore + 1)
  }, 60_000)

  it("closed 1m bars are stored as klines candles at once, and TRADES_BACKFILL_MINUTES fetches earlier trades and their minutes", async () => {
    const fake = await fakeWith({ market: { tradesPerSecond: 5 } })
    const dir = tempDir()
    const { base, main } = await start(fake, dir, { TRADES_BACKFILL_MINUTES: "4", SYMBOLS: "BTCUSDT" })
    const conn = await until(() => fake.ws.open()[0], 10_000, "a connection")
    // The minute before the subscription's: the stream never sends its closed bar, and the repair
    // after the backfill leaves it to a later pass (it closed less than BAR_GRACE_MS ago).
    const minute = Math.floor(conn.openedAt / 60_000) * 60_000 - 60_000
    await until(() => (storedIds(dir, "BTCUSDT").length > 0 ? true : undefined), 10_000, "streamed trades")
    fake.ws.sendKline("BTCUSDT", minute, true)
    const bar = fake.trades.bar("BTCUSDT", minute)
    const stored = await until(
      async () => {
        const res = await getJson(`${base}/candles?symbol=BTCUSDT&interval=1m&start=${new Date(minute).toISOString()}&end=${new Date(minute + 60_000).toISOString()}`)
        return res?.status === 200 && res.body.length === 1 ? res.body[0] : undefined
      },
      10_000,
      "the closed bar as a candle"
    )
    expect(stored).toMatchObject({ symbol: "BTCUSDT", interval: "1m", closed: true })
    expect(Number(stored.close)).toBeCloseTo(bar.c, 6)
    expect(stored.trades).toBe(bar.n)
    // The backfill reaches four minutes before the first streamed trade; the minutes since are covered by klines.
    const coverage = await coverageOnce(
      base,
      "BTCUSDT",
      (body) => body.minutes.covered >= 3 && body.minutes.missing.length === 0,
      20_000,
      "backfilled trades and their minutes",
      main.output
    )
    expect(Date.parse(coverage.from)).toBeLessThanOrEqual(Date.now() - 3 * 60_000)
    expectWhole(storedIds(dir, "BTCUSDT"), fake.trades.lastId("BTCUSDT") - 50)
  }, 60_000)
})

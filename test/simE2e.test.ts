import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { makeSimMarket } from "../src/domain/SimMarket.js"
import { parseInstantMicros, type TickerSymbol } from "../src/domain/Ticker.js"
import { getJson, mainJs, repoRoot, type RunningMain, startRoleAll, waitFor } from "./support/process.js"
import { logMessages, useScratch } from "./support/simRun.js"
import { query, tickCount } from "./support/sqlite.js"

/**
 * The simulated market end to end, in one direct-mode process (`--role=all SOURCE=sim`), and the
 * recording it leaves replayed (`SOURCE=replay REPLAY_SPEED=0`) into fresh stores: the replay must
 * reproduce exactly the same ticks, candles and raw log.
 */

const SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
const RATE = 200
const SEED = 20260115
const DECIMAL = /^-?\d+(\.\d+)?$/
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$/
/** Not Binance: SOURCE=sim and SOURCE=replay never poll, so nothing may listen there. */
const NO_BINANCE = "http://127.0.0.1:9"

const scratch = useScratch("sim-e2e-")

const stop = async (p: RunningMain) => {
  p.child.kill("SIGTERM")
  return p.exited
}

const TICK_COLUMNS = "symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time"
const ticksOf = (db: string) => query(db, `SELECT ${TICK_COLUMNS} FROM ticks ORDER BY symbol, ts_us`)
/** The derived candles; `closed` (and a day's `open_minutes`) depend on the wall clock when they were merged, not on the ticks. */
const candlesOf = (db: string) =>
  query(
    db,
    "SELECT symbol, interval, source, open_time, open, high, low, close, volume, quote_volume, trades, first_us, last_us, high_num, high_us, low_num, low_us FROM candles ORDER BY symbol, interval, source, open_time"
  )
const dailyOf = (db: string) =>
  query(
    db,
    "SELECT symbol, date, open, high, low, close, volume, quote_volume, trades, source, basis, first_us, last_us, high_num, high_us, low_num, low_us FROM daily_candles ORDER BY symbol, date"
  )
const rawFiles = (rawDir: string) =>
  Object.fromEntries(
    fs
      .readdirSync(rawDir)
      .filter((f) => f.endsWith(".jsonl")) // ticks' day files; trades have a directory of their own
      .sort()
      .map((f) => [f, fs.readFileSync(path.join(rawDir, f), "utf8")])
  )

/** The 1m candles the stored ticks of `symbol` imply (prices only), oldest first. */
const expectedMinutes = (db: string, symbol: string) => {
  const rows = query(db, "SELECT ts_us, last_price FROM ticks WHERE symbol = ? ORDER BY ts_us", symbol)
  const minutes = new Map<number, Array<string>>()
  for (const r of rows) {
    const minute = Math.floor(Number(r.ts_us) / 60_000_000) * 60_000
    let prices = minutes.get(minute)
    if (prices === undefined) minutes.set(minute, (prices = []))
    prices.push(String(r.last_price))
  }
  return [...minutes].map(([minute, prices]) => {
    const byValue = [...prices].sort((a, b) => Number(a) - Number(b))
    return {
      symbol,
      interval: "1m",
      open_time: new Date(minute).toISOString(),
      open: prices[0],
      high: byValue[byValue.length - 1],
      low: byValue[0],
      close: prices[prices.length - 1],
      volume: "0"
    }
  })
}

describe("SOURCE=sim end to end, and its recording replayed", () => {
  // The first run's stores, read by the replay test.
  const first = { dataDir: "", db: "", rawDir: "", published: 0 }

  it("--role=all SOURCE=sim serves the simulated events on /symbols, /trades/latest, /candles and /health, and stops on SIGTERM with exit 0", async () => {
    first.dataDir = path.join(scratch.dir, "sim")
    first.db = path.join(first.dataDir, "app.db")
    first.rawDir = path.join(first.dataDir, "raw")
    // A fixed SIM_START (the current second, so that /health's newest event age means something):
    // the events are then exactly the pure generator's, whatever the process's timing.
    const startMs = Math.floor(Date.now() / 1000) * 1000
    const simStart = new Date(startMs).toISOString()
    const { main, base } = await startRoleAll(NO_BINANCE, first.dataDir, {
      SOURCE: "sim",
      SIM_SEED: String(SEED),
      SIM_EVENTS_PER_SECOND: String(RATE),
      SIM_START: simStart,
      SYMBOLS: SYMBOLS.join(",")
    })
    scratch.running.push(main)
    const servingAfterMs = Date.now() - startMs

    // /symbols: every simulated symbol, with events
    const symbols = await waitFor(
      async () => {
        const res = await getJson(`${base}/symbols`)
        const body = res?.status === 200 ? (res.body as Array<{ symbol: string; latest_timestamp_utc: string; events: number }>) : []
        return body.length === SYMBOLS.length && body.every((s) => s.events >= 200) ? body : undefined
      },
      30_000,
      "200 events of each symbol on /symbols"
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${main.output().slice(-3000)}`)
    })
    expect(symbols.map((s) => s.symbol).sort()).toEqual([...SYMBOLS].sort())
    for (const s of symbols) {
      expect(s.latest_timestamp_utc).toMatch(INSTANT)
      expect(parseInstantMicros(s.latest_timestamp_utc)!).toBeGreaterThanOrEqual(startMs * 1000)
    }

    // /trades/latest: newest first, the contract's fields, source `simulated`, decimals as strings
    for (const symbol of SYMBOLS) {
      const res = await getJson(`${base}/trades/latest?symbol=${symbol}&limit=50`)
      expect(res?.status).toBe(200)
      const trades = res!.body as Array<Record<string, unknown>>
      expect(trades.length).toBe(50)
      const instants = trades.map((t) => parseInstantMicros(String(t.timestamp_utc))!)
      expect(instants).toEqual([...instants].sort((a, b) => b - a))
      expect(new Set(instants).size).toBe(50)
      for (const t of trades) {
        expect(Object.keys(t).sort()).toEqual(
          ["event_time", "lastPrice", "priceChangePercent", "source", "symbol", "timestamp_utc", "volume"].sort()
        )
        expect(t.symbol).toBe(symbol)
        expect(t.source).toBe("simulated")
        expect(t.timestamp_utc).toMatch(INSTANT)
        for (const field of ["lastPrice", "priceChangePercent", "volume"]) {
          expect(typeof t[field], field).toBe("string")
          expect(t[field], field).toMatch(DECIMAL)
        }
        expect(Number(t.lastPrice)).toBeGreaterThan(0)
      }
    }

    // /candles?interval=1m: tick-derived minutes (prices only), since SIM_START's minute
    const minuteStart = new Date(startMs - (startMs % 60_000)).toISOString()
    const end = new Date(startMs + 3_600_000).toISOString()
    for (const symbol of SYMBOLS) {
      const res = await getJson(`${base}/candles?symbol=${symbol}&interval=1m&start=${minuteStart}&end=${end}`)
      expect(res?.status).toBe(200)
      const candles = res!.body as Array<Record<string, unknown>>
      expect(candles.length).toBeGreaterThanOrEqual(1)
      for (const c of candles) {
        expect(c).toMatchObject({ symbol, interval: "1m", volume: "0" })
        expect(Date.parse(String(c.open_time)) % 60_000).toBe(0)
        expect(Date.parse(String(c.open_time))).toBeGreaterThanOrEqual(Date.parse(minuteStart))
        for (const field of ["open", "high", "low", "close"]) expect(c[field], field).toMatch(DECIMAL)
        const [open, high, low, close] = ["open", "high", "low", "close"].map((f) => Number(c[f]))
        expect(low).toBeLessThanOrEqual(Math.min(open!, close!))
        expect(high).toBeGreaterThanOrEqual(Math.max(open!, close!))
      }
    }

    // /health: ok, the simulated producer up, and the newest stored event recent. Its age is the
    // sim's lag behind SIM_START (at most the start-up time) plus the pipeline's: allow 10 s for the latter.
    const health = await getJson(`${base}/health`)
    expect(health?.status, JSON.stringify(health?.body)).toBe(200)
    expect(health!.body.status).toBe("ok")
    expect(health!.body.components.producer).toMatchObject({ state: "up" })
    expect([...health!.body.components.producer.symbols].sort()).toEqual([...SYMBOLS].sort())
    expect(health!.body.components.broker).toMatchObject({ state: "up", mode: "direct" })
    expect(health!.body.components.store.state).toBe("up")
    const age = health!.body.components.store.newest_event_age_seconds as number
    expect(typeof age).toBe("number")
    expect(age).toBeLessThan(servingAfterMs / 1000 + 10)

    // SIGTERM: exit 0, and everything the sim published was stored before the exit
    expect(await stop(main), main.output().slice(-3000)).toBe(0)
    const stopped = logMessages(main).filter((m) => m.message.startsWith("sim stopped after publishing"))
    expect(stopped.length, main.output().slice(-3000)).toBe(1)
    first.published = Number(/^sim stopped after publishing (\d+) event\(s\)/.exec(stopped[0]!.message)![1])
    expect(tickCount(first.db)).toBe(first.published)
    expect(logMessages(main).filter((m) => m.logLevel === "ERROR" || m.logLevel === "FATAL")).toEqual([])

    // What was stored is exactly the pure generator's first events, with the same values.
    const market = makeSimMarket({ seed: SEED, eventsPerSecond: RATE, symbols: SYMBOLS as Array<TickerSymbol>, startMicros: startMs * 1000 })
    const generated = Array.from({ length: first.published }, () => market.next().event)
    const expected = generated
      .map((e) => ({
        symbol: e.symbol,
        ts_us: parseInstantMicros(e.timestamp_utc)!,
        timestamp_utc: e.timestamp_utc,
        last_price: e.lastPrice,
        price_change_percent: e.priceChangePercent,
        volume: e.volume,
        source: e.source,
        event_time: e.event_time ?? null
      }))
      .sort((a, b) => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : a.ts_us - b.ts_us))
    expect(ticksOf(first.db)).toEqual(expected)
    // the raw log holds the same events, one line each, in the order they were generated
    const rawLines = Object.values(rawFiles(first.rawDir)).flatMap((text) => text.trimEnd().split("\n"))
    expect(rawLines.length).toBe(first.published)
    expect(rawLines).toEqual(generated.map((e) => JSON.stringify(e)))
  }, 90_000)

  it("SOURCE=replay of that recording (REPLAY_SPEED=0) into fresh stores reproduces exactly the same ticks, candles and raw log", async () => {
    expect(first.published, "the SOURCE=sim test runs first").toBeGreaterThan(0)
    const dataDir = path.join(scratch.dir, "replay")
    const db = path.join(dataDir, "app.db")
    const rawDir = path.join(dataDir, "raw")
    const dayFiles = fs.readdirSync(first.rawDir).filter((f) => f.endsWith(".jsonl"))
    const { main, base } = await startRoleAll(NO_BINANCE, dataDir, {
      SOURCE: "replay",
      REPLAY_DIR: first.rawDir,
      REPLAY_SPEED: "0",
      SYMBOLS: SYMBOLS.join(",")
    })
    scratch.running.push(main)
    const summary = `replay finished: ${first.published} event(s) published, 0 malformed line(s) skipped, ${dayFiles.length} file(s) read`
    await waitFor(
      () => (logMessages(main).some((m) => m.message.startsWith("replay ")) && tickCount(db) === first.published ? true : undefined),
      60_000,
      `the replay's summary line and ${first.published} rows`
    ).catch((e: Error) => {
      throw new Error(`${e.message} (stored ${tickCount(db)})\n${main.output().slice(-3000)}`)
    })
    // the replay ends with its one summary line; the process goes on serving what it stored
    expect(logMessages(main).filter((m) => /^replay (finished|stopped)/.test(m.message)).map((m) => m.message)).toEqual([summary])
    expect(main.child.exitCode).toBeNull()

    // The same ticks, row for row and value for value (ingested_at aside), and the same derived candles.
    expect(ticksOf(db)).toEqual(ticksOf(first.db))
    expect(candlesOf(db)).toEqual(candlesOf(first.db))
    expect(dailyOf(db)).toEqual(dailyOf(first.db))
    // The same raw log, byte for byte (the replay publishes in file order, the consumer appends in that order).
    await waitFor(() => (JSON.stringify(rawFiles(rawDir)) === JSON.stringify(rawFiles(first.rawDir)) ? true : undefined), 10_000, "the raw log").catch(
      () => {
        expect(rawFiles(rawDir)).toEqual(rawFiles(first.rawDir))
      }
    )

    // The API over the replayed store: counts, newest trades and 1m candles as the ticks imply.
    const symbols = (await getJson(`${base}/symbols`))!.body as Array<{ symbol: string; events: number; latest_timestamp_utc: string }>
    const counts = query(first.db, "SELECT symbol, COUNT(*) AS events, MAX(ts_us) AS newest FROM ticks GROUP BY symbol ORDER BY symbol")
    expect(symbols.map((s) => ({ symbol: s.symbol, events: s.events, newest: parseInstantMicros(s.latest_timestamp_utc) })).sort((a, b) => (a.symbol < b.symbol ? -1 : 1))).toEqual(
      counts.map((c) => ({ symbol: c.symbol, events: Number(c.events), newest: Number(c.newest) }))
    )
    const minuteStart = new Date(Math.floor(Number(query(first.db, "SELECT MIN(ts_us) AS t FROM ticks")[0]!.t) / 60_000_000) * 60_000).toISOString()
    const end = new Date(Date.parse(minuteStart) + 3_600_000).toISOString()
    for (const symbol of SYMBOLS) {
      const latest = (await getJson(`${base}/trades/latest?symbol=${symbol}&limit=20`))!.body as Array<{ timestamp_utc: string; lastPrice: string }>
      const newest = query(first.db, "SELECT timestamp_utc, last_price FROM ticks WHERE symbol = ? ORDER BY ts_us DESC LIMIT 20", symbol)
      expect(latest.map((t) => [t.timestamp_utc, t.lastPrice])).toEqual(newest.map((r) => [r.timestamp_utc, r.last_price]))
      const candles = (await getJson(`${base}/candles?symbol=${symbol}&interval=1m&start=${minuteStart}&end=${end}`))!.body as Array<Record<string, unknown>>
      expect(candles.map(({ symbol, interval, open_time, open, high, low, close, volume }) => ({ symbol, interval, open_time, open, high, low, close, volume }))).toEqual(
        expectedMinutes(first.db, symbol)
      )
    }
    const health = await getJson(`${base}/health`)
    expect(health?.status, JSON.stringify(health?.body)).toBe(200)

    expect(await stop(main), main.output().slice(-3000)).toBe(0)
    expect(logMessages(main).filter((m) => m.logLevel === "ERROR" || m.logLevel === "FATAL")).toEqual([])
  }, 90_000)

  it("SOURCE=sim faster than the store can take (200,000/s): /health/live keeps answering, and SIGTERM stops it with exit 0", async () => {
    const dataDir = path.join(scratch.dir, "overload")
    const { base, main } = await startRoleAll(NO_BINANCE, dataDir, {
      SOURCE: "sim",
      SIM_EVENTS_PER_SECOND: "200000",
      SYMBOLS: SYMBOLS.join(",")
    })
    scratch.running.push(main)
    // The consumer never runs dry here; between its synchronous batches the server must still get turns.
    await waitFor(() => (tickCount(path.join(dataDir, "app.db")) > 20_000 ? true : undefined), 30_000, "a backlog being stored")
    for (let i = 0; i < 10; i++) {
      const started = Date.now()
      const res = await fetch(`${base}/health/live`, { signal: AbortSignal.timeout(5_000) }).catch((e: unknown) => e)
      expect(res instanceof Response ? res.status : String(res)).toBe(200)
      expect(Date.now() - started, "a liveness probe waited behind the consumer").toBeLessThan(2_000)
      await new Promise((r) => setTimeout(r, 200))
    }
    const stopping = Date.now()
    expect(await stop(main), main.output().slice(-3000)).toBe(0)
    expect(Date.now() - stopping).toBeLessThan(5_000)
  }, 90_000)

  it("SOURCE=replay with a missing REPLAY_DIR exits 1 with one line naming REPLAY_DIR, without a stack trace", async () => {
    const missing = path.join(scratch.dir, "no-such-recording")
    const child = spawn(process.execPath, [mainJs, "--role=all"], {
      cwd: repoRoot,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "",
        SOURCE: "replay",
        REPLAY_DIR: missing,
        STORAGE_PATH: path.join(scratch.dir, "missing", "app.db"),
        RAW_DIR: path.join(scratch.dir, "missing", "raw"),
        HOST: "127.0.0.1",
        PORT: "0"
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    const code = await new Promise<number | string>((resolve) => child.once("close", (c, s) => resolve(c ?? s ?? "unknown")))
    expect(code, stdout + stderr).toBe(1)
    const lines = stderr.split("\n").filter((l) => l.trim() !== "")
    expect(lines.length, stderr).toBe(1)
    expect(lines[0]).toContain("REPLAY_DIR")
    expect(lines[0]).toContain(missing)
    // checked before any storage is opened: nothing is created for a run that cannot start
    expect(fs.existsSync(path.join(scratch.dir, "missing")), "the stores were created anyway").toBe(false)
    expect(lines[0]).toMatch(/does not exist/)
    for (const text of [stdout, stderr]) {
      expect(text).not.toMatch(/^\s+at /m)
      expect(text).not.toMatch(/Error:|ReplayUnavailable|\.ts:\d+|\.js:\d+/)
    }
  }, 30_000)
})

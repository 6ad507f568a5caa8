import * as path from "node:path"
import { describe, expect, it } from "vitest"
import type { TickerSymbol } from "../src/domain/Ticker.js"
import { tradeJson } from "../src/domain/Trade.js"
import { getJson, startRoleAll, waitFor } from "./support/process.js"
import { simTrades } from "./support/sim.js"
import { logMessages, rawTradeLines, tradeCount, useScratch } from "./support/simRun.js"
import { query } from "./support/sqlite.js"
import { bySymbolThenId } from "./support/trades.js"

/**
 * The simulated market's aggregate trades end to end in one direct-mode process (`--role=all
 * SOURCE=sim SIM_TRADES_PER_SECOND`): stored in SQLite and the trades raw log exactly as generated,
 * consecutive ids per symbol, served on /agg-trades/latest.
 */

const SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
const SEED = 77
const TRADES_PER_SECOND = 3_000
const NO_BINANCE = "http://127.0.0.1:9"
const CONTRACT_FIELDS = ["symbol", "agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "trade_time", "is_buyer_maker", "source"]

const scratch = useScratch("sim-trades-e2e-")

describe("SOURCE=sim with trades end to end", () => {
  it("--role=all SOURCE=sim SIM_TRADES_PER_SECOND stores every published trade once, consecutive per symbol, and serves them on /agg-trades/latest", async () => {
    const dataDir = path.join(scratch.dir, "sim")
    const db = path.join(dataDir, "app.db")
    const rawDir = path.join(dataDir, "raw")
    const startMs = Math.floor(Date.now() / 1000) * 1000
    const { main, base } = await startRoleAll(NO_BINANCE, dataDir, {
      SOURCE: "sim",
      SIM_SEED: String(SEED),
      SIM_EVENTS_PER_SECOND: "10",
      SIM_TRADES_PER_SECOND: String(TRADES_PER_SECOND),
      SIM_START: new Date(startMs).toISOString(),
      SYMBOLS: SYMBOLS.join(",")
    })
    scratch.running.push(main)
    await waitFor(() => (tradeCount(db) >= 15_000 ? true : undefined), 30_000, "15,000 trades stored").catch((e: Error) => {
      throw new Error(`${e.message} (stored ${tradeCount(db)})\n${main.output().slice(-3000)}`)
    })

    // /agg-trades/latest: newest first, the contract's fields, source simulated
    for (const symbol of SYMBOLS) {
      const res = await getJson(`${base}/agg-trades/latest?symbol=${symbol}&limit=50`)
      expect(res?.status, JSON.stringify(res?.body)).toBe(200)
      const latest = res!.body as Array<Record<string, unknown>>
      expect(latest.length).toBe(50)
      for (const t of latest) {
        expect(Object.keys(t).sort()).toEqual([...CONTRACT_FIELDS].sort())
        expect(t).toMatchObject({ symbol, source: "simulated" })
      }
      const ids = latest.map((t) => Number(t.agg_trade_id))
      expect(ids).toEqual(ids.map((_, i) => ids[0]! - i)) // newest first, consecutive
    }
    const health = await getJson(`${base}/health`)
    expect(health?.status, JSON.stringify(health?.body)).toBe(200)
    expect(health!.body.components.producer).toMatchObject({ state: "up" })

    main.child.kill("SIGTERM")
    expect(await main.exited, main.output().slice(-3000)).toBe(0)
    const stopped = logMessages(main).filter((m) => m.message.startsWith("sim stopped after publishing"))
    expect(stopped.length, main.output().slice(-3000)).toBe(1)
    const published = Number(/ and (\d+) trade\(s\)/.exec(stopped[0]!.message)?.[1])
    expect(published).toBeGreaterThanOrEqual(15_000)
    expect(logMessages(main).filter((m) => m.logLevel === "ERROR" || m.logLevel === "FATAL")).toEqual([])

    // exactly the generator's first `published` trades, each once
    const generated = simTrades(
      { seed: SEED, eventsPerSecond: 10, symbols: SYMBOLS as Array<TickerSymbol>, startMicros: startMs * 1000 },
      TRADES_PER_SECOND,
      published
    )
    const rows = query(db, "SELECT symbol, agg_trade_id, price, quantity, trade_time_us FROM trades ORDER BY symbol, agg_trade_id")
    expect(rows.length).toBe(published)
    const expected = [...generated]
      .sort(bySymbolThenId)
      .map((t) => ({ symbol: t.symbol, agg_trade_id: t.id, price: t.price, quantity: t.quantity, trade_time_us: t.timeMicros }))
    expect(rows.map((r) => ({ ...r, agg_trade_id: Number(r.agg_trade_id), trade_time_us: Number(r.trade_time_us) }))).toEqual(expected)
    for (const symbol of SYMBOLS) {
      const ids = rows.filter((r) => r.symbol === symbol).map((r) => Number(r.agg_trade_id))
      expect(ids.every((x, i) => i === 0 || x === ids[i - 1]! + 1), `${symbol}: ids not consecutive`).toBe(true)
    }

    // the trades raw log: one line per trade, its contract JSON
    const lines = rawTradeLines(rawDir)
    expect(lines.length).toBe(published)
    expect([...lines].sort()).toEqual(generated.map(tradeJson).sort())
  }, 90_000)
})

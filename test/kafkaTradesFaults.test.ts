import { randomBytes } from "node:crypto"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import type { TickerSymbol } from "../src/domain/Ticker.js"
import { tradeJson } from "../src/domain/Trade.js"
import { committedOffsets, endOffsets, kafkaBootstrap, runScoped, sumOf } from "./support/kafka.js"
import { type RunningMain, runMain, waitFor } from "./support/process.js"
import { simTrades } from "./support/sim.js"
import { consumerLogs, logMessages, rawTradeLines, tradeCount, useScratch } from "./support/simRun.js"
import { query } from "./support/sqlite.js"
import { bySymbolThenId, tradeRow } from "./support/trades.js"

/**
 * Issue 10, "In Kafka mode, the trades topic gets the same tests as the prices topic": simulated
 * trades go through Kafka (`--role=producer SOURCE=sim SIM_TRADES_PER_SECOND`) while the consumer is
 * killed with SIGKILL three times, and every trade the producer published is stored exactly once, in
 * SQLite and in the raw log, with consecutive ids per symbol and nothing missing.
 */

const SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "LTCUSDT"]
const TRADES_PER_SECOND = 3_000
/** Stop the producer once the trades topic holds this many. */
const TARGET = 45_000
const KILL_AT = [0.2, 0.45, 0.7]
/** Not Binance: nothing may be fetched from it. */
const NO_BINANCE = "http://127.0.0.1:9"

const scratch = useScratch("kafka-trades-faults-")

describe("Kafka trades faults that must still hold", () => {
  it("simulated trades through Kafka, the consumer SIGKILLed 3 times while storing: every published trade stored once, none missing", async () => {
    const id = randomBytes(5).toString("hex")
    const topics = {
      TOPIC_NAME: `crypto_prices_test_${id}`,
      TRADES_TOPIC_NAME: `crypto_trades_test_${id}`,
      BARS_TOPIC_NAME: `crypto_klines_test_${id}`,
      CONSUMER_GROUP_ID: `crypto_consumer_test_${id}`
    }
    const common = { BROKER_MODE: "kafka", KAFKA_BOOTSTRAP_SERVERS: kafkaBootstrap(), HOST: "127.0.0.1", BINANCE_BASE_URL: NO_BINANCE, SYMBOLS: SYMBOLS.join(","), ...topics }
    const startMs = Math.floor(Date.now() / 1000) * 1000
    const simStart = new Date(startMs).toISOString()
    const db = path.join(scratch.dir, "store", "app.db")
    const rawDir = path.join(scratch.dir, "store", "raw")
    const role = (name: string, env: Record<string, string>) => {
      const p = runMain([`--role=${name}`], { ...common, ...env })
      scratch.running.push(p)
      return p
    }
    const producer = role("producer", {
      SOURCE: "sim",
      SIM_SEED: "10",
      SIM_START: simStart,
      SIM_EVENTS_PER_SECOND: "10",
      SIM_TRADES_PER_SECOND: String(TRADES_PER_SECOND),
      STORAGE_PATH: path.join(scratch.dir, "producer", "app.db")
    })
    const consumers: Array<RunningMain> = []
    const startConsumer = () => {
      const c = role("consumer", { STORAGE_PATH: db, RAW_DIR: rawDir })
      consumers.push(c)
      return c
    }
    const logs = () =>
      consumerLogs(consumers) +
      `\n--- producer ---\n${producer.output().slice(-3000)}`

    let consumer = startConsumer()
    const killedAt: Array<number> = []
    for (const share of KILL_AT) {
      const threshold = Math.round(TARGET * share)
      await waitFor(() => (tradeCount(db) >= threshold ? true : undefined), 60_000, `${threshold} trades stored before a kill`).catch((e: Error) => {
        throw new Error(`${e.message} (stored ${tradeCount(db)})\n${logs()}`)
      })
      consumer.child.kill("SIGKILL")
      expect(await consumer.exited).toBe("SIGKILL")
      killedAt.push(tradeCount(db))
      consumer = startConsumer()
    }

    // The producer stops once the topic holds TARGET trades; what it published is on the topic, once.
    await waitFor(async () => ((await runScoped(endOffsets(topics.TRADES_TOPIC_NAME)).then(sumOf)) >= TARGET ? true : undefined), 60_000, `${TARGET} trades on the topic`)
    producer.child.kill("SIGTERM")
    expect(await producer.exited, producer.output().slice(-3000)).toBe(0)
    const stopped = logMessages(producer).filter((m) => m.message.startsWith("sim stopped after publishing"))
    expect(stopped.length, producer.output().slice(-3000)).toBe(1)
    const published = Number(/ and (\d+) trade\(s\)/.exec(stopped[0]!.message)?.[1])
    expect(published).toBeGreaterThanOrEqual(TARGET)
    expect(await runScoped(endOffsets(topics.TRADES_TOPIC_NAME)).then(sumOf)).toBe(published)

    await waitFor(() => (tradeCount(db) >= published ? true : undefined), 90_000, `${published} trades stored`).catch((e: Error) => {
      throw new Error(`${e.message} (stored ${tradeCount(db)})\n${logs()}`)
    })
    await waitFor(() => (rawTradeLines(rawDir).length >= published ? true : undefined), 30_000, `${published} raw trade lines`)
    consumer.child.kill("SIGTERM")
    expect(await consumer.exited, consumer.output().slice(-3000)).toBe(0)
    killedAt.forEach((rows, i) => {
      expect(rows).toBeGreaterThanOrEqual(Math.round(TARGET * KILL_AT[i]!))
      expect(rows).toBeLessThan(published)
    })
    // stopped cleanly, the trades group committed everything it stored
    const ends = await runScoped(endOffsets(topics.TRADES_TOPIC_NAME))
    expect(await runScoped(committedOffsets(`${topics.CONSUMER_GROUP_ID}.trades`, topics.TRADES_TOPIC_NAME))).toEqual(ends)

    // Exactly the generator's first `published` trades: per symbol, consecutive ids, each once, same values.
    const generated = simTrades(
      { seed: 10, eventsPerSecond: 10, symbols: SYMBOLS as Array<TickerSymbol>, startMicros: startMs * 1000 },
      TRADES_PER_SECOND,
      published
    )
    const rows = query(
      db,
      "SELECT symbol, agg_trade_id, price, quantity, first_trade_id, last_trade_id, trade_time_us, is_buyer_maker, source FROM trades ORDER BY symbol, agg_trade_id"
    )
    expect(rows.length).toBe(published)
    const expected = [...generated].sort(bySymbolThenId).map(tradeRow)
    const normalised = rows.map((r) => ({ ...r, symbol: String(r.symbol), agg_trade_id: Number(r.agg_trade_id), first_trade_id: Number(r.first_trade_id), last_trade_id: Number(r.last_trade_id), trade_time_us: Number(r.trade_time_us), is_buyer_maker: Number(r.is_buyer_maker) }))
    expect(normalised.slice(0, 3)).toEqual(expected.slice(0, 3))
    expect(normalised).toEqual(expected)
    for (const symbol of SYMBOLS) {
      const ids = normalised.filter((r) => r.symbol === symbol).map((r) => r.agg_trade_id)
      expect(ids.every((x, i) => i === 0 || x === ids[i - 1]! + 1), `${symbol}: ids not consecutive`).toBe(true)
    }

    // The raw log: each trade once, as its contract JSON.
    const lines = rawTradeLines(rawDir)
    expect(lines.length).toBe(published)
    expect(new Set(lines).size).toBe(published)
    expect(new Set(lines)).toEqual(new Set(generated.map(tradeJson)))
    expect(logMessages(consumer).filter((m) => m.logLevel === "FATAL")).toEqual([])
  }, 240_000)
})

import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { committedOffsets, endOffsets, kafkaBootstrap, runScoped, sumOf, uniqueGroup, uniqueTopic } from "./support/kafka.js"
import { type RunningMain, runMain, waitFor } from "./support/process.js"
import { identityOf, rawLineCount, readRawLog, type SimDays, writeSimDays } from "./support/simDays.js"
import { consumerLogs, logMessages, useScratch } from "./support/simRun.js"
import { query, tickCount } from "./support/sqlite.js"

/**
 * Issue 8, "Faults that must still hold": 100,000 simulated events go through Kafka while the consumer
 * is killed with SIGKILL five times, and the stores end with each event exactly once: 100,000 rows in
 * SQLite and 100,000 lines in the JSONL raw log.
 *
 * The events are finite and exact: the first 100,000 events of the deterministic simulated market
 * (src/domain/SimMarket.ts), written as JSONL day files and published by `--role=producer
 * SOURCE=replay REPLAY_SPEED=0`. They straddle a UTC midnight, so the consumer writes two day files
 * (72,000 and 28,000 events, each day file larger than the 8 MiB the raw log reads back after a
 * restart).
 */

const TOTAL = 100_000
/** Keyed by symbol over the topic's 3 partitions: SOLUSDT → 0, LTCUSDT → 1, BTCUSDT and ETHUSDT → 2. */
const SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "LTCUSDT"]
/** Kill the consumer once the stored rows passed each of these shares of TOTAL. */
const KILL_AT = [0.15, 0.3, 0.45, 0.6, 0.75]

const scratch = useScratch("kafka-faults-")
let generated: SimDays

beforeAll(() => {
  generated = writeSimDays(
    path.join(scratch.dir, "recording"),
    { seed: 8, eventsPerSecond: 20, symbols: SYMBOLS, startMicros: Date.UTC(2026, 2, 1, 23, 0, 0) * 1000 },
    TOTAL
  )
})

const role = (name: string, env: Record<string, string>) => {
  const p = runMain([`--role=${name}`], { BROKER_MODE: "kafka", KAFKA_BOOTSTRAP_SERVERS: kafkaBootstrap(), HOST: "127.0.0.1", ...env })
  scratch.running.push(p)
  return p
}

/** What went wrong in the raw log, precisely: unparseable lines, duplicated and missing identities. */
const rawLogReport = (rawDir: string) => {
  const { lines } = readRawLog(rawDir)
  const torn: Array<string> = []
  const seen = new Map<string, Array<string>>()
  const changed: Array<string> = []
  for (const { file, line, text } of lines) {
    let id: string
    try {
      const e = JSON.parse(text) as { symbol: string; timestamp_utc: string }
      id = identityOf(e.symbol, e.timestamp_utc)
    } catch {
      torn.push(`${file}:${line} ${JSON.stringify(text.slice(0, 120))}${text.length > 120 ? "…" : ""} (${text.length} chars)`)
      continue
    }
    const at = `${file}:${line}`
    const where = seen.get(id)
    if (where === undefined) seen.set(id, [at])
    else where.push(at)
    const expected = generated.lines.get(id)
    if (expected !== undefined && expected !== text) changed.push(`${at} ${text} (recorded: ${expected})`)
  }
  const duplicated = [...seen].filter(([, at]) => at.length > 1)
  const missing = [...generated.lines.keys()].filter((id) => !seen.has(id))
  const unknown = [...seen.keys()].filter((id) => !generated.lines.has(id))
  return { lines, torn, seen, duplicated, missing, unknown, changed }
}

const describeRawLog = (r: ReturnType<typeof rawLogReport>) =>
  [
    `${r.lines.length} line(s), ${r.seen.size} distinct identities`,
    `${r.torn.length} line(s) that are not JSON: ${r.torn.slice(0, 10).join("; ")}`,
    `${r.duplicated.length} identities more than once: ${r.duplicated
      .slice(0, 10)
      .map(([id, at]) => `${id} at ${at.join(", ")}`)
      .join("; ")}${r.duplicated.length > 10 ? " …" : ""}`,
    `${r.missing.length} generated identities missing: ${r.missing.slice(0, 10).join(", ")}`,
    `${r.unknown.length} identities that were never generated: ${r.unknown.slice(0, 10).join(", ")}`,
    `${r.changed.length} line(s) differing from the recording: ${r.changed.slice(0, 3).join("; ")}`
  ].join("\n")

describe("Kafka faults that must still hold", () => {
  it("100,000 simulated events through Kafka, the consumer SIGKILLed 5 times while storing: exactly 100,000 rows and 100,000 JSONL lines", async () => {
    expect(generated.lines.size).toBe(TOTAL)
    expect([...generated.files].map(([day, lines]) => [day, lines.length])).toEqual([
      ["2026-03-01.jsonl", 72_000],
      ["2026-03-02.jsonl", 28_000]
    ])

    const topic = uniqueTopic()
    const group = uniqueGroup()
    const db = path.join(scratch.dir, "store", "app.db")
    const rawDir = path.join(scratch.dir, "store", "raw")
    const consumerEnv = { TOPIC_NAME: topic, CONSUMER_GROUP_ID: group, STORAGE_PATH: db, RAW_DIR: rawDir }
    const consumers: Array<RunningMain> = []
    const startConsumer = () => {
      const c = role("consumer", consumerEnv)
      consumers.push(c)
      return c
    }
    const logs = () => consumerLogs(consumers)

    // The producer replays the recording into a fresh topic as fast as Kafka takes it; the consumer
    // starts at the same time and stores into a fresh database and raw log.
    const producer = role("producer", {
      TOPIC_NAME: topic,
      SOURCE: "replay",
      REPLAY_DIR: path.join(scratch.dir, "recording"),
      REPLAY_SPEED: "0",
      STORAGE_PATH: path.join(scratch.dir, "producer", "app.db")
    })
    let consumer = startConsumer()

    // Five kills at spread-out moments, each while the consumer is storing (its row count moving).
    const killedAt: Array<number> = []
    for (const share of KILL_AT) {
      const threshold = Math.round(TOTAL * share)
      await waitFor(() => (tickCount(db) >= threshold ? true : undefined), 60_000, `${threshold} rows before a kill`).catch(
        (e: Error) => {
          throw new Error(`${e.message} (stored ${tickCount(db)})\n${logs()}\n--- producer ---\n${producer.output().slice(-3000)}`)
        }
      )
      consumer.child.kill("SIGKILL")
      expect(await consumer.exited).toBe("SIGKILL")
      killedAt.push(tickCount(db))
      consumer = startConsumer()
    }
    // every kill found the consumer past its threshold but not done
    killedAt.forEach((rows, i) => {
      expect(rows).toBeGreaterThanOrEqual(Math.round(TOTAL * KILL_AT[i]!))
      expect(rows).toBeLessThan(TOTAL)
    })

    // The producer published the whole recording, once: the topic holds exactly TOTAL messages.
    await waitFor(
      () => (logMessages(producer).some((m) => m.message.startsWith("replay finished:")) ? true : undefined),
      60_000,
      "the replay to finish"
    )
    expect(logMessages(producer).filter((m) => /^replay (finished|stopped)/.test(m.message)).map((m) => m.message)).toEqual([
      `replay finished: ${TOTAL} event(s) published, 0 malformed line(s) skipped, 2 file(s) read`
    ])
    await waitFor(async () => ((await runScoped(endOffsets(topic)).then(sumOf)) === TOTAL ? true : undefined), 30_000, `${TOTAL} messages on the topic`)
    producer.child.kill("SIGTERM")
    expect(await producer.exited, producer.output().slice(-3000)).toBe(0)

    // The last consumer catches up: every row, then the raw log (each batch reaches SQLite first).
    await waitFor(() => (tickCount(db) >= TOTAL ? true : undefined), 90_000, `${TOTAL} rows`).catch((e: Error) => {
      throw new Error(`${e.message} (stored ${tickCount(db)})\n${logs()}`)
    })
    await waitFor(() => (rawLineCount(rawDir) >= TOTAL ? true : undefined), 30_000, `${TOTAL} raw lines`).catch((e: Error) => {
      throw new Error(`${e.message} (${rawLineCount(rawDir)} lines)\n${describeRawLog(rawLogReport(rawDir))}`)
    })
    consumer.child.kill("SIGTERM")
    expect(await consumer.exited, consumer.output().slice(-3000)).toBe(0)
    // Stopped cleanly, the group has committed everything it stored: nothing is left to deliver again.
    const ends = await runScoped(endOffsets(topic))
    expect(Object.fromEntries(ends)).toEqual({ 0: 25_000, 1: 25_000, 2: 50_000 }) // every partition in play
    expect(await runScoped(committedOffsets(group, topic))).toEqual(ends)

    // SQLite: exactly TOTAL rows, one per generated identity, with the recorded values.
    expect(tickCount(db)).toBe(TOTAL)
    const rows = query(db, "SELECT symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time FROM ticks")
    expect(rows.length).toBe(TOTAL)
    const rowIds = new Set(rows.map((r) => `${String(r.symbol)}|${Number(r.ts_us)}`))
    expect(rowIds.size).toBe(TOTAL)
    const wrongRows = rows.filter((r) => {
      const line = generated.lines.get(`${String(r.symbol)}|${Number(r.ts_us)}`)
      if (line === undefined) return true
      const e = JSON.parse(line) as Record<string, string>
      return (
        e.timestamp_utc !== r.timestamp_utc ||
        e.lastPrice !== r.last_price ||
        e.priceChangePercent !== r.price_change_percent ||
        e.volume !== r.volume ||
        e.source !== r.source ||
        e.event_time !== r.event_time
      )
    })
    expect(wrongRows.slice(0, 5)).toEqual([])
    const perSymbol = query(db, "SELECT symbol, COUNT(*) AS n FROM ticks GROUP BY symbol ORDER BY symbol")
    expect(perSymbol).toEqual(SYMBOLS.slice().sort().map((symbol) => ({ symbol, n: TOTAL / SYMBOLS.length })))

    // JSONL: exactly TOTAL lines, each parses, each identity once, the same set as generated, by day.
    const report = rawLogReport(rawDir)
    const summary = `raw log after ${KILL_AT.length} SIGKILLs (at ${killedAt.join(", ")} rows):\n${describeRawLog(report)}`
    expect(report.torn, summary).toEqual([])
    expect(report.duplicated.map(([id]) => id), summary).toEqual([])
    expect(report.lines.length, summary).toBe(TOTAL)
    expect(report.missing, summary).toEqual([])
    expect(report.unknown, summary).toEqual([])
    expect(report.changed, summary).toEqual([])
    expect(report.seen.size).toBe(TOTAL)
    const byDay = new Map<string, number>()
    for (const { file } of report.lines) byDay.set(file, (byDay.get(file) ?? 0) + 1)
    expect(Object.fromEntries(byDay)).toEqual({ "2026-03-01.jsonl": 72_000, "2026-03-02.jsonl": 28_000 })
  }, 180_000)
})

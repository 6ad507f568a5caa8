import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { kafkaBootstrap, uniqueGroup, uniqueTopic } from "./support/kafka.js"
import { pgQuery } from "./support/pg.js"
import { type PgCluster, startPgCluster } from "./support/pgCluster.js"
import { freePort, getJson, type RunningMain, runMain, waitFor } from "./support/process.js"
import { type SimDays, writeSimDays } from "./support/simDays.js"
import { consumerLogs, logMessages, useScratch } from "./support/simRun.js"

/**
 * Issue 12 end to end: Kafka mode on PostgreSQL, as on several machines. Two consumers in one group
 * and two api processes share one database (a server of the test's own, so it can be restarted).
 * One consumer is SIGKILLed mid-stream and started again, then PostgreSQL is stopped (the api answers
 * 503, /health says the store is down) and started again. Every event ends stored exactly once, and
 * both api processes answer the same.
 */

const TOTAL = 40_000
const SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "LTCUSDT"]

const scratch = useScratch("kafka-pg-")
let generated: SimDays
let cluster: PgCluster

beforeAll(async () => {
  generated = writeSimDays(
    path.join(scratch.dir, "recording"),
    { seed: 12, eventsPerSecond: 20, symbols: SYMBOLS, startMicros: Date.UTC(2026, 3, 1, 22, 0, 0) * 1000 },
    TOTAL
  )
  cluster = await startPgCluster()
  await pgQuery(cluster.url("postgres"), "CREATE DATABASE crypto")
})
afterAll(() => cluster?.destroy())

const role = (name: string, env: Record<string, string>) => {
  const p = runMain([`--role=${name}`], {
    BROKER_MODE: "kafka",
    KAFKA_BOOTSTRAP_SERVERS: kafkaBootstrap(),
    HOST: "127.0.0.1",
    SOURCE: "poll",
    ...env
  })
  scratch.running.push(p)
  return p
}

const rowCount = async (url: string): Promise<number> => {
  try {
    return Number((await pgQuery(url, "SELECT count(*) AS n FROM ticks"))[0]!["n"])
  } catch {
    return 0 // not migrated yet, or the server is restarting
  }
}

const getText = async (url: string) => {
  const res = await fetch(url)
  return { status: res.status, text: await res.text() }
}

describe("Kafka mode on PostgreSQL: two consumers, two api processes, one database", () => {
  it("stores every event once through a consumer SIGKILL and a PostgreSQL restart; both api processes answer the same", async () => {
    const url = cluster.url("crypto")
    const topic = uniqueTopic()
    const group = uniqueGroup()
    const store = { STORE: "postgres", DATABASE_URL: url, DATABASE_POOL_SIZE: "4", TOPIC_NAME: topic, SYMBOLS: SYMBOLS.join(",") }
    const consumers: Array<RunningMain> = []
    const startConsumer = (n: number) => {
      const c = role("consumer", { ...store, CONSUMER_GROUP_ID: group, STORAGE_PATH: path.join(scratch.dir, `c${n}`, "app.db"), RAW_DIR: path.join(scratch.dir, `c${n}`, "raw") })
      consumers.push(c)
      return c
    }
    const logs = () => consumerLogs(consumers, 12)

    const apiPorts = [await freePort(), await freePort()]
    for (const [i, port] of apiPorts.entries()) role("api", { ...store, PORT: String(port), STORAGE_PATH: path.join(scratch.dir, `a${i}`, "app.db") })
    let first = startConsumer(1)
    startConsumer(2)
    const producer = role("producer", {
      TOPIC_NAME: topic,
      SOURCE: "replay",
      REPLAY_DIR: path.join(scratch.dir, "recording"),
      REPLAY_SPEED: "0",
      STORAGE_PATH: path.join(scratch.dir, "producer", "app.db")
    })

    const fail = (e: Error) => {
      throw new Error(`${e.message}\n${logs()}`)
    }
    // SIGKILL one consumer while both store; its partitions go to the other until it is back.
    await waitFor(async () => ((await rowCount(url)) >= TOTAL * 0.25 ? true : undefined), 90_000, "a quarter of the rows").catch(fail)
    first.child.kill("SIGKILL")
    expect(await first.exited).toBe("SIGKILL")
    first = startConsumer(3)

    // PostgreSQL goes away mid-stream: the api says so (503, JSON), /health reports the store down.
    await waitFor(async () => ((await rowCount(url)) >= TOTAL * 0.5 ? true : undefined), 90_000, "half the rows").catch(fail)
    cluster.stop()
    const down = await getText(`http://127.0.0.1:${apiPorts[0]}/trades/latest?symbol=BTCUSDT&limit=5`)
    expect(down.status).toBe(503)
    expect(JSON.parse(down.text)).toMatchObject({ error: "StoreUnavailable" })
    const health = await getJson(`http://127.0.0.1:${apiPorts[1]}/health`)
    expect(health?.status).toBe(503)
    expect(health?.body.components.store).toMatchObject({ state: "down" })
    expect(String(health?.body.components.store.detail)).toMatch(/ECONNREFUSED|connect|terminat|shut/i)
    await new Promise((r) => setTimeout(r, 2_000)) // the consumers' batches fail and wait meanwhile
    cluster.start()

    // Everything arrives, exactly once.
    await waitFor(async () => ((await rowCount(url)) >= TOTAL ? true : undefined), 120_000, `${TOTAL} rows`).catch(fail)
    await waitFor(
      () => (logMessages(producer).some((m) => m.message.startsWith("replay finished:")) ? true : undefined),
      30_000,
      "the replay to finish"
    )
    await new Promise((r) => setTimeout(r, 1_000)) // a late duplicate would show now
    const [{ n, ids }] = (await pgQuery(url, "SELECT count(*) AS n, count(DISTINCT (symbol, ts_us)) AS ids FROM ticks")) as Array<{ n: number; ids: number }>
    expect({ n, ids }).toEqual({ n: TOTAL, ids: TOTAL })
    const perSymbol = await pgQuery(url, "SELECT symbol, count(*) AS n FROM ticks GROUP BY symbol ORDER BY symbol")
    expect(perSymbol).toEqual(SYMBOLS.slice().sort().map((symbol) => ({ symbol, n: TOTAL / SYMBOLS.length })))
    const stats = await pgQuery(url, "SELECT symbol, events FROM symbol_stats ORDER BY symbol")
    expect(stats).toEqual(SYMBOLS.slice().sort().map((symbol) => ({ symbol, events: TOTAL / SYMBOLS.length })))
    // the stored values are the recorded ones
    const sample = await pgQuery(url, "SELECT symbol, ts_us, last_price FROM ticks ORDER BY ts_us, symbol LIMIT 200")
    for (const r of sample) {
      const line = generated.lines.get(`${String(r["symbol"])}|${Number(r["ts_us"])}`)
      expect(line, `row ${String(r["symbol"])} ${String(r["ts_us"])}`).toBeDefined()
      expect(JSON.parse(line!).lastPrice).toBe(r["last_price"])
    }

    // Both api processes answer the same, byte for byte, and say the store is up.
    for (const endpoint of ["/symbols", "/trades/latest?symbol=ETHUSDT&limit=50", "/candles?symbol=BTCUSDT&interval=1h&start=2026-04-01T00:00:00Z&end=2026-04-03T00:00:00Z"]) {
      const [a, b] = await Promise.all(apiPorts.map((port) => getText(`http://127.0.0.1:${port}${endpoint}`)))
      expect(a!.status, `${endpoint}: ${a!.text.slice(0, 300)}`).toBe(200)
      expect(b, endpoint).toEqual(a)
    }
    const healthAfter = await getJson(`http://127.0.0.1:${apiPorts[0]}/health`)
    expect(healthAfter?.body.components.store).toMatchObject({ state: "up", path: `postgres://postgres@127.0.0.1:${cluster.port}/crypto` })

    producer.child.kill("SIGTERM")
    for (const c of consumers) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGTERM")
    for (const c of consumers.slice(1)) expect(await c.exited, c.output().slice(-2000)).toBe(0)
  }, 300_000)
})

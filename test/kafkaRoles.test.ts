import { Effect, Schema, type Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { TickerEventJson } from "../src/domain/Ticker.js"
import { type FakeBinance, startFakeBinance } from "./support/fakeBinance.js"
import { kafkaBootstrap, makeEvent, makeTick, produceRaw, readAll, startBroker, uniqueGroup, uniqueTopic } from "./support/kafka.js"
import { loadKafkaScript } from "./support/kafkaGlobalSetup.js"
import { freePort, getJson, mainJs, type RunningMain, runMain, waitFor } from "./support/process.js"
import { query, tickCount } from "./support/sqlite.js"
import { connectSse, until } from "./support/sse.js"

let fake: FakeBinance
let dir: string
const running: Array<RunningMain> = []
beforeAll(async () => {
  if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does it first)")
  fake = await startFakeBinance()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "kafka-roles-"))
})
afterAll(async () => {
  for (const p of running) if (p.child.exitCode === null) p.child.kill("SIGKILL")
  await fake.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

/** One role process in Kafka mode on `topic`, logging JSON. */
const role = (name: string, topic: string, env: Record<string, string>) => {
  const p = runMain([`--role=${name}`], {
    BROKER_MODE: "kafka",
    KAFKA_BOOTSTRAP_SERVERS: kafkaBootstrap(),
    TOPIC_NAME: topic,
    BINANCE_BASE_URL: fake.url,
    HOST: "127.0.0.1",
    PORT: "0",
    ...env
  })
  running.push(p)
  return p
}

/** Events the producer reported as published (one JSON log line per cycle). */
const publishedBy = (p: RunningMain) =>
  p
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { message: string })
    .map((l) => /^published (\d+) ticker event/.exec(l.message))
    .reduce((n, m) => n + (m ? Number(m[1]) : 0), 0)

const stop = async (p: RunningMain, signal: NodeJS.Signals = "SIGTERM") => {
  const started = Date.now()
  p.child.kill(signal)
  const code = await p.exited
  return { code, ms: Date.now() - started }
}

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Effect.scoped(effect))

describe("Kafka mode: producer, consumer and api as separate processes", () => {
  it("stores every event the producer published exactly once, in per-symbol order, readable through the API", async () => {
    const topic = uniqueTopic()
    const db = path.join(dir, "flow", "app.db")
    const apiPort = await freePort()
    const healthPort = await freePort()
    const consumer = role("consumer", topic, {
      CONSUMER_GROUP_ID: uniqueGroup(),
      STORAGE_PATH: db,
      RAW_DIR: path.join(dir, "flow", "raw"),
      HEALTH_PORT: String(healthPort)
    })
    const api = role("api", topic, { STORAGE_PATH: db, PORT: String(apiPort), SYMBOLS: "BTCUSDT,ETHUSDT,SOLUSDT" })
    const producer = role("producer", topic, { SYMBOLS: "BTCUSDT,ETHUSDT,SOLUSDT", POLL_INTERVAL_SECONDS: "0.2" })

    await waitFor(() => (publishedBy(producer) >= 30 ? true : undefined), 30_000, "the producer to publish 30 events")
    const consumerHealth = await getJson(`http://127.0.0.1:${healthPort}/health`)
    expect(consumerHealth?.status).toBe(200)
    expect(consumerHealth?.body.components.broker).toMatchObject({ state: "up", mode: "kafka" })

    const stopped = await stop(producer)
    expect(stopped.code, producer.output()).toBe(0)
    expect(stopped.ms).toBeLessThan(5_000)
    const published = publishedBy(producer)

    const onTopic = await run(readAll(topic))
    expect(onTopic.length).toBe(published)
    for (const m of onTopic) {
      const event = Schema.decodeUnknownSync(TickerEventJson)(m.value)
      expect(m.key).toBe(event.symbol)
      expect(m.headers["contract-version"]).toBe("1")
    }

    await waitFor(() => (tickCount(db) === published ? true : undefined), 20_000, `${published} rows in SQLite`)
    const symbols = (await getJson(`http://127.0.0.1:${apiPort}/symbols`))!.body as Array<{ symbol: string; events: number }>
    expect(symbols.reduce((n, s) => n + s.events, 0)).toBe(published)

    for (const symbol of ["BTCUSDT", "ETHUSDT", "SOLUSDT"]) {
      const topicOrder = onTopic
        .filter((m) => m.key === symbol)
        .map((m) => (JSON.parse(m.value!) as { timestamp_utc: string }).timestamp_utc)
      expect([...topicOrder].sort()).toEqual(topicOrder)
      const res = await getJson(
        `http://127.0.0.1:${apiPort}/trades/range?symbol=${symbol}&start=2000-01-01&end=2100-01-01`
      )
      expect(res!.body.map((e: { timestamp_utc: string }) => e.timestamp_utc)).toEqual(topicOrder)
    }

    for (const p of [consumer, api]) {
      const result = await stop(p)
      expect(result.code, p.output()).toBe(0)
      expect(result.ms).toBeLessThan(5_000)
    }
  }, 90_000)

  it("GET /stream on the api role carries what the consumer stores (the api process stores nothing itself)", async () => {
    const topic = uniqueTopic()
    const db = path.join(dir, "live", "app.db")
    const apiPort = await freePort()
    const symbols = "BTCUSDT,ETHUSDT"
    const consumer = role("consumer", topic, {
      SOURCE: "sim",
      CONSUMER_GROUP_ID: uniqueGroup(),
      STORAGE_PATH: db,
      RAW_DIR: path.join(dir, "live", "raw"),
      TRADES_TOPIC_NAME: `${topic}.trades`,
      BARS_TOPIC_NAME: `${topic}.bars`
    })
    const api = role("api", topic, { STORAGE_PATH: db, PORT: String(apiPort), SYMBOLS: symbols })
    await waitFor(async () => ((await getJson(`http://127.0.0.1:${apiPort}/health/live`))?.status === 200 ? true : undefined), 30_000, "the api")
    const client = await connectSse(`http://127.0.0.1:${apiPort}/stream?kinds=ticker,trade`)
    expect(client.status).toBe(200)
    const producer = role("producer", topic, {
      SOURCE: "sim",
      SYMBOLS: symbols,
      SIM_EVENTS_PER_SECOND: "20",
      SIM_TRADES_PER_SECOND: "50",
      TRADES_TOPIC_NAME: `${topic}.trades`,
      BARS_TOPIC_NAME: `${topic}.bars`
    })
    await until(
      () => client.events.some((e) => e.event === "ticker") && client.events.filter((e) => e.event === "trade").length >= 20,
      60_000,
      "tickers and trades on /stream"
    )
    expect((await stop(producer)).code).toBe(0)
    const ids = client.events.map((e) => e.id)
    expect([...ids].sort((a, b) => a - b)).toEqual(ids)
    // What the stream carried is what the consumer stored, as the store's own JSON.
    const trades = client.events.filter((e) => e.event === "trade").map((e) => JSON.parse(e.data) as { symbol: string; agg_trade_id: number })
    for (const t of trades.slice(0, 20)) {
      const rows = query(db, "SELECT COUNT(*) AS n FROM trades WHERE symbol = ? AND agg_trade_id = ?", t.symbol, t.agg_trade_id)
      expect(Number(rows[0]!.n)).toBe(1)
    }
    client.close()
    for (const p of [consumer, api]) expect((await stop(p)).code).toBe(0)
  }, 120_000)

  it("a consumer killed with SIGKILL mid-stream and started again ends with exactly N rows", async () => {
    const topic = uniqueTopic()
    const group = uniqueGroup()
    const db = path.join(dir, "kill", "app.db")
    const rawDir = path.join(dir, "kill", "raw")
    const consumerEnv = { CONSUMER_GROUP_ID: group, STORAGE_PATH: db, RAW_DIR: rawDir, CONSUMER_BATCH_SIZE: "25" }
    const total = 4000
    await run(
      Effect.gen(function* () {
        const { broker } = yield* startBroker({ KAFKA_BOOTSTRAP_SERVERS: kafkaBootstrap(), TOPIC_NAME: topic })
        const first = role("consumer", topic, consumerEnv)
        // publish while the consumer runs; kill it once it has stored some but not all
        for (let i = 0; i < total; i += 100) {
          const batch = Array.from({ length: 100 }, (_, j) => makeTick(["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"][(i + j) % 4]!, i + j))
          yield* broker.publish(batch)
          if (i === 2000) {
            yield* Effect.promise(() => waitFor(() => (tickCount(db) > 0 ? true : undefined), 30_000, "first rows"))
            const killed = yield* Effect.promise(() => stop(first, "SIGKILL"))
            expect(killed.code).toBe("SIGKILL")
            role("consumer", topic, consumerEnv)
          }
        }
      })
    )
    await waitFor(() => (tickCount(db) === total ? true : undefined), 60_000, `${total} rows after the restart`)
    expect(query(db, "SELECT COUNT(DISTINCT symbol || ts_us) AS n FROM ticks")[0]!.n).toBe(total)
    // The raw log holds each event once too, even with a line torn by the kill.
    const rawIds = () =>
      fs
        .readdirSync(rawDir)
        .filter((f) => f.endsWith(".jsonl")) // trades have a directory of their own
        .flatMap((f) => fs.readFileSync(path.join(rawDir, f), "utf8").split("\n"))
        .flatMap((l) => {
          try {
            const e = JSON.parse(l) as { symbol: string; timestamp_utc: string }
            return [`${e.symbol}|${e.timestamp_utc}`]
          } catch {
            return []
          }
        })
    // each batch reaches SQLite first and the raw log right after
    await waitFor(() => (rawIds().length >= total ? true : undefined), 30_000, "the raw log")
    const ids = rawIds()
    expect(new Set(ids).size).toBe(total)
    expect(ids.length).toBe(total)
  }, 120_000)

  it("sends poison messages to the dead-letter topic and stores the good ones around them", async () => {
    const topic = uniqueTopic()
    const db = path.join(dir, "dlq", "app.db")
    const good = (i: number) => ({ key: "BTCUSDT", value: Schema.encodeSync(TickerEventJson)(makeEvent("BTCUSDT", i)) })
    const consumer = role("consumer", topic, { CONSUMER_GROUP_ID: uniqueGroup(), STORAGE_PATH: db, RAW_DIR: path.join(dir, "dlq", "raw") })
    await waitFor(() => (consumer.output().includes("consuming ticks into") ? true : undefined), 30_000, "the consumer")
    await run(
      Effect.gen(function* () {
        // the consumer role creates the topic; wait for it before writing around the adapter
        yield* Effect.promise(() =>
          waitFor(async () => ((await run(readAll(`${topic}.dlq`)).then(() => true, () => undefined)) ? true : undefined), 30_000, "topics")
        )
        yield* produceRaw(topic, [
          good(1),
          { key: "BTCUSDT", value: "{not json" },
          good(2),
          { key: "BTCUSDT", value: JSON.stringify({ symbol: "BTCUSDT", lastPrice: 1 }) },
          good(3)
        ])
      })
    )
    await waitFor(() => (tickCount(db) === 3 ? true : undefined), 30_000, "the three good events")
    const dlq = await run(readAll(`${topic}.dlq`))
    expect(dlq.map((m) => m.value)).toEqual(["{not json", JSON.stringify({ symbol: "BTCUSDT", lastPrice: 1 })])
    for (const m of dlq) expect(m.headers["dlq-reason"]).toBeTruthy()
    expect((await stop(consumer)).code).toBe(0)
  }, 90_000)

  it("two consumers in one group split the partitions and together store each event once", async () => {
    const topic = uniqueTopic()
    const group = uniqueGroup()
    const db = path.join(dir, "group", "app.db")
    const consumers = [1, 2].map((n) =>
      role("consumer", topic, { CONSUMER_GROUP_ID: group, STORAGE_PATH: db, RAW_DIR: path.join(dir, "group", `raw${n}`), TOPIC_PARTITIONS: "4" })
    )
    const symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "TRXUSDT"]
    await waitFor(
      // the ticks' group itself: each consumer also joins `${group}.trades` and `${group}.bars`
      () => (consumers.every((c) => c.output().includes(`joined consumer group ${group}"`)) ? true : undefined),
      60_000,
      "both consumers to join the group"
    )
    const total = 800
    await run(
      Effect.gen(function* () {
        const { broker } = yield* startBroker({ KAFKA_BOOTSTRAP_SERVERS: kafkaBootstrap(), TOPIC_NAME: topic, TOPIC_PARTITIONS: "4" })
        yield* broker.publish(Array.from({ length: total }, (_, i) => makeTick(symbols[i % symbols.length]!, i)))
      })
    )
    await waitFor(() => (tickCount(db) === total ? true : undefined), 60_000, `${total} rows from two consumers`)
    const rawLines = (n: number) => {
      const raw = path.join(dir, "group", `raw${n}`)
      return fs.existsSync(raw)
        ? fs.readdirSync(raw).filter((f) => f.endsWith(".jsonl")).flatMap((f) => fs.readFileSync(path.join(raw, f), "utf8").trimEnd().split("\n").filter(Boolean))
        : []
    }
    // each batch reaches SQLite first and the raw log right after
    await waitFor(() => (rawLines(1).length + rawLines(2).length >= total ? true : undefined), 30_000, "the raw logs")
    const perConsumer = [1, 2].map(rawLines)
    expect(perConsumer[0]!.length).toBeGreaterThan(0)
    expect(perConsumer[1]!.length).toBeGreaterThan(0)
    expect(perConsumer[0]!.length + perConsumer[1]!.length).toBe(total)
    for (const c of consumers) expect((await stop(c)).code).toBe(0)
  }, 120_000)

  it("loses nothing when the broker is stopped and restarted under a running producer", async () => {
    const kafka = await (await loadKafkaScript()).startKafka()
    try {
      const topic = uniqueTopic()
      const db = path.join(dir, "restart", "app.db")
      const env = { KAFKA_BOOTSTRAP_SERVERS: kafka.bootstrap }
      const consumer = role("consumer", topic, { ...env, CONSUMER_GROUP_ID: uniqueGroup(), STORAGE_PATH: db, RAW_DIR: path.join(dir, "restart", "raw") })
      const producer = role("producer", topic, { ...env, SYMBOLS: "BTCUSDT,ETHUSDT", POLL_INTERVAL_SECONDS: "0.25" })
      await waitFor(() => (publishedBy(producer) >= 10 ? true : undefined), 30_000, "publishing before the outage")
      await kafka.restart()
      const storedAtRestart = tickCount(db)
      const publishedAtRestart = publishedBy(producer)
      // the pipeline recovers by itself: events observed after the restart reach the store
      await waitFor(
        () => (tickCount(db) >= publishedAtRestart + 10 ? true : undefined),
        60_000,
        `events stored after the restart (stored ${storedAtRestart} before)`
      )
      expect(producer.child.exitCode).toBeNull()
      expect(consumer.child.exitCode).toBeNull()
      const stopped = await stop(producer)
      expect(stopped.code, producer.output()).toBe(0)
      const published = publishedBy(producer)
      await waitFor(() => (tickCount(db) === published ? true : undefined), 60_000, `${published} rows after the outage`).catch(
        (e: Error) => {
          throw new Error(
            `${e.message} (stored ${tickCount(db)})\n--- producer ---\n${producer.output().slice(-20000)}\n--- consumer ---\n${consumer.output().slice(-20000)}`
          )
        }
      )
      expect((await stop(consumer)).code).toBe(0)
    } finally {
      await kafka.stop()
    }
  }, 180_000)
})

describe("Kafka mode: --role=all in one process", () => {
  it("runs producer, consumer and API against Kafka", async () => {
    const topic = uniqueTopic()
    const port = await freePort()
    const all = role("all", topic, {
      CONSUMER_GROUP_ID: uniqueGroup(),
      PORT: String(port),
      POLL_INTERVAL_SECONDS: "0.3",
      STORAGE_PATH: path.join(dir, "all", "app.db"),
      RAW_DIR: path.join(dir, "all", "raw")
    })
    const latest = await waitFor(
      async () => {
        const res = await getJson(`http://127.0.0.1:${port}/trades/latest?symbol=BTCUSDT`)
        return res?.status === 200 && res.body.length >= 2 ? res.body : undefined
      },
      40_000,
      "events through Kafka and the API"
    )
    expect(latest[0].symbol).toBe("BTCUSDT")
    const health = await getJson(`http://127.0.0.1:${port}/health`)
    expect(health!.body.components.broker).toMatchObject({ state: "up", mode: "kafka" })
    const result = await stop(all)
    expect(result.code, all.output()).toBe(0)
    expect(result.ms).toBeLessThan(5_000)
  }, 90_000)
})

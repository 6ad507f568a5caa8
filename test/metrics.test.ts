import { NodeContext } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import * as net from "node:net"
import * as path from "node:path"
import parsePrometheusTextFormat, { type ParsedFamily } from "parse-prometheus-text-format"
import { describe, expect, it } from "vitest"
import type { TickerSymbol } from "../src/domain/Ticker.js"
import { type Trade, TRADE_WS_SOURCE } from "../src/domain/Trade.js"
import { Metrics } from "../src/status/Metrics.js"
import { StatusProbesLive } from "../src/status/StatusProbes.js"
import { sqliteLayer } from "../src/store/Sql.js"
import { TradeWriter } from "../src/store/TradeWriter.js"
import { kafkaBootstrap, produceRaw, uniqueGroup, uniqueTopic } from "./support/kafka.js"
import { freePort, getJson, type RunningMain, runMain, startRoleAll, waitFor } from "./support/process.js"
import { logMessages, tradeCount, useScratch } from "./support/simRun.js"
import { query, tickCount } from "./support/sqlite.js"

/**
 * GET /metrics of the built binary, read with a Prometheus text-format parser: its counters agree with
 * the rows stored, HTTP requests are counted per route template and status, the SQLite batch
 * histograms add up, it stays public with API_KEYS set, and in Kafka mode the consumer's HEALTH_PORT
 * serves it with the lag of each partition.
 */

const SYMBOLS = ["BTCUSDT", "ETHUSDT"]
const NO_BINANCE = "http://127.0.0.1:9"
const API_KEY = "metrics-test-key-0123456789"

const scratch = useScratch("metrics-")

interface Scrape {
  readonly status: number
  readonly contentType: string
  readonly families: ReadonlyArray<ParsedFamily>
  /** The same text with histograms read as their plain series (`x_bucket`, `x_sum`, `x_count`). */
  readonly series: ReadonlyArray<ParsedFamily>
}

const scrape = async (url: string, headers: Record<string, string> = {}): Promise<Scrape> => {
  const res = await fetch(url, { headers })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`${url} answered ${res.status}: ${text.slice(0, 300)}`)
  return parsed(text, res.status, res.headers.get("content-type") ?? "")
}

const parsed = (text: string, status = 200, contentType = ""): Scrape => ({
  status,
  contentType,
  families: parsePrometheusTextFormat(text),
  // the parser folds a labelled histogram into one entry and drops its count and sum: untyped, each series keeps its labels
  series: parsePrometheusTextFormat(text.replace(/^# TYPE (\S+) histogram$/gm, "# TYPE $1 untyped"))
})

const familyOf = (s: Scrape, name: string) => {
  const family = s.families.find((f) => f.name === name)
  if (family === undefined) throw new Error(`/metrics has no ${name}`)
  return family
}

const matching = (s: Scrape, name: string, labels: Record<string, string>) =>
  familyOf(s, name).metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))

/** The sum of the samples of `name` whose labels include `labels`. */
const total = (s: Scrape, name: string, labels: Record<string, string> = {}) =>
  matching(s, name, labels).reduce((n, m) => n + Number(m.value), 0)

/** A histogram's count and sum for the series whose labels include `labels`. */
const histogram = (s: Scrape, name: string, labels: Record<string, string>) => {
  expect(familyOf(s, name).type).toBe("HISTOGRAM")
  const read = (suffix: string) =>
    s.series
      .filter((f) => f.name === `${name}_${suffix}`) // one family per run of lines: each series on its own
      .flatMap((f) => f.metrics)
      .filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
      .reduce((n, m) => n + Number(m.value), 0)
  return { count: read("count"), sum: read("sum") }
}

const rowsBySymbol = (db: string, table: "ticks" | "trades") =>
  Object.fromEntries(query(db, `SELECT symbol, COUNT(*) AS n FROM ${table} GROUP BY symbol`).map((r) => [String(r.symbol), Number(r.n)]))

/**
 * A scrape with the tables as they were throughout it: the counts before and after it are equal, so
 * no batch was stored meanwhile (a batch is counted in the step of its COMMIT).
 */
const stableScrape = async (url: string, db: string) => {
  for (let attempt = 0; attempt < 200; attempt++) {
    const before = { ticks: rowsBySymbol(db, "ticks"), trades: rowsBySymbol(db, "trades") }
    const s = await scrape(url)
    const after = { ticks: rowsBySymbol(db, "ticks"), trades: rowsBySymbol(db, "trades") }
    if (JSON.stringify(before) === JSON.stringify(after)) return { scrape: s, rows: after, attempts: attempt + 1 }
  }
  throw new Error("the tables never stood still for a scrape")
}

describe("GET /metrics", () => {
  it("--role=all SOURCE=sim: stored counters equal the rows, HTTP requests per route and status, batch histograms, public with API_KEYS", async () => {
    const dataDir = path.join(scratch.dir, "direct")
    const db = path.join(dataDir, "app.db")
    const { base, main } = await startRoleAll(NO_BINANCE, dataDir, {
      SOURCE: "sim",
      SIM_SEED: "11",
      SIM_EVENTS_PER_SECOND: "20",
      SIM_TRADES_PER_SECOND: "300",
      SYMBOLS: SYMBOLS.join(","),
      // few commits a second, so the tables often stand still for a scrape
      CONSUMER_BATCH_WINDOW_MS: "400",
      API_KEYS: API_KEY
    })
    scratch.running.push(main)
    await waitFor(() => (tickCount(db) >= 30 && tradeCount(db) >= 500 ? true : undefined), 30_000, "ticks and trades stored")

    // requests to count: a keyed endpoint with and without its key, an unknown path, /health
    const withKey = { "x-api-key": API_KEY }
    for (let i = 0; i < 3; i++) expect((await fetch(`${base}/trades/latest?symbol=BTCUSDT&limit=5`, { headers: withKey })).status).toBe(200)
    for (let i = 0; i < 2; i++) expect((await fetch(`${base}/trades/latest?symbol=BTCUSDT&limit=${i + 1}`)).status).toBe(401)
    expect((await fetch(`${base}/no/such/path?x=1`, { headers: withKey })).status).toBe(404)
    expect((await fetch(`${base}/health`)).status).toBe(200)

    // public: no key, answered in the text format
    const first = await scrape(`${base}/metrics`)
    expect(first.status).toBe(200)
    expect(first.contentType.startsWith("text/plain; version=0.0.4")).toBe(true)

    const { attempts, rows, scrape: s } = await stableScrape(`${base}/metrics`, db)
    const scrapes = 1 + attempts

    // stored = rows, per kind and symbol; in direct mode nothing is received twice
    for (const symbol of SYMBOLS) {
      const ticks = { kind: "ticker", source: "simulated", symbol }
      const trades = { kind: "trade", source: "simulated", symbol }
      expect(rows.ticks[symbol]).toBeGreaterThan(0)
      expect(total(s, "csp_events_stored_total", ticks)).toBe(rows.ticks[symbol])
      expect(total(s, "csp_events_stored_total", trades)).toBe(rows.trades[symbol])
      expect(total(s, "csp_events_received_total", ticks)).toBe(rows.ticks[symbol])
      expect(total(s, "csp_events_received_total", trades)).toBe(rows.trades[symbol])
      expect(total(s, "csp_events_published_total", ticks)).toBeGreaterThanOrEqual(rows.ticks[symbol]!)
      expect(total(s, "csp_events_published_total", trades)).toBeGreaterThanOrEqual(rows.trades[symbol]!)
    }
    expect(familyOf(s, "csp_events_dead_lettered_total").metrics).toEqual([])

    // every received event went through one SQLite batch, timed
    for (const kind of ["ticker", "trade"]) {
      const size = histogram(s, "csp_sqlite_batch_size_events", { kind })
      const duration = histogram(s, "csp_sqlite_batch_duration_seconds", { kind })
      expect(size.count).toBeGreaterThan(0)
      expect(size.sum).toBe(total(s, "csp_events_received_total", { kind }))
      expect(duration.count).toBe(size.count)
      expect(duration.sum).toBeGreaterThan(0)
      expect(duration.sum).toBeLessThan(size.count) // well under a second per batch
    }

    // HTTP: the route template, never the URL; the status sent
    const http = (route: string, status: string) => total(s, "csp_http_requests_total", { method: "GET", route, status })
    expect(http("/trades/latest", "200")).toBe(3)
    expect(http("/trades/latest", "401")).toBe(2)
    expect(http("unmatched", "404")).toBe(1)
    expect(http("/health", "200")).toBe(1)
    expect(http("/metrics", "200")).toBe(scrapes - 1) // a scrape is counted once it is answered
    expect(histogram(s, "csp_http_request_duration_seconds", { route: "/trades/latest", status: "200" }).count).toBe(3)
    const routes = new Set(familyOf(s, "csp_http_requests_total").metrics.map((m) => m.labels?.route))
    expect([...routes].sort()).toEqual(["/health", "/health/live", "/metrics", "/trades/latest", "unmatched"]) // /health/live: startRoleAll waited on it

    // scrape-time gauges: freshness per kind and symbol, the in-process queues
    for (const symbol of SYMBOLS) {
      for (const kind of ["ticker", "trade"]) {
        const [age] = matching(s, "csp_newest_event_age_seconds", { kind, symbol })
        expect(Number(age?.value)).toBeGreaterThanOrEqual(0)
        expect(Number(age?.value)).toBeLessThan(30)
      }
    }
    expect(matching(s, "csp_queue_depth_events", {}).map((m) => m.labels?.kind).sort()).toEqual(["bar", "ticker", "trade"])
    // prom-client's process metrics come along
    expect(total(s, "process_resident_memory_bytes")).toBeGreaterThan(0)

    main.child.kill("SIGTERM")
    expect(await main.exited, main.output().slice(-3000)).toBe(0)
    expect(logMessages(main).filter((m) => m.logLevel === "ERROR" || m.logLevel === "FATAL")).toEqual([])
  }, 90_000)

  it("Kafka mode: producer and consumer serve /metrics on HEALTH_PORT; stored and dead-lettered counters, lag per partition", async (ctx) => {
    const bootstrap = kafkaBootstrap()
    if (!(await reachable(bootstrap))) ctx.skip() // KAFKA_BOOTSTRAP_SERVERS points nowhere: the Kafka tests are not run
    const dataDir = path.join(scratch.dir, "kafka")
    const db = path.join(dataDir, "app.db")
    const topics = { TOPIC_NAME: uniqueTopic(), TRADES_TOPIC_NAME: uniqueTopic(), BARS_TOPIC_NAME: uniqueTopic() }
    const common = {
      BROKER_MODE: "kafka",
      KAFKA_BOOTSTRAP_SERVERS: bootstrap,
      ...topics,
      SOURCE: "sim",
      SYMBOLS: SYMBOLS.join(","),
      BINANCE_BASE_URL: NO_BINANCE,
      HOST: "127.0.0.1",
      PORT: "0"
    }
    const [consumerPort, producerPort] = [await freePort(), await freePort()]
    const role = (name: string, env: Record<string, string>) => {
      const p = runMain([`--role=${name}`], { ...common, ...env })
      scratch.running.push(p)
      return p
    }
    const consumer = role("consumer", {
      CONSUMER_GROUP_ID: uniqueGroup(),
      STORAGE_PATH: db,
      RAW_DIR: path.join(dataDir, "raw"),
      HEALTH_PORT: String(consumerPort)
    })
    const producer = role("producer", {
      SIM_SEED: "5",
      SIM_EVENTS_PER_SECOND: "20",
      SIM_TRADES_PER_SECOND: "200",
      HEALTH_PORT: String(producerPort)
    })
    await waitFor(() => (tickCount(db) >= 20 && tradeCount(db) >= 200 ? true : undefined), 60_000, "events through Kafka").catch((e: Error) => {
      throw new Error(`${e.message}\n${consumer.output().slice(-2000)}\n${producer.output().slice(-2000)}`)
    })
    // one invalid message on the ticks topic: dead-lettered, keyed by a configured symbol
    await Effect.runPromise(produceRaw(topics.TOPIC_NAME, [{ key: "BTCUSDT", value: "{not json" }]))

    const produced = await scrape(`http://127.0.0.1:${producerPort}/metrics`)
    expect(produced.status).toBe(200)
    expect(total(produced, "csp_events_published_total", { kind: "trade" })).toBeGreaterThan(0)

    expect((await stopped(producer)).code).toBe(0)
    const published = publishedBy(producer)
    await waitFor(() => (tickCount(db) === published.ticks && tradeCount(db) === published.trades ? true : undefined), 30_000, "every published event stored")
    const deadLettered = async () => {
      const s = await scrape(`http://127.0.0.1:${consumerPort}/metrics`)
      return total(s, "csp_events_dead_lettered_total", { kind: "ticker" }) === 1 ? s : undefined
    }
    await waitFor(deadLettered, 30_000, "the invalid message dead-lettered")
    // the lag is the first offset not yet acknowledged: it reaches 0 once the last commit is through
    const s = await waitFor(
      async () => {
        const s = await scrape(`http://127.0.0.1:${consumerPort}/metrics`)
        const lags = matching(s, "csp_consumer_lag_messages", {})
        return lags.length > 0 && lags.every((m) => Number(m.value) === 0) ? s : undefined
      },
      30_000,
      "the consumer caught up"
    )
    expect(total(s, "csp_events_stored_total", { kind: "ticker" })).toBe(published.ticks)
    expect(total(s, "csp_events_stored_total", { kind: "trade" })).toBe(published.trades)
    expect(matching(s, "csp_events_dead_lettered_total", { kind: "ticker", source: "unknown", symbol: "BTCUSDT" }).length).toBe(1)
    // per partition of the consumed topics: the symbols are the keys, so one or two partitions each
    const lagged = matching(s, "csp_consumer_lag_messages", {})
    for (const topic of [topics.TOPIC_NAME, topics.TRADES_TOPIC_NAME]) {
      const partitions = lagged.filter((m) => m.labels?.topic === topic).map((m) => Number(m.labels?.partition))
      expect(partitions.length).toBeGreaterThan(0)
      for (const p of partitions) expect(Number.isInteger(p) && p >= 0).toBe(true)
    }
    // Caught up and connected: healthy. A component may report a passing outage first (a CI run once saw
    // one 503 here, e.g. kafkajs restarting a consumer on a loaded broker): it must end within the wait.
    const unhealthy: Array<string> = []
    const healthy = await waitFor(
      async () => {
        const health = await getJson(`http://127.0.0.1:${consumerPort}/health`)
        if (health?.status === 200) return true
        unhealthy.push(`${health?.status}: ${JSON.stringify(health?.body)}`)
        return undefined
      },
      30_000,
      "/health 200 from the caught-up consumer"
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${unhealthy.slice(-3).join("\n")}\n${consumer.output().slice(-3000)}`)
    })
    if (unhealthy.length > 0) console.warn(`the consumer's /health answered ${unhealthy.length} time(s) before 200:\n${unhealthy[0]}`)
    expect(healthy).toBe(true)
    expect((await stopped(consumer)).code).toBe(0)
  }, 150_000)

  it("trade gaps: counted where TradeWriter records and settles them; csp_trade_gap_ids read from trade_gaps", async () => {
    const db = path.join(scratch.dir, "gaps.db")
    const symbol = "BTCUSDT" as TickerSymbol
    const trade = (id: number): Trade => ({
      symbol,
      id,
      price: "68000.10000000",
      quantity: "0.01000000",
      firstTradeId: id,
      lastTradeId: id,
      timeMicros: Date.now() * 1000 - (10 - id) * 1000,
      isBuyerMaker: false,
      source: TRADE_WS_SOURCE
    })
    const text = await Effect.gen(function* () {
      const writer = yield* TradeWriter
      yield* writer.storeBatch([trade(1), trade(2), trade(6), trade(7)]) // ids 3..5 missing
      yield* writer.storeBatch([trade(7)]) // a redelivery: nothing new
      yield* writer.settleGap({ symbol, fromId: 3, toId: 5 }, [
        { fromId: 3, toId: 4, state: "repaired" },
        { fromId: 5, toId: 5, state: "unrepairable", reason: "older than Binance serves" }
      ], new Date().toISOString())
      return (yield* (yield* Metrics).exposition).text
    }).pipe(
      Effect.provide(StatusProbesLive.pipe(Layer.provideMerge(TradeWriter.Default), Layer.provideMerge(sqliteLayer(db)), Layer.provideMerge(Metrics.Default))),
      Effect.scoped,
      Effect.provide(NodeContext.layer),
      Effect.runPromise
    )
    const s = parsed(text)
    expect(total(s, "csp_events_stored_total", { kind: "trade", source: TRADE_WS_SOURCE, symbol })).toBe(4)
    expect(total(s, "csp_trade_gaps_found_total", { symbol })).toBe(1)
    const ids = (outcome: string) => total(s, "csp_trade_gap_ids_total", { symbol, outcome })
    expect([ids("found"), ids("repaired"), ids("unrepairable")]).toEqual([3, 2, 1])
    const state = (state: string) => total(s, "csp_trade_gap_ids", { symbol, state })
    expect([state("missing"), state("repaired"), state("unrepairable")]).toEqual([0, 2, 1])
    expect(histogram(s, "csp_sqlite_batch_size_events", { kind: "trade" })).toMatchObject({ count: 2, sum: 5 })
    const [age] = matching(s, "csp_newest_event_age_seconds", { kind: "trade", symbol })
    expect(Number(age?.value)).toBeLessThan(60)
  })
})

/** Whether something accepts TCP connections at the first `host:port` of `bootstrap`. */
const reachable = (bootstrap: string) =>
  new Promise<boolean>((resolve) => {
    const [host, port] = bootstrap.split(",")[0]!.split(":")
    const socket = net.connect({ host: host!, port: Number(port) })
    socket.setTimeout(2000)
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
    socket.once("timeout", () => {
      socket.destroy()
      resolve(false)
    })
  })

const stopped = async (p: RunningMain) => {
  p.child.kill("SIGTERM")
  return { code: await p.exited }
}

/** What the sim producer said it published, in its last line. */
const publishedBy = (p: RunningMain) => {
  const line = logMessages(p).find((m) => m.message.startsWith("sim stopped after publishing"))
  const m = /publishing (\d+) event\(s\) and (\d+) trade\(s\)/.exec(line?.message ?? "")
  if (m === null) throw new Error(`the producer did not say what it published:\n${p.output().slice(-2000)}`)
  return { ticks: Number(m[1]), trades: Number(m[2]) }
}

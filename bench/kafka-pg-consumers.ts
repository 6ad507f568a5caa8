/**
 * Kafka end to end on PostgreSQL (issue 12): sustained events/s of one `--role=consumer` against two
 * in one consumer group, writing one PostgreSQL database (STORE=postgres), in the same run.
 *
 * The same `--events` (200,000) events of the simulated market (`--symbols` 10) are published once
 * into a topic of `--partitions` (6) partitions by `--role=producer SOURCE=replay REPLAY_SPEED=0`
 * (from JSONL day files the bench writes), on a local Apache Kafka 4.1 the bench starts itself
 * (scripts/kafka.mjs). Then, per variant and round (`--rounds` 2, interleaved): a fresh database on the
 * server (`--server`), a fresh consumer group; the consumers start, and the bench samples
 * `count(*) FROM ticks` every 250 ms. The figure is the drain rate between 10 % and 90 % of the
 * events stored (start-up and the tail excluded). Every run is checked: exactly `--events` rows.
 *
 *   node dist/bench/bench/kafka-pg-consumers.js [--events 200000] [--symbols 10] [--partitions 6] [--rounds 2]
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { parseArgs } from "node:util"
import { Kafka, logLevel } from "kafkajs"
import pg from "pg"
import { makeSimMarket } from "../src/domain/SimMarket.js"
import type { TickerSymbol } from "../src/domain/Ticker.js"
import { fmt, machineLine, recordResults, repoRoot, runBench, sleep, transcript } from "./lib.js"
import { median, perSecond, removeDir, type RoleProcess, startRole, symbolsOf, tempDir, thousands, toMarkdown, track } from "./pipeline.js"

const { values: args } = parseArgs({
  options: {
    events: { type: "string", default: "200000" },
    symbols: { type: "string", default: "10" },
    partitions: { type: "string", default: "6" },
    rounds: { type: "string", default: "2" },
    server: { type: "string", default: process.env["PG_TEST_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres" }
  }
})
const events = Number(args.events)
const partitions = Number(args.partitions)
const rounds = Number(args.rounds)
const symbols = symbolsOf(Number(args.symbols))

const onServer = async <A>(url: string, f: (client: pg.Client) => Promise<A>): Promise<A> => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end()
  }
}

const databaseUrl = (name: string) => {
  const url = new URL(args.server)
  url.pathname = `/${name}`
  return url.toString()
}

const rowCount = (url: string) =>
  onServer(url, async (c) => Number((await c.query("SELECT count(*) AS n FROM ticks")).rows[0].n)).catch(() => 0)

/** The first `events` sim events as JSONL day files (what the raw log would hold). */
const writeRecording = (dir: string) => {
  const market = makeSimMarket({ seed: 12, eventsPerSecond: 1000, symbols: symbols as ReadonlyArray<TickerSymbol>, startMicros: Date.UTC(2026, 5, 1) * 1000 })
  const files = new Map<string, Array<string>>()
  for (let i = 0; i < events; i++) {
    const { event, tsMicros } = market.next()
    const day = `${new Date(Math.floor(tsMicros / 1000)).toISOString().slice(0, 10)}.jsonl`
    let lines = files.get(day)
    if (lines === undefined) files.set(day, (lines = []))
    lines.push(JSON.stringify(event))
  }
  fs.mkdirSync(dir, { recursive: true })
  for (const [day, lines] of files) fs.writeFileSync(path.join(dir, day), `${lines.join("\n")}\n`)
}

const main = async () => {
  const out = transcript()
  const print = out.print
  print("bench: Kafka end to end on PostgreSQL: one consumer vs two in one group, draining the same topic into one database")
  print(machineLine())
  const script = (await import(pathToFileURL(path.join(repoRoot, "scripts", "kafka.mjs")).href)) as {
    startKafka: (options?: { readonly partitions?: number }) => Promise<{ readonly bootstrap: string; readonly stop: () => Promise<void> }>
  }
  const kafka = await script.startKafka({ partitions })
  const dir = tempDir("kafka-pg-consumers")
  const running: Array<RoleProcess> = []
  try {
    const topic = `bench_pg_${Date.now()}`
    const common = { BROKER_MODE: "kafka", KAFKA_BOOTSTRAP_SERVERS: kafka.bootstrap, TOPIC_NAME: topic, TOPIC_PARTITIONS: String(partitions), SOURCE: "poll", SYMBOLS: symbols.join(",") }
    writeRecording(path.join(dir, "recording"))
    const producer = track(
      startRole("producer", "producer", { ...common, SOURCE: "replay", REPLAY_DIR: path.join(dir, "recording"), REPLAY_SPEED: "0", STORAGE_PATH: path.join(dir, "p", "app.db") })
    )
    running.push(producer)
    await producer.waitForLine((l) => l.message.startsWith("replay finished:"), 300_000, "the replay to finish")
    // "finished" means handed to the producer's outbox: stop it only once Kafka holds every event
    const admin = new Kafka({ clientId: "bench", brokers: [kafka.bootstrap], logLevel: logLevel.NOTHING }).admin()
    await admin.connect()
    try {
      const deadline = Date.now() + 120_000
      let onTopic = 0
      while ((onTopic = (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0)) < events) {
        if (Date.now() > deadline) throw new Error(`the topic holds ${onTopic} events, expected ${events}`)
        await sleep(250)
      }
    } finally {
      await admin.disconnect()
    }
    await producer.stop()
    print(`input: ${thousands(events)} sim events, ${symbols.length} symbols, on a topic of ${partitions} partitions (published before the consumers start); ${rounds} rounds`)

    const rates = new Map<number, Array<number>>([[1, []], [2, []]])
    for (let round = 1; round <= rounds; round++) {
      for (const consumers of [1, 2]) {
        const name = `cs_bench_kafka_${Date.now()}`
        await onServer(args.server, (c) => c.query(`CREATE DATABASE ${name}`))
        const url = databaseUrl(name)
        const group = `bench_pg_group_${Date.now()}`
        const roles = Array.from({ length: consumers }, (_, i) =>
          track(
            startRole(`consumer${i + 1}`, "consumer", {
              ...common,
              CONSUMER_GROUP_ID: group,
              STORE: "postgres",
              DATABASE_URL: url,
              STORAGE_PATH: path.join(dir, `c${i}`, "app.db"),
              RAW_DIR: path.join(dir, `c${i}-${round}-${consumers}`, "raw")
            })
          )
        )
        running.push(...roles)
        try {
          const samples: Array<{ at: number; rows: number }> = []
          const deadline = Date.now() + 600_000
          for (;;) {
            const rows = await rowCount(url)
            samples.push({ at: performance.now(), rows })
            if (rows >= events || Date.now() > deadline) break
            await sleep(250)
          }
          const at = (share: number) => samples.find((s) => s.rows >= events * share)!
          const [from, to] = [at(0.1), at(0.9)]
          const rate = ((to.rows - from.rows) / (to.at - from.at)) * 1000
          await sleep(1000)
          const final = await rowCount(url)
          if (final !== events) throw new Error(`${consumers} consumer(s): ${final} rows stored, expected ${events} (samples: ${samples.slice(-5).map((s) => s.rows).join(", ")}; ${samples.length} samples)`)
          rates.get(consumers)!.push(rate)
          print(`round ${round}: ${consumers} consumer(s): ${perSecond(rate)} (10 %..90 % of the events), ${thousands(final)} rows, each once`)
        } finally {
          await Promise.all(roles.map((r) => r.stop()))
          await onServer(args.server, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
        }
      }
    }
    const one = median(rates.get(1)!)
    const two = median(rates.get(2)!)
    print("")
    print("| consumers | median events/s | × one consumer |")
    print("|---|---:|---:|")
    print(`| 1 | ${perSecond(one)} | 1.00 |`)
    print(`| 2 | ${perSecond(two)} | ${fmt(two / one, 2)} |`)
    recordResults("kafka-pg-consumers", toMarkdown(out.lines))
    return true
  } finally {
    for (const r of running) r.kill()
    await kafka.stop()
    removeDir(dir)
  }
}

runBench("kafka-pg-consumers", main)

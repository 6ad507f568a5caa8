/**
 * Store path on PostgreSQL (issue 12): events per second through the consumer's sinks as
 * `--role=all STORE=postgres` wires them (src/app/Roles.ts SinkLive: fanOut of the database sink and
 * the JSONL sink, over src/store/Store.ts postgresStore), fed `Tick`s in batches of `--batch` (500),
 * against a plain `pg` loop doing the same batched inserts into the same `ticks` table: one
 * multi-row `INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING` per batch in a transaction. Goal: sinks
 * ≥ `--target` (0.8) × plain. Also printed: the plain loop with the product's statement shape (the
 * batch as `unnest` arrays), the fairer comparison of the work beyond the insert itself.
 *
 * Input: `--events` (50,000) ticks of the simulated market over `--symbols` (10) at `--rate` (50,000)
 * events/s of simulated time. Each run gets a new database on the server (`--server`, default the
 * local postgres://postgres@127.0.0.1:5432), migrated by the product's own pgLayer, and a fresh raw
 * dir; only the writes are timed. Variants are interleaved in each of `--rounds` (3) rounds; medians.
 * Every run is checked: `ticks` holds every event.
 *
 *   node dist/bench/bench/pg-store-path.js [--events 50000] [--symbols 10] [--batch 500] [--rounds 3] [--target 0.8]
 */
import { NodeContext } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { randomBytes } from "node:crypto"
import * as path from "node:path"
import { parseArgs } from "node:util"
import pg from "pg"
import type { Tick } from "../src/domain/Ticker.js"
import { Health } from "../src/status/Health.js"
import { makeJsonlSink } from "../src/store/JsonlSink.js"
import { makeSqliteSink } from "../src/store/SqliteSink.js"
import { postgresStore } from "../src/store/Store.js"
import { fanOut } from "../src/store/TickSink.js"
import { fmt, machineLine, recordResults, runBench, transcript } from "./lib.js"
import { jsonlLines, median, perSecond, removeDir, simTicks, symbolsOf, tempDir, thousands, toMarkdown } from "./pipeline.js"

const { values: args } = parseArgs({
  options: {
    events: { type: "string", default: "50000" },
    symbols: { type: "string", default: "10" },
    batch: { type: "string", default: "500" },
    rounds: { type: "string", default: "3" },
    rate: { type: "string", default: "50000" },
    target: { type: "string", default: "0.8" },
    server: { type: "string", default: process.env["PG_TEST_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres" }
  }
})
const events = Number(args.events)
const batch = Number(args.batch)
const rounds = Number(args.rounds)
const rate = Number(args.rate)
const target = Number(args.target)
const symbols = symbolsOf(Number(args.symbols))

const admin = async (text: string) => {
  const client = new pg.Client({ connectionString: args.server })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

/** A new database, migrated by the product (so the schema and indexes are the product's), and its URL. */
const freshDatabase = async () => {
  const name = `cs_bench_${randomBytes(4).toString("hex")}`
  await admin(`CREATE DATABASE ${name}`)
  const url = new URL(args.server)
  url.pathname = `/${name}`
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) }
}

const rowsIn = async (url: string) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return Number((await client.query("SELECT count(*) AS n FROM ticks")).rows[0].n)
  } finally {
    await client.end()
  }
}

const COLUMNS = "symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time, ingested_at"

/** A plain node `pg` loop: one transaction per batch around `insert`; the time of the writes (ms). */
const plainLoop = async (url: string, ticks: ReadonlyArray<Tick>, insert: (client: pg.Client, chunk: ReadonlyArray<Tick>, ingestedAt: string) => Promise<unknown>) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const ingestedAt = new Date().toISOString()
    const started = performance.now()
    for (let i = 0; i < ticks.length; i += batch) {
      await client.query("BEGIN")
      await insert(client, ticks.slice(i, i + batch), ingestedAt)
      await client.query("COMMIT")
    }
    return performance.now() - started
  } finally {
    await client.end()
  }
}

/** The baseline: one multi-row INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING per batch. */
const plain = (url: string, ticks: ReadonlyArray<Tick>) =>
  plainLoop(url, ticks, (client, chunk, ingestedAt) => {
    const params: Array<unknown> = []
    const rows = chunk.map((t) => {
      const base = params.length
      params.push(t.symbol, t.tsMicros, t.event.timestamp_utc, t.event.lastPrice, t.event.priceChangePercent, t.event.volume, t.event.source, t.event.event_time ?? null, ingestedAt)
      return `(${Array.from({ length: 9 }, (_, k) => `$${base + k + 1}`).join(", ")})`
    })
    return client.query(`INSERT INTO ticks (${COLUMNS}) VALUES ${rows.join(", ")} ON CONFLICT DO NOTHING`, params)
  })

/**
 * The baseline in the product's own statement shape: the batch as nine arrays through `unnest`, one
 * INSERT … ON CONFLICT DO NOTHING per batch (9 parameters, one plan, whatever the batch size).
 */
const plainUnnest = (url: string, ticks: ReadonlyArray<Tick>) =>
  plainLoop(url, ticks, (client, chunk, ingestedAt) =>
    client.query(
      `INSERT INTO ticks (${COLUMNS}) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) ON CONFLICT DO NOTHING`,
      [
        chunk.map((t) => t.symbol), chunk.map((t) => t.tsMicros), chunk.map((t) => t.event.timestamp_utc), chunk.map((t) => t.event.lastPrice),
        chunk.map((t) => t.event.priceChangePercent), chunk.map((t) => t.event.volume), chunk.map((t) => t.event.source),
        chunk.map((t) => t.event.event_time ?? null), chunk.map(() => ingestedAt)
      ]
    )
  )

/** The product: the sinks as Roles.ts wires them on STORE=postgres (or the database sink alone). */
const product = (url: string, rawDir: string, ticks: ReadonlyArray<Tick>, withJsonl: boolean): Promise<number> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const health = yield* Health
      const sinks = withJsonl ? [yield* makeSqliteSink, yield* makeJsonlSink(rawDir)] : [yield* makeSqliteSink]
      const sink = fanOut(sinks, health.sinkResult)
      const started = performance.now()
      for (let i = 0; i < ticks.length; i += batch) yield* sink.writeBatch(ticks.slice(i, i + batch))
      return performance.now() - started
    }).pipe(Effect.provide(postgresStore(url, 4).pipe(Layer.merge(Health.Default), Layer.merge(NodeContext.layer))))
  )

const main = async () => {
  const out = transcript()
  const print = out.print
  const nowMicros = Date.now() * 1000
  const ticks = simTicks(events, { rate, symbols, startMicros: nowMicros - Math.floor((events / rate) * 1e6) - 1_000_000 })
  print("bench: store path on PostgreSQL: events/s through the consumer's sinks (database sink + JSONL) vs a plain `pg` loop of the same batched inserts")
  print(machineLine())
  print(`server: ${new URL(args.server).host}; input: ${thousands(events)} sim ticks, ${symbols.length} symbols, batches of ${batch}, ${rounds} rounds, a new database per run`)

  const variants = ["plain pg loop", "plain pg loop, unnest", "sinks (database + JSONL)", "database sink alone"] as const
  const rates = new Map<string, Array<number>>(variants.map((v) => [v, []]))
  for (let round = 1; round <= rounds; round++) {
    for (const variant of variants) {
      const db = await freshDatabase()
      const dir = tempDir("pg-store-path")
      try {
        // the product migrates the new database first (not timed), so both variants write the same schema
        await Effect.runPromise(Effect.scoped(Layer.build(postgresStore(db.url, 1))))
        const ms =
          variant === "plain pg loop"
            ? await plain(db.url, ticks)
            : variant === "plain pg loop, unnest"
              ? await plainUnnest(db.url, ticks)
              : await product(db.url, path.join(dir, "raw"), ticks, variant === "sinks (database + JSONL)")
        const rows = await rowsIn(db.url)
        if (rows !== events) throw new Error(`${variant}: ${rows} rows stored, expected ${events}`)
        if (variant === "sinks (database + JSONL)" && jsonlLines(path.join(dir, "raw")) !== events) throw new Error(`${variant}: JSONL lines missing`)
        const perSec = (events / ms) * 1000
        rates.get(variant)!.push(perSec)
        print(`round ${round}: ${variant}: ${perSecond(perSec)} (${fmt(ms / (events / batch), 2)} ms per batch)`)
      } finally {
        await db.drop()
        removeDir(dir)
      }
    }
  }
  const plainMedian = median(rates.get("plain pg loop")!)
  const sinksMedian = median(rates.get("sinks (database + JSONL)")!)
  print("")
  print("| variant | median events/s | × plain |")
  print("|---|---:|---:|")
  for (const v of variants) print(`| ${v} | ${perSecond(median(rates.get(v)!))} | ${fmt(median(rates.get(v)!) / plainMedian, 2)} |`)
  const ratio = sinksMedian / plainMedian
  const pass = ratio >= target
  print("")
  const unnestMedian = median(rates.get("plain pg loop, unnest")!)
  print(`result: sinks ${fmt(ratio, 2)}× the plain pg loop (goal ≥ ${target}×): ${pass ? "PASS" : "FAIL"}`)
  print(
    `against the plain loop in the product's statement shape (unnest arrays): ${fmt(sinksMedian / unnestMedian, 2)}×; the product's ` +
      "multi-row insert is cheaper than a VALUES list of 4,500 parameters, and the candles and the JSONL raw log are the rest of its cost"
  )
  recordResults("pg-store-path", toMarkdown(out.lines))
  return pass
}

runBench("pg-store-path", main)

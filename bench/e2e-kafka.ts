/**
 * Kafka end to end (issue 8, bench 3): `--role=producer` (SOURCE=sim) and `--role=consumer` as
 * separate processes of the shipped binary, BROKER_MODE=kafka, against a local Apache Kafka 4.1
 * (KRaft) that the bench starts itself with scripts/kafka.mjs (`startKafka`: the broker of
 * `npm run kafka:start`, in its own temporary directory on its own free port, so it never touches a
 * broker someone else started) and stops at the end. Two figures:
 *
 * 1. Sustained events/s (goal ≥ `--target` (50,000)): for each rate of `--rates` (5k, 10k, 20k, 30k, 40k, 50k)
 *    a fresh topic, consumer group, database and raw dir; the consumer starts first (HEALTH_PORT on),
 *    then the producer; `--duration` (30) s from the sim's first event, sampled every second: stored =
 *    SUM(symbol_stats.events) read from the SQLite file (read-only), generated = the events the sim has
 *    due, lag = generated − stored, and newest_event_age_seconds from the consumer's /health. Then the
 *    producer gets SIGTERM (it flushes to Kafka and logs what it published), the consumer is given
 *    until it has stored that many (at most `--drain-timeout` (60) s), then SIGTERM too. Judged as in
 *    e2e-direct (bench/pipeline.ts judgeRate: stored ≥ 98 % of the rate, lag slope ≤ 2 % of the rate,
 *    newest event ≤ 2.5 s behind its schedule; and at the end published = ticks = symbol_stats = raw
 *    log lines = newest stored event's index + 1).
 *
 * 2. Publish-to-queryable latency at `--latency-rate` (2,000) events/s (goal p99 ≤ `--latency-target-ms`
 *    (250)): the bench polls the SQLite file read-only every `--poll-ms` (5) ms for each symbol's rows
 *    newer than the newest it has seen (primary-key range, so each poll reads only new rows) and notes
 *    when each row first became visible. Every event whose scheduled instant falls in the
 *    `--latency-seconds` (30) s after a `--warmup` (5) s warm-up counts, and each must be seen.
 *
 *    What is measured exactly (src/market/SimSource.ts, src/domain/SimMarket.ts): the sim does not stamp
 *    an event when it publishes it. Event k carries `timestamp_utc` = SIM_START + k/rate, and it is due
 *    k/rate after the sim's loop began (Effect Clock), a moment the sim's start log line gives
 *    (`simulating … the first event at …`; logged just before the loop reads its clock). The loop
 *    publishes the events due so far, then sleeps until the next is due but at least 50 ms (STEP_MS):
 *    at 2,000/s each publish carries ~100 events, the oldest due ~50 ms earlier. So:
 *      latency = first visible in SQLite − (timestamp_utc + (loop start − SIM_START)),
 *    i.e. from the instant the event was due in the sim to the first poll that sees it. It includes
 *    the sim's own 0–50 ms step, the Kafka producer's send (acks=all), the consumer's fetch, the
 *    consumer's batching (CONSUMER_BATCH_SIZE / CONSUMER_BATCH_WINDOW_MS, printed), the SQLite commit
 *    and up to one poll interval. `visible − timestamp_utc` alone would add the constant start offset
 *    (the process's start-up time here; up to a second more when SIM_START is unset, because the sim
 *    then floors the start to the whole second): it is printed too, for the record.
 *
 *    Baseline in the same run: `--role=all` in direct mode at the same rate, measured the same way.
 *    Experiment (unless --skip-experiment): Kafka again with `--experiment-env` (default
 *    CONSUMER_BATCH_SIZE=500,CONSUMER_BATCH_WINDOW_MS=1000, the consumer's batching before it became
 *    2000 events / 100 ms), to show what the consumer's batching does to the latency.
 *
 *   node dist/bench/bench/e2e-kafka.js [--rates 5000,10000,20000,30000,40000,50000,60000,70000] [--duration 60] [--symbols 10]
 *     [--warmup 5] [--target 50000] [--drain-timeout 60] [--latency-rate 2000] [--latency-seconds 30]
 *     [--poll-ms 5] [--latency-target-ms 250] [--experiment-env NAME=value,…] [--skip-experiment]
 *     [--skip-latency] [--skip-ramp] [--bootstrap host:port (an existing broker; not stopped)]
 *
 * Exit code 0 when both goals are met, 1 when not (or events were lost), 2 when the bench failed.
 */
import { Kafka, logLevel } from "kafkajs"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { parseArgs } from "node:util"
import { DEFAULT_MAIN, fmt, formatSummary, log, machineLine, recordResults, repoRoot, runBench, sleep, summarize, transcript } from "./lib.js"
import {
  cpuSeconds,
  Database,
  dueBy,
  freePort,
  getJson,
  jsonlLines,
  judgeRate,
  machineBusyPercent,
  machineJiffies,
  MB,
  newestCpuProfile,
  ownerGroups,
  perSecond,
  procStatus,
  PROFILE_DIR,
  productDefaults,
  defaultsText,
  type RateSample,
  removeDir,
  type RoleProcess,
  simFellBehind,
  simIndexAt,
  simPublishedOf,
  simStartOf,
  startRole,
  storedSummary,
  summarizeCpuProfile,
  symbolsOf,
  tempDir,
  thousands,
  track,
  unstoredLines,
  waitLive,
  withReadOnly,
  toMarkdown
} from "./pipeline.js"

const { values: args } = parseArgs({
  options: {
    rates: { type: "string", default: "5000,10000,20000,30000,40000,50000,60000,70000" },
    duration: { type: "string", default: "60" },
    symbols: { type: "string", default: "10" },
    warmup: { type: "string", default: "5" },
    target: { type: "string", default: "50000" },
    "drain-timeout": { type: "string", default: "60" },
    "latency-rate": { type: "string", default: "2000" },
    "latency-seconds": { type: "string", default: "30" },
    "poll-ms": { type: "string", default: "5" },
    "latency-target-ms": { type: "string", default: "250" },
    "experiment-env": { type: "string", default: "CONSUMER_BATCH_SIZE=500,CONSUMER_BATCH_WINDOW_MS=1000" },
    "skip-experiment": { type: "boolean", default: false },
    "skip-latency": { type: "boolean", default: false },
    "skip-ramp": { type: "boolean", default: false },
    "skip-profile": { type: "boolean", default: false },
    "profile-seconds": { type: "string", default: "20" },
    bootstrap: { type: "string", default: "" },
    main: { type: "string", default: DEFAULT_MAIN }
  }
})
const rates = args.rates.split(",").map((r) => Number(r.trim()))
const durationS = Number(args.duration)
const warmupS = Number(args.warmup)
const target = Number(args.target)
const drainTimeoutMs = Number(args["drain-timeout"]) * 1000
const latencyRate = Number(args["latency-rate"])
const latencySeconds = Number(args["latency-seconds"])
const pollMs = Number(args["poll-ms"])
const latencyTargetMs = Number(args["latency-target-ms"])
/** The experiment's settings (NAME=value,…): by default the consumer's batching before it became 2000 events / 100 ms. */
const experimentEnv: Record<string, string> = Object.fromEntries(
  args["experiment-env"]
    .split(",")
    .map((kv) => kv.trim())
    .filter((kv) => kv !== "")
    .map((kv) => {
      const i = kv.indexOf("=")
      if (i <= 0) throw new Error(`--experiment-env: expected NAME=value, got ${kv}`)
      return [kv.slice(0, i), kv.slice(i + 1)] as const
    })
)
const experimentLabel = Object.entries(experimentEnv)
  .map(([k, v]) => `${k}=${v}`)
  .join(" ")
const profileSeconds = Number(args["profile-seconds"])
const symbols = symbolsOf(Number(args.symbols))
const mainJs = path.resolve(args.main)
for (const r of [...rates, latencyRate]) if (!Number.isSafeInteger(r) || r < 1 || r > 200_000) throw new Error(`rates must be 1..200000, got ${r}`)
for (const [name, n, min] of [
  ["--duration", durationS, 5],
  ["--warmup", warmupS, 0],
  ["--drain-timeout", drainTimeoutMs, 1000],
  ["--latency-seconds", latencySeconds, 1],
  ["--poll-ms", pollMs, 1]
] as const) {
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be ≥ ${min}, got ${n}`)
}

interface LocalKafka {
  readonly bootstrap: string
  /** The broker's JVM (undefined for an existing broker given with --bootstrap). */
  readonly pid: number | undefined
  readonly stop: () => Promise<void>
}

const startBroker = async (): Promise<LocalKafka> => {
  if (args.bootstrap !== "") return { bootstrap: args.bootstrap, pid: undefined, stop: async () => {} }
  const script = (await import(pathToFileURL(path.join(repoRoot, "scripts", "kafka.mjs")).href)) as {
    startKafka: (options?: { readonly partitions?: number }) => Promise<LocalKafka>
  }
  return script.startKafka({ partitions: 3 })
}

// ---------------------------------------------------------------------------------------------
// One pipeline: Kafka (consumer + producer) or direct (--role=all)

interface Pipeline {
  readonly dir: string
  readonly db: string
  readonly rawDir: string
  readonly startMicros: number
  readonly beganMs: number
  /** ms from SIM_START to the sim's loop start: add to timestamp_utc to get an event's due instant. */
  readonly offsetMs: number
  readonly producer: RoleProcess
  readonly consumer: RoleProcess
  /** The Kafka topic (kafka mode). */
  readonly topic: string | undefined
  /** newest_event_age_seconds from the consumer's (or --role=all's) /health. */
  readonly age: () => Promise<number | null | undefined>
  readonly close: () => void
}

let runId = 0

const startPipeline = async (
  mode: "kafka" | "direct",
  rate: number,
  bootstrap: string,
  extraEnv: Readonly<Record<string, string>> = {},
  nodeArgs: { readonly producer?: ReadonlyArray<string>; readonly consumer?: ReadonlyArray<string> } = {}
): Promise<Pipeline> => {
  const id = `${Date.now()}-${++runId}`
  const dir = tempDir(`${mode}-${rate}`)
  const db = path.join(dir, "app.db")
  const rawDir = path.join(dir, "raw")
  const common = { SYMBOLS: symbols.join(","), ...extraEnv }
  const started: Array<RoleProcess> = []
  const close = () => {
    for (const p of started) p.kill()
    removeDir(dir)
  }
  try {
    const startMs = Date.now()
    const simEnv = (startAt: number) => ({
      SOURCE: "sim",
      SIM_EVENTS_PER_SECOND: String(rate),
      SIM_SEED: "42",
      SIM_START: new Date(startAt).toISOString()
    })
    if (mode === "direct") {
      const port = await freePort()
      const all = track(
        startRole(
          `all@${rate}`,
          "all",
          { ...common, ...simEnv(startMs), BROKER_MODE: "direct", STORAGE_PATH: db, RAW_DIR: rawDir, PORT: String(port) },
          { main: mainJs }
        )
      )
      started.push(all)
      const base = `http://127.0.0.1:${port}`
      await waitLive(`${base}/health/live`, all)
      const sim = simStartOf([await all.waitForLine((l) => l.message.startsWith("simulating "), 10_000, "the sim's start line")])!
      return {
        dir,
        db,
        rawDir,
        startMicros: startMs * 1000,
        beganMs: sim.beganMs,
        offsetMs: sim.beganMs - startMs,
        producer: all,
        consumer: all,
        topic: undefined,
        age: () => ageOf(base),
        close
      }
    }
    const kafkaEnv = {
      BROKER_MODE: "kafka",
      KAFKA_BOOTSTRAP_SERVERS: bootstrap,
      TOPIC_NAME: `bench_${id}`,
      CONSUMER_GROUP_ID: `bench_${id}`,
      KAFKA_CLIENT_ID: `bench_${id}`
    }
    const healthPort = await freePort()
    const consumer = track(
      startRole(
        `consumer@${rate}`,
        "consumer",
        { ...common, ...kafkaEnv, STORAGE_PATH: db, RAW_DIR: rawDir, HEALTH_PORT: String(healthPort), PORT: String(await freePort()) },
        { main: mainJs, nodeArgs: nodeArgs.consumer ?? [] }
      )
    )
    started.push(consumer)
    await consumer.waitForLine((l) => l.message.startsWith("joined consumer group"), 90_000, "the consumer's group join")
    const producerStart = Date.now()
    const producer = track(
      startRole(
        `producer@${rate}`,
        "producer",
        {
          ...common,
          ...kafkaEnv,
          ...simEnv(producerStart),
          STORAGE_PATH: path.join(dir, "producer", "app.db"),
          RAW_DIR: path.join(dir, "producer", "raw"),
          PORT: String(await freePort())
        },
        { main: mainJs, nodeArgs: nodeArgs.producer ?? [] }
      )
    )
    started.push(producer)
    const sim = simStartOf([await producer.waitForLine((l) => l.message.startsWith("simulating "), 30_000, "the sim's start line")])!
    const base = `http://127.0.0.1:${healthPort}`
    return {
      dir,
      db,
      rawDir,
      startMicros: producerStart * 1000,
      beganMs: sim.beganMs,
      offsetMs: sim.beganMs - producerStart,
      producer,
      consumer,
      topic: kafkaEnv.TOPIC_NAME,
      age: () => ageOf(base),
      close
    }
  } catch (e) {
    close()
    throw e
  }
}

const ageOf = async (base: string) => {
  const r = await getJson(`${base}/health`)
  const body = r?.body as { components?: { store?: { newest_event_age_seconds?: number | null } } } | undefined
  return body?.components?.store?.newest_event_age_seconds
}

const statsEvents = (db: string): number | undefined => {
  try {
    return withReadOnly(db, (d) => Number(d.prepare("SELECT COALESCE(SUM(events), 0) AS n FROM symbol_stats").get()!["n"]))
  } catch {
    return undefined
  }
}

interface Ending {
  readonly published: number | undefined
  readonly rows: number
  readonly statsEvents: number
  readonly jsonl: number
  readonly newestPlusOne: number | undefined
  readonly producerExit: number | null
  readonly consumerExit: number | null
  readonly drainMs: number
  readonly unstored: ReadonlyArray<string>
  readonly behind: boolean
  readonly complete: boolean
}

/** Stops the producer, waits until the consumer stored what it published (bounded), stops the consumer, counts. */
const finish = async (p: Pipeline, rate: number): Promise<Ending> => {
  const producerStop = await p.producer.stop()
  const published = simPublishedOf(p.producer.lines)
  const drainStart = Date.now()
  if (p.producer !== p.consumer && published !== undefined) {
    let last = -1
    let lastChange = Date.now()
    while (Date.now() - drainStart < drainTimeoutMs) {
      const n = statsEvents(p.db) ?? 0
      if (n >= published) break
      if (n !== last) {
        last = n
        lastChange = Date.now()
      } else if (Date.now() - lastChange > 15_000) break
      await sleep(200)
    }
  }
  const drainMs = Date.now() - drainStart
  const consumerStop = p.producer === p.consumer ? producerStop : await p.consumer.stop()
  const summary = storedSummary(p.db)
  const jsonl = jsonlLines(p.rawDir)
  const k = summary.maxMicros === null ? undefined : simIndexAt(summary.maxMicros, p.startMicros, rate)
  const unstored = [...unstoredLines(p.producer.lines), ...(p.producer === p.consumer ? [] : unstoredLines(p.consumer.lines))]
  const newestPlusOne = k === undefined ? undefined : k + 1
  return {
    published,
    rows: summary.rows,
    statsEvents: summary.statsEvents,
    jsonl,
    newestPlusOne,
    producerExit: producerStop.code,
    consumerExit: consumerStop.code,
    drainMs,
    unstored,
    behind: simFellBehind(p.producer.lines),
    complete:
      producerStop.code === 0 &&
      consumerStop.code === 0 &&
      published !== undefined &&
      summary.rows === published &&
      summary.statsEvents === published &&
      jsonl === published &&
      newestPlusOne === published &&
      unstored.length === 0
  }
}

const endingText = (e: Ending) =>
  `published ${e.published === undefined ? "?" : thousands(e.published)}, ticks ${thousands(e.rows)}, symbol_stats ${thousands(e.statsEvents)}, ` +
  `jsonl ${thousands(e.jsonl)}, newest stored = event #${e.newestPlusOne === undefined ? "?" : thousands(e.newestPlusOne - 1)}; ` +
  `exits: producer ${e.producerExit}, consumer ${e.consumerExit}; drained ${fmt(e.drainMs / 1000, 1)} s after the producer stopped` +
  (e.unstored.length > 0 ? `; logged: ${e.unstored.join(" | ")}` : "")

// ---------------------------------------------------------------------------------------------
// 1. Sustained rate

/** Sum of the topic's high watermarks: the events Kafka holds. */
const topicTotal = async (admin: KafkaAdmin, topic: string): Promise<number | undefined> => {
  try {
    return (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0)
  } catch {
    return undefined
  }
}
type KafkaAdmin = ReturnType<Kafka["admin"]>

interface RampResult {
  readonly rate: number
  /** Events/s into Kafka over the judged window (the producer's side). */
  readonly intoKafka: number
  readonly verdict: ReturnType<typeof judgeRate>
  readonly ending: Ending
  readonly cpuProducer: number
  readonly cpuConsumer: number
  readonly cpuBroker: number
  /** The whole machine's CPU busy (all cores), over the judged window. */
  readonly cpuMachine: number
  readonly rssConsumer: number
  readonly sustained: boolean
  readonly why: ReadonlyArray<string>
}

const ramp = async (
  rate: number,
  bootstrap: string,
  admin: KafkaAdmin,
  brokerPid: number | undefined,
  options: { readonly seconds: number; readonly nodeArgs?: { readonly producer?: ReadonlyArray<string>; readonly consumer?: ReadonlyArray<string> } }
): Promise<RampResult> => {
  const p = await startPipeline("kafka", rate, bootstrap, {}, options.nodeArgs ?? {})
  try {
    const inKafka: Array<{ t: number; n: number | undefined }> = []
    const samples: Array<RateSample> = []
    const cpu: Array<{
      t: number
      producer: number | undefined
      consumer: number | undefined
      broker: number | undefined
      machine: ReturnType<typeof machineJiffies>
    }> = []
    let rssConsumer = 0
    const endAt = p.beganMs + options.seconds * 1000
    let next = Date.now()
    while (Date.now() < endAt) {
      const t = Date.now()
      const [stored, ageS, held] = [statsEvents(p.db), await p.age(), await topicTotal(admin, p.topic!)]
      inKafka.push({ t, n: held })
      samples.push({ t, elapsedS: (t - p.beganMs) / 1000, due: dueBy(t - p.beganMs, rate), stored, ageS })
      cpu.push({
        t,
        producer: cpuSeconds(p.producer.pid),
        consumer: cpuSeconds(p.consumer.pid),
        broker: brokerPid === undefined ? undefined : cpuSeconds(brokerPid),
        machine: machineJiffies()
      })
      rssConsumer = Math.max(rssConsumer, procStatus(p.consumer.pid, "VmRSS") ?? 0)
      for (const r of [p.producer, p.consumer]) if (r.child.exitCode !== null) throw new Error(`${r.label} exited with ${r.child.exitCode} during the run`)
      next += 1000
      await sleep(Math.max(0, next - Date.now()))
    }
    const verdict = judgeRate(samples, { rate, warmupS, startOffsetS: p.offsetMs / 1000 })
    const ending = await finish(p, rate)
    const w = cpu.filter((c) => (c.t - p.beganMs) / 1000 >= warmupS)
    const pct = (key: "producer" | "consumer" | "broker") => {
      const a = w[0]
      const b = w[w.length - 1]
      return a?.[key] !== undefined && b?.[key] !== undefined && b.t > a.t ? (100 * (b[key]! - a[key]!)) / ((b.t - a.t) / 1000) : Number.NaN
    }
    const k = inKafka.filter((c) => (c.t - p.beganMs) / 1000 >= warmupS && c.n !== undefined)
    const intoKafka = k.length >= 2 && k[k.length - 1]!.t > k[0]!.t ? ((k[k.length - 1]!.n! - k[0]!.n!) / (k[k.length - 1]!.t - k[0]!.t)) * 1000 : Number.NaN
    const why = [...verdict.why]
    if (ending.behind) why.push("the sim logged that it fell behind schedule")
    if (!ending.complete) why.push(`not every event stored: ${endingText(ending)}`)
    return { rate, intoKafka, verdict, ending, cpuProducer: pct("producer"), cpuConsumer: pct("consumer"), cpuBroker: pct("broker"), cpuMachine: machineBusyPercent(w[0]?.machine, w[w.length - 1]?.machine), rssConsumer, sustained: why.length === 0, why }
  } finally {
    p.close()
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Latency

const SLICE_S = 5

interface LatencyResult {
  readonly label: string
  /** visible − due instant, ms. */
  readonly latencies: ReadonlyArray<number>
  /** visible − timestamp_utc, ms. */
  readonly raw: ReadonlyArray<number>
  /** p99 and max of the latency per `SLICE_S` of due time, to show whether the tail is steady or a stall. */
  readonly slices: ReadonlyArray<{ readonly fromS: number; readonly p99: number; readonly max: number }>
  readonly expected: number
  readonly offsetMs: number
  readonly pollsPerSecond: number
  readonly ending: Ending
}

const latency = async (label: string, mode: "kafka" | "direct", bootstrap: string, extraEnv: Readonly<Record<string, string>> = {}): Promise<LatencyResult> => {
  const rate = latencyRate
  const p = await startPipeline(mode, rate, bootstrap, extraEnv)
  try {
    // The window: events due in [began + warmup, began + warmup + latencySeconds).
    const fromMicros = p.startMicros + warmupS * 1_000_000
    const toMicros = fromMicros + latencySeconds * 1_000_000
    /** Events due in the window (the loop's stop condition; the count stored in the window is checked after). */
    const due = dueBy((toMicros - p.startMicros) / 1000 - 0.001, rate) - dueBy((fromMicros - p.startMicros) / 1000 - 0.001, rate)
    // The consumer created the schema (kafka) or the role did (direct): wait for the file.
    const deadline = Date.now() + 30_000
    while (!fs.existsSync(p.db) || statsEvents(p.db) === undefined) {
      if (Date.now() > deadline) throw new Error(`${p.db} was not created`)
      await sleep(50)
    }
    const db = new Database(p.db, { readonly: true, fileMustExist: true })
    const latencies: Array<number> = []
    const raw: Array<number> = []
    const bySlice = new Map<number, Array<number>>()
    let polls = 0
    try {
      const query = db.prepare("SELECT ts_us FROM ticks WHERE symbol = ? AND ts_us > ? ORDER BY ts_us")
      const newest = new Map<string, number>(symbols.map((s) => [s, p.startMicros - 1]))
      // The producer runs 2 s past the window: the last events of the window are not the last of the stream,
      // so none waits for the consumer's batch window because the stream stopped.
      const stopAt = p.beganMs + (warmupS + latencySeconds + 2) * 1000
      let producerStopped = false
      let ending: Ending | undefined
      let endingPromise: Promise<Ending> | undefined
      const pollStart = Date.now()
      const poll = () => {
        const at = performance.timeOrigin + performance.now()
        for (const symbol of symbols) {
          const rows = query.all(symbol, newest.get(symbol)!)
          for (const row of rows) {
            const ts = Number(row["ts_us"])
            newest.set(symbol, ts)
            if (ts >= fromMicros && ts < toMicros) {
              const l = at - (ts / 1000 + p.offsetMs)
              latencies.push(l)
              raw.push(at - ts / 1000)
              const slice = Math.floor((ts - fromMicros) / (SLICE_S * 1_000_000))
              let xs = bySlice.get(slice)
              if (xs === undefined) bySlice.set(slice, (xs = []))
              xs.push(l)
            }
          }
        }
        polls++
        return at
      }
      for (;;) {
        const at = poll()
        if (!producerStopped && Date.now() >= stopAt) {
          producerStopped = true
          endingPromise = finish(p, rate) // stops the producer, waits for the consumer to store it all, stops the consumer
        }
        if (latencies.length >= due && endingPromise !== undefined) {
          ending = await endingPromise
          break
        }
        if (endingPromise !== undefined && Date.now() - stopAt > drainTimeoutMs + 20_000) {
          ending = await endingPromise
          break
        }
        const wait = pollMs - (performance.timeOrigin + performance.now() - at)
        await sleep(Math.max(0, wait))
      }
      poll() // anything committed at the very end
      const expected = Number(
        db.prepare("SELECT COUNT(*) AS n FROM ticks WHERE ts_us >= ? AND ts_us < ?").get(fromMicros, toMicros)!["n"]
      )
      if (expected !== due) log(`  note: ${expected} events stored in the window, ${due} due by the sim's schedule`)
      const slices = [...bySlice.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([slice, xs]) => ({ fromS: warmupS + slice * SLICE_S, p99: summarize(xs).p99, max: summarize(xs).max }))
      return {
        label,
        latencies,
        raw,
        slices,
        expected,
        offsetMs: p.offsetMs,
        pollsPerSecond: polls / ((Date.now() - pollStart) / 1000),
        ending: ending!
      }
    } finally {
      db.close()
    }
  } finally {
    p.close()
  }
}

// ---------------------------------------------------------------------------------------------

const main = async () => {
  const out = transcript()
  const print = out.print
  print(
    `bench: Kafka end to end: \`--role=producer\` (SOURCE=sim) → Kafka → \`--role=consumer\`; sustained events/s (goal ≥ ${perSecond(target)}) ` +
      `and p99 publish-to-queryable latency at ${perSecond(latencyRate)} (goal ≤ ${latencyTargetMs} ms)`
  )
  print(machineLine())
  const defaults = productDefaults()
  const brokerStarted = Date.now()
  const kafka = await startBroker()
  const client = new Kafka({ clientId: "bench-e2e-kafka", brokers: [kafka.bootstrap], logLevel: logLevel.NOTHING })
  const admin = client.admin()
  let pass = true
  try {
    await admin.connect()
    print(
      `broker: ${args.bootstrap !== "" ? `existing, ${kafka.bootstrap}` : `Apache Kafka 4.1 (KRaft, scripts/kafka.mjs startKafka), ${kafka.bootstrap}, ready in ${fmt((Date.now() - brokerStarted) / 1000, 1)} s`}; ` +
        `topic: 3 partitions, replication 1, a new topic and consumer group per run; ${symbols.length} symbols; the product's defaults otherwise: ` +
        defaultsText(defaults)
    )

    if (!args["skip-ramp"]) {
      print("")
      print(`1. sustained rate: ${durationS} s per rate from the sim's first event (the first ${warmupS} s not judged)${durationS < 60 ? ", shorter than the issue's 60 s (time was short)" : ""}`)
      const results: Array<RampResult> = []
      for (const rate of rates) {
        log(`\n${perSecond(rate)}: running for ${durationS} s`)
        const r = await ramp(rate, kafka.bootstrap, admin, kafka.pid, { seconds: durationS })
        results.push(r)
        print(
          `${perSecond(rate)}: ${r.sustained ? "SUSTAINED" : "not sustained"}; into Kafka ${perSecond(r.intoKafka)}, stored ${perSecond(r.verdict.storedRate)}; lag end ${thousands(r.verdict.lagEnd)}, ` +
            `max ${thousands(r.verdict.lagMax)}, slope ${fmt(r.verdict.lagSlope, 0)} events/s; newest event ≤ ${r.verdict.ageMaxAdj === undefined ? "?" : fmt(r.verdict.ageMaxAdj, 2)} s behind schedule; ` +
            `CPU producer ${fmt(r.cpuProducer, 0)} %, consumer ${fmt(r.cpuConsumer, 0)} %, Kafka broker ${fmt(r.cpuBroker, 0)} %, machine ${fmt(r.cpuMachine, 0)} % of ${os.cpus().length} cores; consumer RSS max ${fmt(r.rssConsumer / MB, 0)} MB`
        )
        print(`  at the end: ${endingText(r.ending)}${r.why.length > 0 ? `; ${r.why.join("; ")}` : ""}`)
        if (!r.ending.complete) {
          print(`  EVENTS LOST OR A PROCESS FAILED at ${perSecond(rate)}: see the counts above. The ramp stops here.`)
          pass = false
          break
        }
      }
      print("")
      print("| rate | verdict | into Kafka events/s | stored events/s | × rate | lag end / max | lag slope (events/s) | newest event behind schedule, max | CPU % producer / consumer / broker (100 = one core) | machine CPU % (all cores) | all stored once |")
      print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
      for (const r of results) {
        print(
          `| ${thousands(r.rate)} | ${r.sustained ? "sustained" : "**not sustained**"} | ${thousands(r.intoKafka)} | ${thousands(r.verdict.storedRate)} | ${fmt(r.verdict.storedRate / r.rate, 3)} | ` +
            `${thousands(r.verdict.lagEnd)} / ${thousands(r.verdict.lagMax)} | ${fmt(r.verdict.lagSlope, 0)} | ` +
            `${r.verdict.ageMaxAdj === undefined ? "?" : `${fmt(r.verdict.ageMaxAdj, 2)} s`} | ${fmt(r.cpuProducer, 0)} / ${fmt(r.cpuConsumer, 0)} / ${fmt(r.cpuBroker, 0)} | ${fmt(r.cpuMachine, 0)} | ` +
            `${r.ending.complete ? `yes (${thousands(r.ending.published ?? 0)})` : "**NO**"} |`
        )
      }
      const best = Math.max(0, ...results.filter((r) => r.sustained).map((r) => r.rate))
      const ok = best >= target
      pass &&= ok
      print("")
      print(`verdict 1: highest sustained rate over Kafka ${best > 0 ? perSecond(best) : "none"} (goal ≥ ${perSecond(target)}): ${ok ? "PASS" : "FAIL"}`)

      const firstFail = results.find((r) => !r.sustained)
      const shares: Partial<Record<"producer" | "consumer", { groups: string; owner: (name: string) => number }>> = {}
      if (!args["skip-profile"] && firstFail !== undefined && firstFail.ending.complete) {
        log(`\nprofiling producer and consumer at ${perSecond(firstFail.rate)} for ${profileSeconds} s under node --cpu-prof`)
        const dirs = { producer: path.join(PROFILE_DIR, "kafka-producer"), consumer: path.join(PROFILE_DIR, "kafka-consumer") }
        for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true })
        const before = { producer: newestCpuProfile(dirs.producer), consumer: newestCpuProfile(dirs.consumer) }
        const flags = (d: string) => ["--cpu-prof", `--cpu-prof-dir=${d}`, "--cpu-prof-interval=500"]
        const r = await ramp(firstFail.rate, kafka.bootstrap, admin, kafka.pid, {
          seconds: profileSeconds,
          nodeArgs: { producer: flags(dirs.producer), consumer: flags(dirs.consumer) }
        })
        print("")
        print(
          `CPU profiles at ${perSecond(firstFail.rate)} (${profileSeconds} s, each process's whole life; while profiled: into Kafka ${perSecond(r.intoKafka)}, ` +
            `stored ${perSecond(r.verdict.storedRate)}, CPU producer ${fmt(r.cpuProducer, 0)} %, consumer ${fmt(r.cpuConsumer, 0)} %, broker ${fmt(r.cpuBroker, 0)} %, machine ${fmt(r.cpuMachine, 0)} %):`
        )
        for (const role of ["producer", "consumer"] as const) {
          const file = newestCpuProfile(dirs[role])
          if (file === undefined || file === before[role]) {
            print(`  ${role}: no CPU profile was written`)
            continue
          }
          const summary = summarizeCpuProfile(file, mainJs, 12)
          const groups = ownerGroups(summary.byOwner)
            .filter(([, ms]) => ms / summary.busyMs >= 0.01)
            .map(([g, ms]) => `${g} ${fmt((100 * ms) / summary.busyMs, 0)} %`)
            .join(", ")
          shares[role] = { groups, owner: (name) => (100 * (summary.byOwner.get(name) ?? 0)) / summary.busyMs }
          print(`${role}: by group: ${groups}`)
          print(summary.text)
        }
      }
      if (!ok && firstFail !== undefined) {
        const f = firstFail
        print("")
        print("**What limits the sustained rate** (figures of this run):")
        print(
          `- At ${perSecond(f.rate)}: into Kafka ${perSecond(f.intoKafka)}, stored ${perSecond(f.verdict.storedRate)}; CPU (100 % = one core): producer ${fmt(f.cpuProducer, 0)} %, ` +
            `consumer ${fmt(f.cpuConsumer, 0)} %, Kafka broker ${fmt(f.cpuBroker, 0)} %; the whole machine ${fmt(f.cpuMachine, 0)} % busy over ${os.cpus().length} cores. ` +
            (f.cpuMachine >= 85
              ? "The three processes share two cores and together saturate them: neither node process gets a full core, so each runs below its own single-thread ceiling."
              : "The machine still has idle CPU: the limit is in a process's own thread or in waiting (see the profiles' idle time).")
        )
        const pr = shares.producer
        const co = shares.consumer
        if (pr !== undefined) {
          print(
            `- Producer profile: ${pr.groups}. kafkajs (${fmt(pr.owner("kafkajs"), 0)} %) partitions each message (src/broker/kafka/partitioner.ts), groups them by partition ` +
              `(src/broker/kafka/groupMessages.ts), encodes each record (src/broker/kafka/recordEncoder.ts ${fmt(pr.owner("src/broker/kafka/recordEncoder.ts"), 0)} %: key, value and the contract's two headers), ` +
              "then each batch, its CRC32C and the request; the garbage collector collects what each event leaves behind (the sim's event, its message, kafkajs' Buffers). " +
              `The rest of the product's share is small (src/domain/SimMarket.ts ${fmt(pr.owner("src/domain/SimMarket.ts"), 0)} %, src/domain/EventJson.ts ${fmt(pr.owner("src/domain/EventJson.ts"), 0)} %); ` +
              "bench kafka-encode times these pieces one by one."
          )
        }
        if (co !== undefined) {
          print(
            `- Consumer profile: ${co.groups}. Besides the store path (SQLite statements, Effect, the JSONL sink ${fmt(co.owner("src/store/JsonlSink.ts") + co.owner("src/store/DayLog.ts") + co.owner("src/domain/EventJson.ts"), 0)} %), ` +
              `it decodes each message once (src/broker/kafka/codec.ts ${fmt(co.owner("src/broker/kafka/codec.ts"), 0)} %: JSON.parse and the contract's patterns, field by field; ` +
              `src/domain/Ticker.ts ${fmt(co.owner("src/domain/Ticker.ts"), 0)} %: parseInstantMicros of timestamp_utc and event_time) and kafkajs decodes the records (${fmt(co.owner("kafkajs"), 0)} %, with the product's record decoder, src/broker/kafka/recordDecoder.ts ${fmt(co.owner("src/broker/kafka/recordDecoder.ts"), 0)} %).`
          )
        }
        print("")
        print("**What would move it:** less CPU per event on both sides, or more cores: ")
        print(
          "- Producer: fewer records, or less kafkajs per record. Putting several events in one message, or dropping the two headers " +
            "(bench kafka-encode measures their share), changes the message contract (README, Kafka mode: Messages), so it is not done; " +
            "the rest of kafkajs' per-record work (a copy of each message for its record, the batch and its CRC32C, the request, their Buffers) is kafkajs' own."
        )
        print("- Consumer: everything that moves the store path (bench store-path).")
        print("- More than two cores for producer, consumer and broker; or one consumer process per partition group (the topic has 3 partitions).")
      }
    }

    if (!args["skip-latency"]) {
      print("")
      print(
        `2. latency at ${perSecond(latencyRate)}: first visible in SQLite (read-only polls every ${pollMs} ms, per symbol) − the event's due instant ` +
          `(timestamp_utc + the sim loop's start − SIM_START), events due in ${latencySeconds} s after a ${warmupS} s warm-up; ms`
      )
      const runs: Array<LatencyResult> = []
      const variants: ReadonlyArray<readonly [string, "kafka" | "direct", Record<string, string>]> = [
        ["kafka (the figure)", "kafka", {}],
        ["direct, --role=all (baseline)", "direct", {}],
        ...(args["skip-experiment"]
          ? []
          : ([[`kafka, ${experimentLabel} (experiment)`, "kafka", experimentEnv]] as const))
      ]
      for (const [label, mode, env] of variants) {
        log(`\n${label}: ${warmupS + latencySeconds} s at ${perSecond(latencyRate)}`)
        const r = await latency(label, mode, kafka.bootstrap, env)
        runs.push(r)
        const s = summarize(r.latencies)
        const rawS = summarize(r.raw)
        print(`${label}: ${formatSummary(s)}`)
        print(
          `  visible − timestamp_utc (adds the constant start offset ${fmt(r.offsetMs, 0)} ms): p50 ${fmt(rawS.p50)}, p99 ${fmt(rawS.p99)} ms; ` +
            `${thousands(r.latencies.length)} of ${thousands(r.expected)} events seen; ${fmt(r.pollsPerSecond, 0)} polls/s`
        )
        print(`  p99 / max per ${SLICE_S} s of the window (s since the sim's start): ${r.slices.map((x) => `${x.fromS}s ${fmt(x.p99, 0)}/${fmt(x.max, 0)}`).join(", ")}`)
        print(`  at the end: ${endingText(r.ending)}`)
        if (!r.ending.complete || r.latencies.length !== r.expected) {
          print(`  EVENTS MISSING: ${r.latencies.length} of ${r.expected} events of the window were seen`)
          pass = false
        }
      }
      print("")
      print("| pipeline | events | mean | p50 | p90 | p99 | max | goal p99 ≤ " + `${latencyTargetMs} ms |`)
      print("|---|---:|---:|---:|---:|---:|---:|---|")
      for (const r of runs) {
        const sorted = [...r.latencies].sort((a, b) => a - b)
        const p90 = sorted[Math.max(0, Math.ceil(0.9 * sorted.length) - 1)] ?? Number.NaN
        const s = summarize(r.latencies)
        print(
          `| ${r.label} | ${thousands(s.count)} | ${fmt(s.mean, 1)} | ${fmt(s.p50, 1)} | ${fmt(p90, 1)} | ${fmt(s.p99, 1)} | ${fmt(s.max, 1)} | ${s.p99 <= latencyTargetMs ? "met" : "missed"} |`
        )
      }
      const figure = summarize(runs[0]!.latencies)
      const ok = figure.p99 <= latencyTargetMs
      pass &&= ok
      print("")
      print(`verdict 2: p99 over Kafka ${fmt(figure.p99, 1)} ms at ${perSecond(latencyRate)} (goal ≤ ${latencyTargetMs} ms): ${ok ? "PASS" : "FAIL"}`)
      if (!ok) {
        const direct = runs.find((r) => r.label.startsWith("direct"))
        const experiment = runs.find((r) => r.label.includes("experiment"))
        const d = direct === undefined ? undefined : summarize(direct.latencies)
        const fillMs = Math.min((defaults.batchSize / latencyRate) * 1000, defaults.batchWindowMs)
        print("")
        print("**What limits the latency** (figures of this run):")
        print(
          `- The consumer's batch: it stores up to CONSUMER_BATCH_SIZE = ${defaults.batchSize} events at once, or what it holds ${defaults.batchWindowMs} ms after a batch's first event (CONSUMER_BATCH_WINDOW_MS). ` +
            `At ${perSecond(latencyRate)} an event therefore waits up to ${fmt(fillMs, 0)} ms for its batch, ` +
            "plus up to 50 ms in the sim's own step (it publishes what is due every 50 ms), plus the write. " +
            (d === undefined
              ? ""
              : `Direct mode, with no Kafka at all, shows the same spread: p50 ${fmt(d.p50, 0)} ms, p99 ${fmt(d.p99, 0)} ms. Kafka adds ${fmt(figure.p50 - d.p50, 0)} ms at p50 and ${fmt(figure.p99 - d.p99, 0)} ms at p99.`)
        )
        print("")
        print("**What would move it:**")
        print(
          "- A shorter batch window (CONSUMER_BATCH_WINDOW_MS), at the price of more, smaller transactions at low rates" +
            (experiment === undefined ? "" : ` (the experiment with ${experimentLabel}: p99 ${fmt(summarize(experiment.latencies).p99, 0)} ms)`) +
            "; or a batching rule that writes whatever has arrived as soon as the previous write is done (the batch size then follows the load)."
        )
      }
    }
  } finally {
    await admin.disconnect().catch(() => {})
    await kafka.stop()
    log("broker stopped")
  }
  recordResults("e2e-kafka", toMarkdown(out.lines))
  return pass
}

runBench("e2e-kafka", main)

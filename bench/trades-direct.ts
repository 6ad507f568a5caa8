/**
 * Trades in direct mode (issue 10, "Figures"): `node dist/main.js --role=all` with `SOURCE=sim`
 * emitting `--rate` (5,000) aggregate trades/s across `--symbols` (20) symbols (SIM_TRADES_PER_SECOND,
 * src/domain/SimTrades.ts), `BROKER_MODE=direct`, the ticker side at a low `--events` (20) events/s, the
 * product's defaults otherwise, `SIM_START` unset (the product's own behaviour). Three figures, over a
 * sustained window of `--duration` (60) s after a `--warmup` (10) s warm-up, both counted from the
 * sim's loop start:
 *
 * 1. Trades/s stored: every `--sample-ms` (1000) ms the bench reads the SQLite file read-only
 *    (stored = Σ per symbol of MAX(agg_trade_id) − MIN(agg_trade_id) + 1: the sim's ids are
 *    consecutive per symbol and each batch is one transaction, so that is the row count; the end of
 *    the run checks it against COUNT(*)). Offered = the trades the sim has due by then (trade k is due
 *    k/rate after its loop began); backlog = offered − stored. It **kept up** when the stored rate over
 *    the window is ≥ 98 % of the rate, the backlog's least-squares slope is ≤ 2 % of the rate, the sim
 *    never logged that it fell behind, and at the end (SIGTERM, the consumer drains, exit 0) the sim's
 *    published count = rows in `trades` = lines of `RAW_DIR/trades/*.jsonl`, with no hole in any
 *    symbol's ids and nothing in `trade_gaps`.
 *
 * 2. Exchange-time-to-queryable latency: `--poll-symbols` (4) of the symbols, spread over the list,
 *    are each polled through the API every `--poll-ms` (100) ms, `GET /agg-trades/latest?symbol=…&limit=`
 *    `--limit` (50), on keep-alive connections, one request in flight per symbol. A trade is first seen
 *    by the first answer whose newest id is ≥ its id: a symbol's ids are stored in order, one
 *    transaction per batch, so once id N is visible every lower id is too (an answer that did not list
 *    every new id, because more than `--limit` arrived, still proves them visible; such answers are
 *    counted). Trade times come from the database after the window (and are checked against the API's
 *    for each answer's newest trade).
 *
 *    What "exchange time" is here (src/market/SimSource.ts, src/domain/SimTrades.ts): the sim does not
 *    stamp a trade when it publishes it. With SIM_START unset, trade k carries
 *    `trade_time` = floor_ms(S + k/rate), where S is the instant the sim's settings were read, floored
 *    to the whole second, and it is due (published) k/rate after the sim's loop began (Effect Clock;
 *    the start log line `simulating … the first event at S…` gives both). So trade_time runs behind
 *    real time by a constant offset (loop start − S: the sub-second floor plus the time from reading the
 *    settings to starting the loop, up to about a second), and
 *      latency = first seen − (trade_time + (loop start − S)),
 *    from the instant the trade was due in the sim (what a live exchange would stamp) to the answer
 *    that showed it. It includes the sim's 0–50 ms step, the in-process queue, the consumer's batching
 *    (CONSUMER_BATCH_SIZE / CONSUMER_BATCH_WINDOW_MS, printed), both sinks and the COMMIT, the API's
 *    answer, and up to one poll interval; trade_time is cut to the millisecond, which adds < 1 ms.
 *    It is an upper bound; the send time of the previous poll (which did not see the trade yet) gives
 *    a lower bound, printed too, as is `first seen − trade_time` uncorrected. Trades due in the window
 *    count; each must be seen.
 *
 * 3. CPU and memory of the platform process: user + system time (/proc/<pid>/stat) over the window ÷
 *    wall time, as % of one core; VmRSS every sample (mean, max) and VmHWM. After the window the probe
 *    stops and the process runs `--quiet` (15) s more without it: its CPU there is the platform
 *    without the probe's requests. Baseline in the same run (unless `--skip-baseline`): the same
 *    process with SIM_TRADES_PER_SECOND=0 for `--baseline-seconds` (20) s: its CPU and RSS without
 *    trades. When the rate is not kept up or the p99 is over a second (unless `--skip-profile`), the
 *    rate runs once more for `--profile-seconds` (20) under `node --cpu-prof`, summarised by package.
 *
 *   node dist/bench/bench/trades-direct.js [--rate 5000] [--symbols 20] [--events 20] [--warmup 10]
 *     [--duration 60] [--quiet 15] [--poll-ms 100] [--poll-symbols 4] [--limit 50] [--sample-ms 1000]
 *     [--baseline-seconds 20] [--skip-baseline] [--skip-profile] [--profile-seconds 20] [--main dist/main.js]
 *
 * Exit code 0 when the rate was kept up and every trade stored, 1 when not (or trades were lost, or
 * the process did not exit 0 on SIGTERM), 2 when the bench failed (a process that did not start or
 * crashed during the run, a baseline that did not stop cleanly).
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { BENCH_SYMBOLS, DEFAULT_MAIN, fmt, log, machineLine, recordResults, runBench, sleep, summarize, timedGet, transcript } from "./lib.js"
import {
  cpuSeconds,
  Database,
  defaultsText,
  dueBy,
  freePort,
  isoMicros,
  jsonlLines,
  launchNodeArgs,
  type LogLine,
  machineBusyPercent,
  machineJiffies,
  MB,
  newestCpuProfile,
  ownerGroups,
  perSecond,
  procStatus,
  PROFILE_DIR,
  productDefaults,
  removeDir,
  type RoleProcess,
  simFellBehind,
  slope,
  type SqliteDb,
  startRole,
  summarizeCpuProfile,
  tempDir,
  thousands,
  toMarkdown,
  track,
  unstoredLines,
  waitLive,
  withReadOnly
} from "./pipeline.js"

/** The ten bench symbols and ten more Binance USDT pairs: the issue's 20 symbols. */
const TRADE_SYMBOLS = [
  ...BENCH_SYMBOLS,
  "DOTUSDT",
  "LTCUSDT",
  "BCHUSDT",
  "UNIUSDT",
  "ATOMUSDT",
  "ETCUSDT",
  "XLMUSDT",
  "NEARUSDT",
  "FILUSDT",
  "APTUSDT"
] as const

const { values: args } = parseArgs({
  options: {
    rate: { type: "string", default: "5000" },
    symbols: { type: "string", default: "20" },
    events: { type: "string", default: "20" },
    warmup: { type: "string", default: "10" },
    duration: { type: "string", default: "60" },
    quiet: { type: "string", default: "15" },
    "poll-ms": { type: "string", default: "100" },
    "poll-symbols": { type: "string", default: "4" },
    limit: { type: "string", default: "50" },
    "sample-ms": { type: "string", default: "1000" },
    "baseline-seconds": { type: "string", default: "20" },
    "skip-baseline": { type: "boolean", default: false },
    "skip-profile": { type: "boolean", default: false },
    "profile-seconds": { type: "string", default: "20" },
    main: { type: "string", default: DEFAULT_MAIN }
  }
})
const rate = Number(args.rate)
const symbolCount = Number(args.symbols)
const eventsPerSecond = Number(args.events)
const warmupS = Number(args.warmup)
const durationS = Number(args.duration)
const quietS = Number(args.quiet)
const pollMs = Number(args["poll-ms"])
const pollSymbolCount = Number(args["poll-symbols"])
const limit = Number(args.limit)
const sampleMs = Number(args["sample-ms"])
const baselineSeconds = Number(args["baseline-seconds"])
const profileSeconds = Number(args["profile-seconds"])
const mainJs = path.resolve(args.main)
for (const [name, n, min, max] of [
  ["--rate", rate, 1, 200_000],
  ["--symbols", symbolCount, 1, TRADE_SYMBOLS.length],
  ["--events", eventsPerSecond, 1, 200_000],
  ["--warmup", warmupS, 0, 3600],
  ["--duration", durationS, 5, 3600],
  ["--quiet", quietS, 3, 3600],
  ["--poll-ms", pollMs, 10, 10_000],
  ["--poll-symbols", pollSymbolCount, 1, TRADE_SYMBOLS.length],
  ["--limit", limit, 1, 1000],
  ["--sample-ms", sampleMs, 100, 60_000],
  ["--baseline-seconds", baselineSeconds, 8, 3600],
  ["--profile-seconds", profileSeconds, 5, 3600]
] as const) {
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number from ${min} to ${max}, got ${n}`)
}
if (pollSymbolCount > symbolCount) throw new Error("--poll-symbols must not exceed --symbols")
const symbols: ReadonlyArray<string> = TRADE_SYMBOLS.slice(0, symbolCount)
/** Spread over the list: with 4 of 20, the 1st, 6th, 11th and 16th. */
const polled: ReadonlyArray<string> = Array.from({ length: pollSymbolCount }, (_, i) => symbols[Math.floor((i * symbolCount) / pollSymbolCount)]!)

/** The wall clock with sub-millisecond resolution (ms since the epoch), as the latency is measured. */
const nowMs = () => performance.timeOrigin + performance.now()
/** p-th percentile (nearest rank) of sorted values. */
const pct = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

// ---------------------------------------------------------------------------------------------
// The sim's log lines

interface SimStart {
  /** When the sim's loop began (the log line's timestamp, the child's clock). */
  readonly beganMs: number
  /** S: the instant of event 0 and trade 0 (SIM_START unset: when the settings were read, floored to the second), µs. */
  readonly startMicros: number
  /** loop start − S, ms: how far trade_time runs behind the instant a trade is due. */
  readonly offsetMs: number
  readonly tradesPerSecond: number
}

const simStartOf = (line: LogLine): SimStart => {
  const first = /the first event at ([^\s;]+)/.exec(line.message)
  const trades = /and (\d+) aggregate trade\(s\)\/s/.exec(line.message)
  const beganMs = Date.parse(line.timestamp)
  const startMicros = first === null ? Number.NaN : isoMicros(first[1]!)
  if (!Number.isFinite(beganMs) || !Number.isFinite(startMicros)) throw new Error(`cannot read the sim's start line: ${line.timestamp} ${line.message}`)
  return { beganMs, startMicros, offsetMs: beganMs - startMicros / 1000, tradesPerSecond: trades === null ? 0 : Number(trades[1]) }
}

/** The sim's stop line: trades it published (0 when it ran without trades), or undefined before it stopped. */
const simPublishedTrades = (lines: ReadonlyArray<LogLine>): number | undefined => {
  const line = lines.find((l) => l.message.startsWith("sim stopped after publishing "))
  if (line === undefined) return undefined
  const m = /and (\d+) trade\(s\)/.exec(line.message)
  return m === null ? 0 : Number(m[1])
}

// ---------------------------------------------------------------------------------------------
// Reading the store while the process writes it

/** Trades stored now: Σ per symbol of MAX(id) − MIN(id) + 1 (ids are consecutive per symbol; index lookups only). */
const storedCounter = (db: SqliteDb) => {
  const minStmt = db.prepare("SELECT MIN(agg_trade_id) AS lo FROM trades WHERE symbol = ?")
  const maxStmt = db.prepare("SELECT MAX(agg_trade_id) AS hi FROM trades WHERE symbol = ?")
  const firstIds = new Map<string, number>()
  return () => {
    let n = 0
    for (const s of symbols) {
      let lo = firstIds.get(s)
      if (lo === undefined) {
        const r = minStmt.get(s)?.["lo"]
        if (r === null || r === undefined) continue
        lo = Number(r)
        firstIds.set(s, lo)
      }
      const hi = maxStmt.get(s)?.["hi"]
      if (hi !== null && hi !== undefined) n += Number(hi) - lo + 1
    }
    return n
  }
}

interface FinalCounts {
  readonly rows: number
  readonly holes: number
  readonly gaps: number
  readonly perSymbol: number
}

/** After the stop: rows in `trades`, ids missing inside each symbol's [min, max], rows of `trade_gaps`, symbols with trades. */
const finalCounts = (file: string): FinalCounts =>
  withReadOnly(file, (db) => {
    const bySymbol = db.prepare("SELECT COUNT(*) AS n, MIN(agg_trade_id) AS lo, MAX(agg_trade_id) AS hi FROM trades GROUP BY symbol").all()
    let rows = 0
    let holes = 0
    for (const r of bySymbol) {
      rows += Number(r["n"])
      holes += Number(r["hi"]) - Number(r["lo"]) + 1 - Number(r["n"])
    }
    const gaps = Number(db.prepare("SELECT COUNT(*) AS n FROM trade_gaps").get()!["n"])
    return { rows, holes, gaps, perSymbol: bySymbol.length }
  })

// ---------------------------------------------------------------------------------------------
// The latency probe: /agg-trades/latest per polled symbol

/** Ids (previous newest, toId] first seen in the answer received at seenAt; notBefore: the send time of the previous answered poll. */
interface Sighting {
  readonly toId: number
  readonly seenAt: number
  readonly notBefore: number | undefined
  /** trade_time of toId as the API gave it, µs. */
  readonly apiMicros: number
}

interface Probe {
  readonly sightings: Map<string, Array<Sighting>>
  readonly responseMs: Array<number>
  polls: number
  failed: number
  bytes: number
  /** Answers with `limit` rows that did not reach back to the previous newest id (the rest were proven visible by order). */
  truncated: number
  /** Answers whose ids were not consecutive (would break the first-seen rule). */
  holes: number
  stop: boolean
  readonly done: Promise<void>
}

interface AggTradeJson {
  readonly agg_trade_id: number
  readonly trade_time: string
}

const startProbe = (base: string): Probe => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: polled.length })
  const probe: Omit<Probe, "done"> = { sightings: new Map(polled.map((s) => [s, []])), responseMs: [], polls: 0, failed: 0, bytes: 0, truncated: 0, holes: 0, stop: false }
  const loop = async (symbol: string, phase: number) => {
    await sleep(phase) // the symbols' polls are spread over the interval
    const url = `${base}/agg-trades/latest?symbol=${symbol}&limit=${limit}`
    const sightings = probe.sightings.get(symbol)!
    let newest: number | undefined
    let lastSent: number | undefined
    let next = nowMs()
    while (!probe.stop) {
      const sent = nowMs()
      let answer: Awaited<ReturnType<typeof timedGet>> | undefined
      try {
        answer = await timedGet(agent, url)
      } catch {
        answer = undefined
      }
      const received = nowMs()
      probe.polls++
      if (answer === undefined || answer.status !== 200) probe.failed++
      else {
        probe.bytes += answer.body.length
        probe.responseMs.push(answer.ms)
        const rows = JSON.parse(answer.body.toString("utf8")) as ReadonlyArray<AggTradeJson>
        if (rows.length > 0) {
          const top = rows[0]!.agg_trade_id
          for (let i = 1; i < rows.length; i++) if (rows[i]!.agg_trade_id !== top - i) probe.holes++
          if (newest === undefined || top > newest) {
            if (newest !== undefined && rows.length === limit && rows[rows.length - 1]!.agg_trade_id > newest + 1) probe.truncated++
            sightings.push({ toId: top, seenAt: received, notBefore: newest === undefined ? undefined : lastSent, apiMicros: isoMicros(rows[0]!.trade_time) })
            newest = top
          }
        }
        lastSent = sent
      }
      next += pollMs
      const wait = next - nowMs()
      if (wait < -pollMs) next = nowMs() // fell behind (a slow answer): no burst to catch up
      await sleep(Math.max(0, wait))
    }
    agent.destroy()
  }
  const done = Promise.all(polled.map((s, i) => loop(s, (i * pollMs) / polled.length))).then(() => undefined)
  return Object.assign(probe, { done })
}

interface Latency {
  /** first seen − due instant, ms (the figure). */
  readonly upper: ReadonlyArray<number>
  /** previous poll's send − due instant, ms (a lower bound). */
  readonly lower: ReadonlyArray<number>
  /** first seen − trade_time (no offset correction), ms. */
  readonly raw: ReadonlyArray<number>
  /** p99 / max of the upper bound per 10 s of due time. */
  readonly slices: ReadonlyArray<{ readonly fromS: number; readonly p99: number; readonly max: number }>
  readonly expected: number
  readonly unseen: number
  readonly apiMismatches: number
}

const SLICE_S = 10

/** The polled symbols' trades due in the window, each matched with the answer that first showed it. */
const latencies = (db: SqliteDb, probe: Probe, sim: SimStart): Latency => {
  const fromDue = sim.beganMs + warmupS * 1000
  const toDue = fromDue + durationS * 1000
  // due = trade_time + offset, so the window in trade_time (µs):
  const fromUs = Math.ceil((fromDue - sim.offsetMs) * 1000)
  const toUs = Math.ceil((toDue - sim.offsetMs) * 1000)
  const query = db.prepare(
    "SELECT agg_trade_id AS id, trade_time_us AS us FROM trades WHERE symbol = ? AND trade_time_us >= ? AND trade_time_us < ? ORDER BY agg_trade_id"
  )
  const byId = db.prepare("SELECT trade_time_us AS us FROM trades WHERE symbol = ? AND agg_trade_id = ?")
  const upper: Array<number> = []
  const lower: Array<number> = []
  const raw: Array<number> = []
  const bySlice = new Map<number, Array<number>>()
  let expected = 0
  let unseen = 0
  let apiMismatches = 0
  for (const symbol of polled) {
    const sightings = probe.sightings.get(symbol)!
    for (const s of sightings) {
      const us = byId.get(symbol, s.toId)?.["us"]
      if (us === undefined || Number(us) !== s.apiMicros) apiMismatches++
    }
    let j = 0
    for (const row of query.all(symbol, fromUs, toUs)) {
      expected++
      const id = Number(row["id"])
      const due = Number(row["us"]) / 1000 + sim.offsetMs
      while (j < sightings.length && sightings[j]!.toId < id) j++
      const seen = sightings[j]
      if (seen === undefined) {
        unseen++
        continue
      }
      const l = seen.seenAt - due
      upper.push(l)
      raw.push(seen.seenAt - Number(row["us"]) / 1000)
      if (seen.notBefore !== undefined) lower.push(seen.notBefore - due)
      const slice = Math.floor((due - fromDue) / (SLICE_S * 1000))
      let xs = bySlice.get(slice)
      if (xs === undefined) bySlice.set(slice, (xs = []))
      xs.push(l)
    }
  }
  const slices = [...bySlice.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([slice, xs]) => {
      const s = summarize(xs)
      return { fromS: warmupS + slice * SLICE_S, p99: s.p99, max: s.max }
    })
  return { upper, lower, raw, slices, expected, unseen, apiMismatches }
}

// ---------------------------------------------------------------------------------------------
// One process

interface Sample {
  readonly t: number
  /** Seconds since the sim's loop began. */
  readonly elapsedS: number
  /** Trades the sim has due by then. */
  readonly due: number
  readonly stored: number
  readonly cpuS: number | undefined
  readonly rss: number | undefined
  readonly machine: ReturnType<typeof machineJiffies>
}

interface Phase {
  readonly fromS: number
  readonly toS: number
  readonly storedRate: number
  readonly backlogSlope: number
  readonly backlogEnd: number
  readonly backlogMax: number
  readonly backlogMean: number
  /** % of one core. */
  readonly cpu: number
  /** % of all cores. */
  readonly machine: number
  readonly rssMean: number
  readonly rssMax: number
  readonly samples: ReadonlyArray<Sample>
}

/** Rates, backlog, CPU and RSS over the samples with fromS ≤ elapsed ≤ toS. */
const phaseOf = (samples: ReadonlyArray<Sample>, fromS: number, toS: number): Phase => {
  const xs = samples.filter((s) => s.elapsedS >= fromS && s.elapsedS <= toS)
  const first = xs[0]
  const last = xs[xs.length - 1]
  const dt = first !== undefined && last !== undefined ? (last.t - first.t) / 1000 : 0
  const backlog = xs.map((s) => [s.elapsedS, s.due - s.stored] as const)
  const rss = xs.map((s) => s.rss ?? 0).filter((r) => r > 0)
  return {
    fromS,
    toS,
    storedRate: dt > 0 ? (last!.stored - first!.stored) / dt : Number.NaN,
    backlogSlope: slope(backlog),
    backlogEnd: backlog.length > 0 ? backlog[backlog.length - 1]![1] : Number.NaN,
    backlogMax: backlog.reduce((m, b) => Math.max(m, b[1]), Number.NEGATIVE_INFINITY),
    backlogMean: backlog.reduce((a, b) => a + b[1], 0) / Math.max(1, backlog.length),
    cpu: dt > 0 && first!.cpuS !== undefined && last!.cpuS !== undefined ? (100 * (last!.cpuS - first!.cpuS)) / dt : Number.NaN,
    machine: machineBusyPercent(first?.machine, last?.machine),
    rssMean: rss.reduce((a, b) => a + b, 0) / Math.max(1, rss.length),
    rssMax: rss.reduce((a, b) => Math.max(a, b), 0),
    samples: xs
  }
}

interface RunResult {
  readonly sim: SimStart
  readonly spawnToLoopMs: number
  readonly samples: ReadonlyArray<Sample>
  readonly hwm: number | undefined
  readonly probe: Probe | undefined
  readonly latency: Latency | undefined
  readonly published: number | undefined
  readonly counts: FinalCounts
  readonly jsonl: number
  readonly exitCode: number | null
  readonly stopMs: number
  readonly behindLogged: boolean
  readonly unstoredLogged: ReadonlyArray<string>
}

/**
 * `--role=all` with `tradesPerSecond` trades/s for `seconds` from the sim's loop start, sampled; with
 * `probeUntilS`, the latency probe runs from the start until then. Stopped with SIGTERM, its files counted.
 */
const runPlatform = async (options: {
  readonly label: string
  readonly tradesPerSecond: number
  readonly seconds: number
  readonly probeUntilS?: number
  readonly nodeArgs?: ReadonlyArray<string>
}): Promise<RunResult> => {
  const dir = tempDir(`trades-${options.tradesPerSecond}`)
  try {
    const port = await freePort()
    const base = `http://127.0.0.1:${port}`
    const file = path.join(dir, "app.db")
    const spawnedAt = Date.now()
    const role: RoleProcess = track(
      startRole(
        options.label,
        "all",
        {
          SOURCE: "sim",
          SIM_EVENTS_PER_SECOND: String(eventsPerSecond),
          SIM_TRADES_PER_SECOND: String(options.tradesPerSecond),
          SIM_SEED: "42",
          SYMBOLS: symbols.join(","),
          BROKER_MODE: "direct",
          STORAGE_PATH: file,
          RAW_DIR: path.join(dir, "raw"),
          PORT: String(port)
        },
        { main: mainJs, ...(options.nodeArgs === undefined ? {} : { nodeArgs: options.nodeArgs }) }
      )
    )
    try {
      await waitLive(`${base}/health/live`, role)
      const sim = simStartOf(await role.waitForLine((l) => l.message.startsWith("simulating "), 10_000, "sim start line"))
      if (sim.tradesPerSecond !== options.tradesPerSecond) {
        throw new Error(`the sim says ${sim.tradesPerSecond} trades/s, SIM_TRADES_PER_SECOND was ${options.tradesPerSecond}`)
      }
      const deadline = Date.now() + 10_000
      while (!fs.existsSync(file)) {
        if (Date.now() > deadline) throw new Error(`${file} was not created`)
        await sleep(50)
      }
      const db = new Database(file, { readonly: true, fileMustExist: true })
      let latency: Latency | undefined
      let probe: Probe | undefined
      const samples: Array<Sample> = []
      let hwm: number | undefined
      try {
        const stored = storedCounter(db)
        probe = options.probeUntilS === undefined ? undefined : startProbe(base)
        const endAt = sim.beganMs + options.seconds * 1000
        let next = Date.now()
        while (Date.now() < endAt) {
          const t = Date.now()
          samples.push({
            t,
            elapsedS: (t - sim.beganMs) / 1000,
            due: dueBy(t - sim.beganMs, options.tradesPerSecond),
            stored: options.tradesPerSecond > 0 ? stored() : 0,
            cpuS: cpuSeconds(role.pid),
            rss: procStatus(role.pid, "VmRSS"),
            machine: machineJiffies()
          })
          if (role.child.exitCode !== null || role.child.signalCode !== null) throw new Error(`${options.label} exited (${role.child.exitCode ?? role.child.signalCode}) during the run`)
          if (probe !== undefined && !probe.stop && (t - sim.beganMs) / 1000 >= options.probeUntilS!) {
            probe.stop = true
            await probe.done
          }
          next += sampleMs
          await sleep(Math.max(0, next - Date.now()))
        }
        if (probe !== undefined) {
          probe.stop = true
          await probe.done
          latency = latencies(db, probe, sim)
        }
        hwm = procStatus(role.pid, "VmHWM")
      } finally {
        if (probe !== undefined) probe.stop = true
        db.close()
      }
      const stop = await role.stop()
      const published = simPublishedTrades(role.lines)
      return {
        sim,
        spawnToLoopMs: sim.beganMs - spawnedAt,
        samples,
        hwm,
        probe,
        latency,
        published,
        counts: finalCounts(file),
        jsonl: jsonlLines(path.join(dir, "raw", "trades")),
        exitCode: stop.code,
        stopMs: stop.ms,
        behindLogged: simFellBehind(role.lines),
        unstoredLogged: unstoredLines(role.lines)
      }
    } finally {
      role.kill()
    }
  } finally {
    removeDir(dir)
  }
}

// ---------------------------------------------------------------------------------------------

const main = async () => {
  const out = transcript()
  const print = out.print
  print(
    `bench: trades in direct mode: \`--role=all\`, SOURCE=sim, ${perSecond(rate)} aggregate trades (SIM_TRADES_PER_SECOND) over ${symbols.length} symbols ` +
      `and ${perSecond(eventsPerSecond)} ticker events, BROKER_MODE=direct, SIM_START unset: trades/s stored, exchange-time-to-queryable latency through ` +
      "`GET /agg-trades/latest`, CPU and RSS of the process"
  )
  print(machineLine())
  const defaults = productDefaults()
  print(
    `window: ${durationS} s after a ${warmupS} s warm-up (from the sim's loop start), samples every ${sampleMs} ms; then ${quietS} s without the probe; ` +
      `the product's defaults: ${defaultsText(defaults)}; node options of npm start: ${launchNodeArgs.length === 0 ? "none" : launchNodeArgs.join(" ")}`
  )
  print(`symbols: ${symbols.join(",")}`)
  print(
    `probe: GET /agg-trades/latest?symbol=…&limit=${limit} every ${pollMs} ms for each of ${polled.join(", ")} ` +
      `(${perSecond((polled.length * 1000) / pollMs)} requests; ${fmt(rate / symbols.length, 0)} trades/s per symbol, ${fmt((rate / symbols.length) * (pollMs / 1000), 0)} per poll interval)`
  )

  // Baseline: the same process without trades.
  let baseline: Phase | undefined
  let baselineRss: number | undefined
  if (!args["skip-baseline"]) {
    log(`\nbaseline: SIM_TRADES_PER_SECOND=0 for ${baselineSeconds} s`)
    const b = await runPlatform({ label: "all@0", tradesPerSecond: 0, seconds: baselineSeconds })
    if (b.exitCode !== 0) throw new Error(`the baseline process exited with ${b.exitCode}`)
    baseline = phaseOf(b.samples, 5, baselineSeconds)
    baselineRss = b.hwm
    print(
      `baseline (same run): the same process with SIM_TRADES_PER_SECOND=0 (${perSecond(eventsPerSecond)} ticker events only), ${baselineSeconds} s, judged from 5 s: ` +
        `CPU ${fmt(baseline.cpu, 1)} % of one core, RSS mean ${fmt(baseline.rssMean / MB, 0)} MB, max ${fmt(baseline.rssMax / MB, 0)} MB, VmHWM ${fmt((baselineRss ?? 0) / MB, 0)} MB`
    )
  }

  const windowEndS = warmupS + durationS
  const probeUntilS = windowEndS + 2 // trades due at the very end of the window still get seen
  const quietFromS = probeUntilS + 1
  const totalS = quietFromS + quietS
  log(`\n${perSecond(rate)} trades: ${totalS} s (probe until ${probeUntilS} s)`)
  const r = await runPlatform({ label: `all@${rate}`, tradesPerSecond: rate, seconds: totalS, probeUntilS })
  const w = phaseOf(r.samples, warmupS, windowEndS)
  const q = phaseOf(r.samples, quietFromS, totalS)
  const lat = r.latency!
  const probe = r.probe!

  print("")
  print(
    `sim: loop began ${fmt(r.spawnToLoopMs / 1000, 2)} s after spawn; SIM_START unset, so trade 0's instant S = ${new Date(r.sim.startMicros / 1000).toISOString()} ` +
      `(the second the settings were read, floored): trade_time runs ${fmt(r.sim.offsetMs, 0)} ms behind the instant each trade is due; the latency adds that back`
  )

  // 1. Stored rate and backlog.
  const keptRate = w.storedRate >= 0.98 * rate
  const keptSlope = w.backlogSlope <= 0.02 * rate
  const complete =
    r.exitCode === 0 &&
    r.published !== undefined &&
    r.counts.rows === r.published &&
    r.jsonl === r.published &&
    r.counts.holes === 0 &&
    r.counts.gaps === 0 &&
    r.counts.perSymbol === symbols.length &&
    r.unstoredLogged.length === 0
  const keptUp = keptRate && keptSlope && !r.behindLogged && complete
  const backlogEvery10 = w.samples
    .filter((_, i) => i % Math.max(1, Math.round(10_000 / sampleMs)) === 0)
    .map((s) => thousands(s.due - s.stored))
  print("")
  print(`1. trades stored (SQLite, read-only, every ${sampleMs} ms), ${warmupS}–${windowEndS} s:`)
  print(
    `  stored ${perSecond(w.storedRate)} = ${fmt(w.storedRate / rate, 3)} × offered ${perSecond(rate)}; backlog (offered − stored) mean ${thousands(w.backlogMean)}, ` +
      `max ${thousands(w.backlogMax)}, end ${thousands(w.backlogEnd)}, slope ${fmt(w.backlogSlope, 1)} trades/s; every 10 s: ${backlogEvery10.join(" ")}`
  )
  print(
    `  at the end (SIGTERM, drained, exit ${r.exitCode} after ${r.stopMs} ms): published ${r.published === undefined ? "?" : thousands(r.published)}, ` +
      `rows in trades ${thousands(r.counts.rows)} (${r.counts.perSymbol} symbols, ${thousands(r.counts.holes)} ids missing inside their ranges), ` +
      `jsonl ${thousands(r.jsonl)}, trade_gaps ${r.counts.gaps}${r.behindLogged ? "; the sim logged that it fell behind" : ""}` +
      (r.unstoredLogged.length > 0 ? `; it logged: ${r.unstoredLogged.join(" | ")}` : "")
  )

  // 2. Latency.
  const up = [...lat.upper].sort((a, b) => a - b)
  const lo = [...lat.lower].sort((a, b) => a - b)
  const rawSorted = [...lat.raw].sort((a, b) => a - b)
  const respSorted = [...probe.responseMs].sort((a, b) => a - b)
  const probeSeconds = probeUntilS
  print("")
  print(
    `2. exchange-time-to-queryable latency, ms: first seen through GET /agg-trades/latest − the trade's due instant ` +
      `(trade_time + ${fmt(r.sim.offsetMs, 0)} ms), trades of ${polled.length} symbols due in ${warmupS}–${windowEndS} s:`
  )
  print("")
  print("| measure | trades | mean | p50 | p90 | p99 | max |")
  print("|---|---:|---:|---:|---:|---:|---:|")
  const row = (name: string, xs: ReadonlyArray<number>) => {
    const s = summarize(xs)
    print(`| ${name} | ${thousands(s.count)} | ${fmt(s.mean, 1)} | ${fmt(s.p50, 1)} | ${fmt(pct(xs, 90), 1)} | ${fmt(s.p99, 1)} | ${fmt(s.max, 1)} |`)
  }
  row("first seen − due (the figure; an upper bound)", up)
  row("previous poll sent − due (a lower bound)", lo)
  row(`first seen − trade_time (uncorrected: + ${fmt(r.sim.offsetMs, 0)} ms)`, rawSorted)
  print("")
  print(
    `  ${thousands(up.length)} of ${thousands(lat.expected)} trades seen${lat.unseen > 0 ? ` (${thousands(lat.unseen)} NOT SEEN)` : ""}; ` +
      `p99 / max per ${SLICE_S} s (s since the loop start): ${lat.slices.map((s) => `${s.fromS}s ${fmt(s.p99, 0)}/${fmt(s.max, 0)}`).join(", ")}`
  )
  print(
    `  probe: ${thousands(probe.polls)} polls in ${probeSeconds} s (${fmt(probe.polls / probeSeconds, 0)}/s), ${probe.failed} failed, ` +
      `${fmt(probe.bytes / probeSeconds / 1024, 0)} KiB/s; answer time p50 ${fmt(pct(respSorted, 50), 1)}, p99 ${fmt(pct(respSorted, 99), 1)}, max ${fmt(pct(respSorted, 100), 1)} ms; ` +
      `${probe.truncated} answers did not list every new id (more than ${limit} since the previous), ${probe.holes} non-consecutive ids in answers, ` +
      `${lat.apiMismatches} trade_time mismatches API vs SQLite`
  )

  // 3. CPU and memory.
  print("")
  print("3. the platform process (user + system CPU from /proc/<pid>/stat; 100 % = one core), RSS:")
  print("")
  print("| phase | stored trades/s | process CPU % | machine CPU % (all cores) | RSS mean MB | RSS max MB |")
  print("|---|---:|---:|---:|---:|---:|")
  print(
    `| window ${warmupS}–${windowEndS} s, with the probe (the figure) | ${thousands(w.storedRate)} | ${fmt(w.cpu, 1)} | ${fmt(w.machine, 0)} | ${fmt(w.rssMean / MB, 0)} | ${fmt(w.rssMax / MB, 0)} |`
  )
  print(`| ${quietFromS}–${totalS} s, no probe | ${thousands(q.storedRate)} | ${fmt(q.cpu, 1)} | ${fmt(q.machine, 0)} | ${fmt(q.rssMean / MB, 0)} | ${fmt(q.rssMax / MB, 0)} |`)
  if (baseline !== undefined) {
    print(`| baseline: no trades (SIM_TRADES_PER_SECOND=0) | 0 | ${fmt(baseline.cpu, 1)} | ${fmt(baseline.machine, 0)} | ${fmt(baseline.rssMean / MB, 0)} | ${fmt(baseline.rssMax / MB, 0)} |`)
  }
  print("")
  print(
    `  VmHWM before the stop ${fmt((r.hwm ?? 0) / MB, 0)} MB; CPU per 1,000 trades/s: ${fmt((q.cpu - (baseline?.cpu ?? 0)) / (rate / 1000), 2)} % of a core` +
      (baseline !== undefined ? " (no-probe phase less the baseline)" : " (no-probe phase)") +
      `; the probe's ${fmt(probe.polls / probeSeconds, 0)} requests/s: ${fmt(w.cpu - q.cpu, 1)} % (window less the no-probe phase)`
  )

  print("")
  print(
    `verdict: ${perSecond(rate)} over ${symbols.length} symbols ${keptUp ? "KEPT UP" : "NOT KEPT UP"} ` +
      `(stored ${fmt(w.storedRate / rate, 3)} × offered, goal ≥ 0.98: ${keptRate ? "met" : "missed"}; backlog slope ${fmt(w.backlogSlope, 1)}/s, goal ≤ ${fmt(0.02 * rate, 0)}: ${keptSlope ? "met" : "missed"}; ` +
      `every trade stored once: ${complete ? "yes" : "NO"}); stored ${perSecond(w.storedRate)}, latency p50 ${fmt(pct(up, 50), 0)} ms, p99 ${fmt(pct(up, 99), 0)} ms, ` +
      `CPU ${fmt(w.cpu, 0)} % of one core, RSS max ${fmt(w.rssMax / MB, 0)} MB`
  )
  if (!complete) print(`  TRADES LOST OR PROCESS FAILED: see the counts under 1.`)

  // A profile when it looks off.
  const slow = pct(up, 99) > 1000
  let profileGroups = ""
  if (!args["skip-profile"] && (!keptUp || slow) && complete) {
    fs.mkdirSync(PROFILE_DIR, { recursive: true })
    const before = newestCpuProfile(PROFILE_DIR)
    log(`\nprofiling ${perSecond(rate)} for ${profileSeconds} s under node --cpu-prof`)
    const p = await runPlatform({
      label: `profiled@${rate}`,
      tradesPerSecond: rate,
      seconds: profileSeconds,
      nodeArgs: [...launchNodeArgs, "--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`, "--cpu-prof-interval=500"]
    })
    const file = newestCpuProfile(PROFILE_DIR)
    if (file === undefined || file === before) print("no CPU profile was written")
    else {
      const summary = summarizeCpuProfile(file, mainJs)
      const pp = phaseOf(p.samples, Math.min(5, profileSeconds / 2), profileSeconds)
      profileGroups = ownerGroups(summary.byOwner)
        .filter(([, ms]) => ms / summary.busyMs >= 0.01)
        .map(([g, ms]) => `${g} ${fmt((100 * ms) / summary.busyMs, 0)} %`)
        .join(", ")
      print("")
      print(`CPU profile of \`--role=all\` at ${perSecond(rate)} trades (${profileSeconds} s, no probe; stored ${perSecond(pp.storedRate)} while profiled, CPU ${fmt(pp.cpu, 0)} %):`)
      print(`by group: ${profileGroups}`)
      print(summary.text)
    }
  }

  if (!keptUp && complete) {
    print("")
    print("**What limits it** (figures of this run):")
    print(
      `- The process stored ${perSecond(w.storedRate)} of ${perSecond(rate)} using ${fmt(w.cpu, 0)} % CPU (100 % = one core) while the machine was ` +
        `${fmt(w.machine, 0)} % busy over its ${os.cpus().length} cores. One JavaScript thread runs the sim, the in-process queues, the consumers' batching, ` +
        "both trade sinks and the API."
    )
    if (profileGroups !== "") print(`- CPU profile at ${perSecond(rate)}: ${profileGroups}.`)
    print("")
    print("**What would move it:**")
    print("- Whatever moves the trade store path (TradeWriter.storeBatch and the JSONL trade sink per batch), and the sim's per-trade work, which shares the thread.")
  }

  recordResults("trades-direct", toMarkdown(out.lines))
  return keptUp
}

runBench("trades-direct", main)

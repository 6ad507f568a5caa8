/**
 * Direct mode end to end (issue 8, bench 2): the highest rate `node dist/main.js --role=all` sustains
 * with `SOURCE=sim` and `BROKER_MODE=direct`. Goal: ≥ `--target` (50,000) events/s.
 *
 * For each rate of `--rates` (5k, 10k, 20k, 50k, 100k events/s over `--symbols` (10) symbols), a fresh
 * process on a fresh database and raw dir (bench/.data/tmp), SIM_SEED=42 and SIM_START = the spawn
 * instant, runs for `--duration` (60) s from the sim's first event. Every `--sample-ms` (1000) ms the
 * bench reads:
 * - stored: the sum of `events` over `GET /symbols`;
 * - generated: the events the sim has due by then (event k is due k/rate s after its loop began, which
 *   the sim's start log line gives), so lag = generated − stored;
 * - `components.store.newest_event_age_seconds` of `GET /health`, shown less the constant offset
 *   between SIM_START and the sim's loop start (the time the process took to start), so that it is the
 *   age of the newest stored event relative to its schedule;
 * - the process's CPU (user + system, /proc/<pid>/stat) and RSS.
 * Then SIGTERM: the sim stops (it logs how many events it published), the consumer drains, the
 * process must exit 0, and the bench compares, from the files: rows in `ticks`, the sum of
 * `symbol_stats.events`, the lines of the JSONL raw log, the sim's published count, and k+1 for the
 * newest stored event k (deterministic from its timestamp, SIM_START and the rate).
 *
 * A rate is **sustained** when, after `--warmup` (5) s: the stored rate is ≥ 98 % of the rate, the lag
 * does not grow (its least-squares slope ≤ 2 % of the rate), the newest event's age relative to its
 * schedule stays ≤ 2.5 s, the sim never logged that it fell behind, and at the end every generated
 * event is stored once in SQLite and in the raw log (all counts above equal). A count mismatch means
 * events were lost: the bench says so, stops the ramp and exits 1.
 *
 * Baseline in the same run: the store path's plain better-sqlite3 loop (bench/store-path.ts: the same
 * rows into the same schema in batches of 500), i.e. what the database itself takes on this machine,
 * and, for reference, the product's sinks in process (fanOut of SQLite and JSONL) in batches of the
 * consumer's default size (CONSUMER_BATCH_SIZE), the ceiling of what the consumer can store. Unless `--skip-profile`, the first rate that is not sustained is run
 * once more for `--profile-seconds` (20) under `node --cpu-prof` (bench/.data/profiles/) and the profile
 * is summarised by package: what limits the process.
 *
 *   node dist/bench/bench/e2e-direct.js [--rates 5000,10000,20000,50000,100000] [--duration 60]
 *     [--symbols 10] [--warmup 5] [--sample-ms 1000] [--target 50000] [--baseline-events 50000]
 *     [--skip-profile] [--profile-seconds 20] [--main dist/main.js]
 *
 * Exit code 0 when the highest sustained rate ≥ target, 1 when not (or events were lost), 2 when the
 * bench failed (a process that did not start, did not stop with exit code 0, or crashed).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { DEFAULT_MAIN, fmt, log, machineLine, recordResults, runBench, sleep, transcript } from "./lib.js"
import {
  cpuSeconds,
  createSchema,
  dueBy,
  freePort,
  judgeRate,
  type RateSample,
  jsonlLines,
  machineBusyPercent,
  machineJiffies,
  MB,
  median,
  newestAge,
  newestCpuProfile,
  ownerGroups,
  perSecond,
  plainInsert,
  procStatus,
  PROFILE_DIR,
  productDefaults,
  defaultsText,
  removeDir,
  runProduct,
  simIndexAt,
  simPublishedOf,
  simStartOf,
  simFellBehind,
  simTicks,
  startRole,
  storedSummary,
  summarizeCpuProfile,
  symbolsOf,
  symbolsTotal,
  tempDir,
  thousands,
  track,
  unstoredLines,
  waitLive,
  toMarkdown
} from "./pipeline.js"

const { values: args } = parseArgs({
  options: {
    rates: { type: "string", default: "5000,10000,20000,50000,100000" },
    duration: { type: "string", default: "60" },
    symbols: { type: "string", default: "10" },
    warmup: { type: "string", default: "5" },
    "sample-ms": { type: "string", default: "1000" },
    target: { type: "string", default: "50000" },
    "baseline-events": { type: "string", default: "50000" },
    "skip-profile": { type: "boolean", default: false },
    "profile-seconds": { type: "string", default: "20" },
    main: { type: "string", default: DEFAULT_MAIN }
  }
})
const rates = args.rates.split(",").map((r) => Number(r.trim()))
const durationS = Number(args.duration)
const warmupS = Number(args.warmup)
const sampleMs = Number(args["sample-ms"])
const target = Number(args.target)
const baselineEvents = Number(args["baseline-events"])
const profileSeconds = Number(args["profile-seconds"])
const symbols = symbolsOf(Number(args.symbols))
const mainJs = path.resolve(args.main)
for (const r of rates) if (!Number.isSafeInteger(r) || r < 1 || r > 200_000) throw new Error(`--rates: each rate must be 1..200000, got ${r}`)
for (const [name, n, min] of [
  ["--duration", durationS, 5],
  ["--warmup", warmupS, 0],
  ["--sample-ms", sampleMs, 100],
  ["--baseline-events", baselineEvents, 1000],
  ["--profile-seconds", profileSeconds, 5]
] as const) {
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be ≥ ${min}, got ${n}`)
}
if (warmupS >= durationS - 2) throw new Error("--warmup must be shorter than --duration by a few seconds")

interface Sample extends RateSample {
  readonly cpuS: number | undefined
  readonly rss: number | undefined
  readonly machine: ReturnType<typeof machineJiffies>
}

interface RateResult {
  readonly rate: number
  readonly samples: ReadonlyArray<Sample>
  readonly startOffsetS: number
  readonly published: number | undefined
  readonly rows: number
  readonly statsEvents: number
  readonly jsonl: number
  readonly expectedFromNewest: number | undefined
  readonly exitCode: number | null
  readonly stopMs: number
  readonly behindLogged: boolean
  readonly unstoredLogged: ReadonlyArray<string>
  readonly storedRate: number
  readonly lagSlope: number
  readonly lagEnd: number
  readonly lagMax: number
  readonly ageMaxAdj: number | undefined
  readonly cpuPercent: number
  /** The whole machine's CPU busy (all cores, 100 % = every core), over the judged window. */
  readonly machinePercent: number
  readonly rssMax: number
  readonly complete: boolean
  readonly sustained: boolean
  readonly why: ReadonlyArray<string>
}

/** One process at `rate`: started, sampled for durationS, stopped, its files counted. */
const runRate = async (rate: number, options: { readonly nodeArgs?: ReadonlyArray<string>; readonly seconds: number; readonly label: string }): Promise<RateResult> => {
  const dir = tempDir(`e2e-${rate}`)
  try {
    const port = await freePort()
    const base = `http://127.0.0.1:${port}`
    const startMs = Date.now()
    const startMicros = startMs * 1000
    const role = track(
      startRole(
        options.label,
        "all",
        {
          SOURCE: "sim",
          SIM_EVENTS_PER_SECOND: String(rate),
          SIM_SEED: "42",
          SIM_START: new Date(startMs).toISOString(),
          SYMBOLS: symbols.join(","),
          BROKER_MODE: "direct",
          STORAGE_PATH: path.join(dir, "app.db"),
          RAW_DIR: path.join(dir, "raw"),
          PORT: String(port)
        },
        { main: mainJs, ...(options.nodeArgs === undefined ? {} : { nodeArgs: options.nodeArgs }) }
      )
    )
    try {
      await waitLive(`${base}/health/live`, role)
      const startLine = await role.waitForLine((l) => l.message.startsWith("simulating "), 10_000, "sim start line")
      const sim = simStartOf([startLine])!
      if (sim.firstEventMicros !== startMicros) {
        throw new Error(`the sim says its first event is at ${sim.firstEventMicros} µs, SIM_START was ${startMicros} µs`)
      }
      const began = sim.beganMs
      const startOffsetS = (began * 1000 - startMicros) / 1e6
      const samples: Array<Sample> = []
      const endAt = began + options.seconds * 1000
      let next = Date.now()
      while (Date.now() < endAt) {
        const t = Date.now()
        const [stored, ageS] = await Promise.all([symbolsTotal(base), newestAge(base)])
        samples.push({
          t,
          elapsedS: (t - began) / 1000,
          due: dueBy(t - began, rate),
          stored,
          ageS,
          cpuS: cpuSeconds(role.pid),
          rss: procStatus(role.pid, "VmRSS"),
          machine: machineJiffies()
        })
        if (role.child.exitCode !== null) throw new Error(`${options.label} exited with ${role.child.exitCode} during the run`)
        next += sampleMs
        await sleep(Math.max(0, next - Date.now()))
      }
      const stop = await role.stop()
      const published = simPublishedOf(role.lines)
      const summary = storedSummary(path.join(dir, "app.db"))
      const jsonl = jsonlLines(path.join(dir, "raw"))
      const newestK = summary.maxMicros === null ? undefined : simIndexAt(summary.maxMicros, startMicros, rate)
      const behindLogged = simFellBehind(role.lines)
      const unstoredLogged = unstoredLines(role.lines)
      const verdict = judgeRate(samples, { rate, warmupS, startOffsetS })
      const { ageMaxAdj, lagEnd, lagMax, lagSlope, storedRate } = verdict
      const window = samples.filter((s) => s.elapsedS >= warmupS && s.stored !== undefined)
      const first = window[0]
      const last = window[window.length - 1]
      const cpuWindow =
        first?.cpuS !== undefined && last?.cpuS !== undefined && last.t > first.t ? (100 * (last.cpuS - first.cpuS)) / ((last.t - first.t) / 1000) : Number.NaN
      const rssMax = samples.reduce((m, s) => Math.max(m, s.rss ?? 0), 0)
      const expectedFromNewest = newestK === undefined ? undefined : newestK + 1
      const complete =
        stop.code === 0 &&
        published !== undefined &&
        summary.rows === published &&
        summary.statsEvents === published &&
        jsonl === published &&
        expectedFromNewest === published &&
        unstoredLogged.length === 0
      const why: Array<string> = [...verdict.why]
      if (behindLogged) why.push("the sim logged that it fell behind schedule")
      if (!complete) {
        why.push(
          `not every event stored: exit ${stop.code}, published ${published}, ticks ${summary.rows}, symbol_stats ${summary.statsEvents}, ` +
            `jsonl ${jsonl}, newest stored is event #${newestK}${unstoredLogged.length > 0 ? `; it logged: ${unstoredLogged.join(" | ")}` : ""}`
        )
      }
      return {
        rate,
        samples,
        startOffsetS,
        published,
        rows: summary.rows,
        statsEvents: summary.statsEvents,
        jsonl,
        expectedFromNewest,
        exitCode: stop.code,
        stopMs: stop.ms,
        behindLogged,
        unstoredLogged,
        storedRate,
        lagSlope,
        lagEnd,
        lagMax,
        ageMaxAdj,
        cpuPercent: cpuWindow,
        machinePercent: machineBusyPercent(first?.machine, last?.machine),
        rssMax,
        complete,
        sustained: why.length === 0,
        why
      }
    } finally {
      role.kill()
    }
  } finally {
    removeDir(dir)
  }
}

/** The plain loop (batches of 500, as in store-path) and the product's sinks (the consumer's batch), in this process: median of 3. */
const baseline = async (sinkBatch: number) => {
  const ticks = simTicks(baselineEvents, { rate: 50_000, symbols, startMicros: Date.now() * 1000 - 2_000_000 })
  const plain: Array<number> = []
  const sinks: Array<number> = []
  for (let round = 0; round < 4; round++) {
    const a = tempDir("e2e-baseline")
    const b = tempDir("e2e-baseline")
    try {
      await createSchema(path.join(a, "app.db"))
      const p = plainInsert(path.join(a, "app.db"), ticks, 500)
      if (p.rows !== ticks.length) throw new Error(`the plain loop stored ${p.rows} of ${ticks.length} rows`)
      const s = await runProduct("sinks", ticks, b, { batchSize: sinkBatch })
      if (round > 0) {
        // round 0 warms up
        plain.push((ticks.length / p.ms) * 1000)
        sinks.push((ticks.length / s) * 1000)
      }
    } finally {
      removeDir(a)
      removeDir(b)
    }
  }
  return { plain: median(plain), sinks: median(sinks), plainAll: plain, sinksAll: sinks }
}

const main = async () => {
  const out = transcript()
  const print = out.print
  print(`bench: direct mode end to end: \`--role=all\`, SOURCE=sim, BROKER_MODE=direct, the highest sustained rate (goal ≥ ${perSecond(target)})`)
  print(machineLine())
  const defaults = productDefaults()
  print(
    `${symbols.length} symbols; ${durationS} s per rate from the sim's first event (the first ${warmupS} s not judged); samples every ${sampleMs} ms of ` +
      `/symbols (stored), /health (newest_event_age_seconds), /proc (CPU, RSS); the product's defaults: ${defaultsText(defaults)}`
  )
  if (durationS < 60) print(`note: ${durationS} s per rate, shorter than the issue's 60 s (time was short)`)

  const base = await baseline(defaults.batchSize)
  print(
    `baseline (same run, in this process, ${thousands(baselineEvents)} sim ticks, median of 3): ` +
      `the store path's plain better-sqlite3 loop, batches of 500: ${perSecond(base.plain)} (what the database itself takes); ` +
      `the product's sinks (fanOut sqlite+jsonl) in batches of ${defaults.batchSize} (the consumer's default): ${perSecond(base.sinks)} (the most the consumer can store)`
  )

  const results: Array<RateResult> = []
  let lost = false
  for (const rate of rates) {
    log(`\n${perSecond(rate)}: running for ${durationS} s`)
    const r = await runRate(rate, { seconds: durationS, label: `all@${rate}` })
    results.push(r)
    const lagsEvery10 = r.samples
      .filter((_, i) => i % Math.max(1, Math.round(10_000 / sampleMs)) === 0)
      .map((s) => (s.stored === undefined ? "?" : thousands(s.due - s.stored)))
    print(
      `${perSecond(rate)}: ${r.sustained ? "SUSTAINED" : "not sustained"}; stored ${perSecond(r.storedRate)}; lag end ${thousands(r.lagEnd)}, max ${thousands(r.lagMax)}, ` +
        `slope ${fmt(r.lagSlope, 0)} events/s; newest event ≤ ${r.ageMaxAdj === undefined ? "?" : fmt(r.ageMaxAdj, 2)} s behind schedule (start offset ${fmt(r.startOffsetS, 2)} s); ` +
        `CPU ${fmt(r.cpuPercent, 0)} % (machine ${fmt(r.machinePercent, 0)} % of ${os.cpus().length} cores); RSS max ${fmt(r.rssMax / MB, 0)} MB; lag every 10 s: ${lagsEvery10.join(" ")}`
    )
    print(
      `  at the end: published ${r.published === undefined ? "?" : thousands(r.published)}, ticks ${thousands(r.rows)}, symbol_stats ${thousands(r.statsEvents)}, ` +
        `jsonl ${thousands(r.jsonl)}, newest stored = event #${r.expectedFromNewest === undefined ? "?" : thousands(r.expectedFromNewest - 1)}; ` +
        `exit ${r.exitCode} after ${r.stopMs} ms${r.why.length > 0 ? `; ${r.why.join("; ")}` : ""}`
    )
    if (!r.complete) {
      lost = true
      print(`  EVENTS LOST OR PROCESS FAILED at ${perSecond(rate)}: see the counts above. The ramp stops here.`)
      break
    }
  }

  const sustained = results.filter((r) => r.sustained).map((r) => r.rate)
  const best = sustained.length > 0 ? Math.max(...sustained) : 0
  const pass = !lost && best >= target
  print("")
  print("| rate | verdict | stored events/s | × rate | lag end / max | lag slope (events/s) | newest event behind schedule, max | process CPU % (100 = one core) | machine CPU % (all cores) | RSS max MB | published = ticks = stats = jsonl = newest+1 |")
  print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
  for (const r of results) {
    print(
      `| ${thousands(r.rate)} | ${r.sustained ? "sustained" : "**not sustained**"} | ${thousands(r.storedRate)} | ${fmt(r.storedRate / r.rate, 3)} | ` +
        `${thousands(r.lagEnd)} / ${thousands(r.lagMax)} | ${fmt(r.lagSlope, 0)} | ${r.ageMaxAdj === undefined ? "?" : `${fmt(r.ageMaxAdj, 2)} s`} | ` +
        `${fmt(r.cpuPercent, 0)} | ${fmt(r.machinePercent, 0)} | ${fmt(r.rssMax / MB, 0)} | ${r.complete ? `yes (${thousands(r.published ?? 0)})` : "**NO**"} |`
    )
  }
  print("")
  print(
    `verdict: highest sustained rate ${best > 0 ? perSecond(best) : "none"} (goal ≥ ${perSecond(target)}): ${pass ? "PASS" : "FAIL"}; ` +
      `baseline: plain better-sqlite3 ${perSecond(base.plain)}, product sinks in process ${perSecond(base.sinks)}` +
      (lost ? "; EVENTS WERE LOST (see above)" : "")
  )

  const firstFail = results.find((r) => !r.sustained)
  let profileGroups = ""
  let profiledRate = ""
  if (!args["skip-profile"] && firstFail !== undefined && !lost) {
    fs.mkdirSync(PROFILE_DIR, { recursive: true })
    const before = newestCpuProfile(PROFILE_DIR)
    log(`\nprofiling ${perSecond(firstFail.rate)} for ${profileSeconds} s under node --cpu-prof`)
    const p = await runRate(firstFail.rate, {
      seconds: profileSeconds,
      label: `profiled@${firstFail.rate}`,
      nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`, "--cpu-prof-interval=500"]
    })
    const file = newestCpuProfile(PROFILE_DIR)
    if (file === undefined || file === before) print("no CPU profile was written")
    else {
      const summary = summarizeCpuProfile(file, mainJs)
      profiledRate = perSecond(firstFail.rate)
      profileGroups = ownerGroups(summary.byOwner)
        .filter(([, ms]) => ms / summary.busyMs >= 0.01)
        .map(([g, ms]) => `${g} ${fmt((100 * ms) / summary.busyMs, 0)} %`)
        .join(", ")
      const jsonlShare = (summary.byOwner.get("src/store/JsonlSink.ts") ?? 0) / summary.busyMs
      const simShare = (summary.byOwner.get("src/domain/SimMarket.ts") ?? 0) / summary.busyMs
      profileGroups += `; of the product code, src/store/JsonlSink.ts ${fmt(100 * jsonlShare, 0)} % and the sim (src/domain/SimMarket.ts) ${fmt(100 * simShare, 0)} %`
      print("")
      print(
        `CPU profile of \`--role=all\` at ${perSecond(firstFail.rate)} (${profileSeconds} s, the whole process life; stored ${perSecond(p.storedRate)} while profiled, CPU ${fmt(p.cpuPercent, 0)} %):`
      )
      print(`by group: ${profileGroups}`)
      print(summary.text)
    }
  }

  if (!pass && !lost && firstFail !== undefined) {
    print("")
    print("**What limits it** (figures of this run):")
    print(
      `- At ${perSecond(firstFail.rate)} the process stored ${perSecond(firstFail.storedRate)} using ${fmt(firstFail.cpuPercent, 0)} % CPU (100 % = one core) ` +
        `while the whole machine was ${fmt(firstFail.machinePercent, 0)} % busy over its ${os.cpus().length} cores. One JavaScript thread runs the sim, the in-process queue, ` +
        "the consumer's Stream batching, both sinks and the API: that thread is saturated, the second core mostly is not."
    )
    print(
      `- The consumer's sinks alone, in this process (baseline above), store ${perSecond(base.sinks)}; the plain better-sqlite3 loop ${perSecond(base.plain)}. ` +
        "End to end also pays for generating the events, the queue and the Stream on the same thread, so it stays below the sinks' own rate: the store path " +
        "(bench store-path) is what limits the pipeline."
    )
    if (profileGroups !== "") print(`- CPU profile of \`--role=all\` at ${profiledRate}: ${profileGroups}.`)
    print("")
    print("**What would move it:**")
    print(
      "- Whatever moves the store path (bench store-path: the Effect and @effect/sql overhead per statement, the JSONL sink's fs round trips and replay check, batch size)."
    )
    print(
      "- Using the second core: the sinks (or only the JSONL sink) in a worker thread fed whole batches, so that generating, queueing and serving " +
        "overlap with writing; or producer and consumer in separate processes (Kafka mode, at the price of Kafka's own cost: see e2e-kafka)."
    )
  }

  recordResults("e2e-direct", toMarkdown(out.lines))
  return pass
}

runBench("e2e-direct", main)

/**
 * (A) Latency of `GET /bi/daily_ohlc.csv?symbol=BTCUSDT&days=365` on a year of 1m candles for ten
 * symbols (bench/seed.ts), target ≤ 20 ms per request (p95 and mean).
 *
 * Starts the shipped binary (`node dist/main.js --role=api`) on the benchmark database, warms it up,
 * then sends sequential keep-alive requests (one at a time, so each figure is one request's service
 * time plus loopback): a series on the target URL, a series rotating symbols and days (30/90/365),
 * and, for reference, a series of conditional requests answered 304 (If-None-Match = the ETag).
 *
 *   node dist/bench/bench/bi-latency.js [--db bench/.data/bench.db] [--main dist/main.js]
 *     [--requests 500] [--warmup 50] [--target-ms 20] [--profile]
 *
 * --profile runs the API under `node --cpu-prof` and prints where its CPU time went (the figures
 * of a profiled run are slower and not for the record). Exit code 1 when the target is missed.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { parseArgs } from "node:util"
import {
  BENCH_SYMBOLS,
  DEFAULT_DB,
  DEFAULT_MAIN,
  fmt,
  formatSummary,
  log,
  machineLine,
  recordResults,
  reportProfile,
  runBench,
  repoRoot,
  startApi,
  summarize,
  type Timed,
  timedGet,
  transcript
} from "./lib.js"

const { values: args } = parseArgs({
  options: {
    db: { type: "string", default: DEFAULT_DB },
    main: { type: "string", default: DEFAULT_MAIN },
    requests: { type: "string", default: "500" },
    warmup: { type: "string", default: "50" },
    "target-ms": { type: "string", default: "20" },
    profile: { type: "boolean", default: false },
    /** Serves a PostgreSQL store (STORE=postgres, seeded by `seed.js --database-url`) instead of --db. */
    "database-url": { type: "string" }
  }
})
const requests = Number(args.requests)
const databaseUrl = args["database-url"]
const warmup = Number(args.warmup)
const targetMs = Number(args["target-ms"])
const profileDir = path.join(repoRoot, "bench", ".data", "profiles")

const lineCount = (body: Buffer) => body.toString("utf8").split("\r\n").filter((l) => l.length > 0).length

const main = async () => {
  log("bench (A): GET /bi/daily_ohlc.csv latency, sequential keep-alive requests")
  log(machineLine())
  if (args.profile) fs.mkdirSync(profileDir, { recursive: true })
  const api = await startApi({
    db: path.resolve(args.db),
    main: path.resolve(args.main),
    nodeArgs: args.profile ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [],
    ...(databaseUrl === undefined ? {} : { env: { STORE: "postgres", DATABASE_URL: databaseUrl } })
  })
  log(`api: node ${path.relative(repoRoot, path.resolve(args.main))} --role=api on ${api.base}, ${databaseUrl === undefined ? `db ${path.relative(repoRoot, path.resolve(args.db))}` : `PostgreSQL ${new URL(databaseUrl).host}${new URL(databaseUrl).pathname}`}`)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const failures: Array<string> = []
  const out = transcript()
  const url = (symbol: string, days: number) => `${api.base}/bi/daily_ohlc.csv?symbol=${symbol}&days=${days}`
  const target = url("BTCUSDT", 365)

  /** `n` sequential requests; checks each answer. */
  const series = async (n: number, pick: (i: number) => { url: string; days: number }, headers: Record<string, string> = {}, status = 200) => {
    const timings: Array<number> = []
    const bytes: Array<number> = []
    const byDays = new Map<number, Array<number>>()
    for (let i = 0; i < n; i++) {
      const { days, url } = pick(i)
      const res: Timed = await timedGet(agent, url, headers)
      if (res.status !== status) {
        failures.push(`${url}: status ${res.status}, expected ${status}: ${res.body.toString("utf8").slice(0, 300)}`)
        break
      }
      if (status === 200 && lineCount(res.body) !== days + 1) {
        failures.push(
          `${url}: ${lineCount(res.body)} lines, expected ${days + 1} (header + ${days} days): does the database cover the last ${days} UTC days up to today? rerun the seed`
        )
        break
      }
      timings.push(res.ms)
      bytes.push(res.body.length)
      const perDays = byDays.get(days) ?? []
      perDays.push(res.ms)
      byDays.set(days, perDays)
    }
    return { timings, bytes, byDays }
  }

  try {
    const first = await timedGet(agent, target)
    const etag = first.headers["etag"]
    out.print(
      `first answer: ${first.status}, ${first.body.length} bytes, ${lineCount(first.body)} lines, ${fmt(first.ms)} ms, ` +
        `content-type ${first.headers["content-type"]}, etag ${etag}`
    )
    await series(warmup, () => ({ url: target, days: 365 }))
    log(`warm-up: ${warmup} requests`)

    const a = await series(requests, () => ({ url: target, days: 365 }))
    const sA = summarize(a.timings)
    out.print(`\n[1] ${target.replace(api.base, "")} × ${requests}`)
    out.print(`    ${formatSummary(sA)}`)
    out.print(`    ${a.bytes[0] ?? 0} bytes per answer, ${lineCount(first.body)} lines (header + 365 days)`)

    const daysCycle = [30, 90, 365] as const
    const rotate = (i: number) => {
      const days = daysCycle[i % daysCycle.length]!
      return { url: url(BENCH_SYMBOLS[i % BENCH_SYMBOLS.length]!, days), days }
    }
    const b = await series(requests, rotate)
    out.print(`\n[2] /bi/daily_ohlc.csv rotating 10 symbols × days 30/90/365 × ${requests}`)
    out.print(`    ${formatSummary(summarize(b.timings))}`)
    for (const days of daysCycle) {
      const t = b.byDays.get(days) ?? []
      out.print(`    days=${String(days).padEnd(3)} ${formatSummary(summarize(t))}`)
    }
    out.print(`    ${Math.min(...b.bytes)}..${Math.max(...b.bytes)} bytes per answer`)

    let s304: ReturnType<typeof summarize> | undefined
    if (typeof etag === "string") {
      const c = await series(requests, () => ({ url: target, days: 365 }), { "if-none-match": etag }, 304)
      s304 = summarize(c.timings)
      out.print(`\n[3] ${target.replace(api.base, "")} with If-None-Match: ${etag} (304, reference) × ${requests}`)
      out.print(`    ${formatSummary(s304)}`)
      out.print(`    ${c.bytes[0] ?? 0} body bytes per answer (a kept answer: the answer cache holds a report for 300 s)`)
    } else {
      failures.push("the first answer carried no ETag")
    }

    log("")
    const pass = failures.length === 0 && sA.p95 <= targetMs && sA.mean <= targetMs
    for (const f of failures) out.print(`ERROR: ${f}`)
    out.print(
      `${pass ? "PASS" : "FAIL"}: daily_ohlc.csv?symbol=BTCUSDT&days=365 p95 ${fmt(sA.p95)} ms, mean ${fmt(sA.mean)} ms ` +
        `(target ≤ ${targetMs} ms for both; p50 ${fmt(sA.p50)} ms)`
    )
    log(machineLine())
    if (args.profile) log("results: not recorded (a profiled run is slower than a real one)")
    else recordResults(databaseUrl === undefined ? "bi-latency" : "bi-latency-postgres", `Bench (A), \`GET /bi/daily_ohlc.csv\`, target p95 and mean ≤ ${targetMs} ms.\n\n${out.block()}`)
    return pass
  } finally {
    agent.destroy()
    await api.stop()
    reportProfile(args.profile, profileDir)
  }
}

runBench("bi-latency", main)

/**
 * Memory of the `/trades/latest` answer cache (src/api/HotPath.ts) under many distinct URLs.
 *
 * A hostile test once found that 2,000 distinct URLs with `limit=1000` took the server's RSS from
 * 172 MB to 549 MB, and that it stayed there: every answer was kept until 1,000 newer ones pushed it
 * out. The cache now holds at most HOT_MAX_BYTES (8 MiB) and frees each answer after 1 s. This bench
 * replays that load against the shipped binary and measures the server's RSS:
 *
 * 1. Seeds a temporary SQLite database through the product's `TickRepo.insertMany`: `--rows` ticker
 *    events (default 1200) for each of the first `--symbols` (default 4) benchmark symbols.
 * 2. Starts `node dist/main.js --role=api` on it (127.0.0.1, a free port, every protection off, so the
 *    hot path is on) and reads its RSS (VmRSS in /proc/<pid>/status) once idle.
 * 3. Sends `--requests` (2000) GETs to distinct URLs `/trades/latest?symbol=…&limit=1000&n=<i>`, at most
 *    `--concurrency` (16) in flight, keep-alive, sampling RSS every `--sample-ms` (100) ms. If the API
 *    rejected the unknown `n` parameter, the URLs would differ by symbol and limit (1000, 999, …) instead.
 * 4. Reads RSS again 5 s and 15 s after the last answer.
 * 5. Unless `--skip-control`, does 2-4 again on the same binary with the cache switched off
 *    (`CORS_ORIGINS` set: a per-request security decision, so nothing is remembered): the memory that
 *    serving the load takes without any cache, to compare the first run with.
 *
 * With `--before <rev>` (the npm script passes 84b872d, the commit before the cache was bounded), it
 * also builds a copy of the current src/ in a temporary directory with `src/api/HotPath.ts` taken from
 * <rev> (`git show`, read-only), and runs the same load against that binary, so the two differ only in
 * the cache. If that build fails, the comparison is skipped and said so.
 *
 *   node dist/bench/bench/hot-cache-rss.js [--main dist/main.js] [--requests 2000] [--concurrency 16]
 *     [--limit 1000] [--symbols 4] [--rows 1200] [--sample-ms 100] [--deadline 300]
 *     [--request-timeout 30] [--before <git rev>] [--skip-control]
 *
 * Every request loop is bounded in count (`--requests`) and in time (`--deadline` seconds for the
 * whole load, `--request-timeout` per request); every server and temporary directory is removed at
 * the end. Exit code 1 when a request failed or the deadline cut the load short (the figures are then
 * not valid), 2 when the bench itself failed. There is no memory target: the figures are for reading.
 */
import { Effect, Layer } from "effect"
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { formatInstantMicros, TICKER_24HR_SOURCE, type TickerEvent, type TickerSymbol, toTick } from "../src/domain/Ticker.js"
import { sqliteLayer } from "../src/store/Sql.js"
import { TickWriter } from "../src/store/TickWriter.js"
import {
  BENCH_SYMBOLS,
  DEFAULT_MAIN,
  fmt,
  log,
  machineLine,
  recordResults,
  repoRoot,
  runBench,
  sleep,
  startApi
} from "./lib.js"

const { values: args } = parseArgs({
  options: {
    main: { type: "string", default: DEFAULT_MAIN },
    requests: { type: "string", default: "2000" },
    concurrency: { type: "string", default: "16" },
    limit: { type: "string", default: "1000" },
    symbols: { type: "string", default: "4" },
    rows: { type: "string", default: "1200" },
    "sample-ms": { type: "string", default: "100" },
    deadline: { type: "string", default: "300" },
    "request-timeout": { type: "string", default: "30" },
    before: { type: "string", default: "" },
    "skip-control": { type: "boolean", default: false }
  }
})
const requests = Number(args.requests)
const concurrency = Number(args.concurrency)
const limit = Number(args.limit)
const symbolCount = Number(args.symbols)
const rowsPerSymbol = Number(args.rows)
const sampleMs = Number(args["sample-ms"])
const deadlineMs = Number(args.deadline) * 1000
const requestTimeoutMs = Number(args["request-timeout"]) * 1000
for (const [name, n, min] of [
  ["--requests", requests, 1],
  ["--concurrency", concurrency, 1],
  ["--limit", limit, 1],
  ["--symbols", symbolCount, 1],
  ["--rows", rowsPerSymbol, 1],
  ["--sample-ms", sampleMs, 10],
  ["--deadline", deadlineMs, 1000],
  ["--request-timeout", requestTimeoutMs, 1000]
] as const) {
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`${name} must be a whole number ≥ ${min}, got ${n}`)
}
if (symbolCount > BENCH_SYMBOLS.length) throw new Error(`--symbols: at most ${BENCH_SYMBOLS.length}`)
const symbols = BENCH_SYMBOLS.slice(0, symbolCount)
/** Seconds after the last answer at which RSS is read. */
const AFTER_S = [5, 15] as const
const MB = 1024 * 1024

// ---------------------------------------------------------------------------------------------
// Seeding: ticker events through the product's TickRepo

const seed = (dbPath: string) =>
  Effect.gen(function* () {
    const repo = yield* TickWriter
    const nowMs = Date.now()
    let written = 0
    for (const [k, symbol] of symbols.entries()) {
      let price = 100 * (k + 1)
      const events: Array<TickerEvent> = []
      for (let i = 0; i < rowsPerSymbol; i++) {
        price *= 1 + 0.0005 * Math.sin(i * 0.7 + k)
        const micros = (nowMs - (rowsPerSymbol - i) * 3000) * 1000 + ((i * 7919) % 1_000_000)
        events.push({
          timestamp_utc: formatInstantMicros(micros),
          symbol: symbol as TickerSymbol,
          lastPrice: price.toFixed(8),
          priceChangePercent: (Math.cos(i) * 4).toFixed(3),
          volume: (1_000_000 + i * 17.25).toFixed(8),
          source: TICKER_24HR_SOURCE,
          event_time: formatInstantMicros(Math.floor(micros / 1000) * 1000)
        })
      }
      for (let i = 0; i < events.length; i += 1000) written += (yield* repo.insertMany(events.slice(i, i + 1000).map(toTick))).length
    }
    return written
  }).pipe(Effect.provide(TickWriter.Default.pipe(Layer.provideMerge(sqliteLayer(dbPath)))))

// ---------------------------------------------------------------------------------------------
// RSS of a process

/** A field of /proc/<pid>/status in bytes (VmRSS, VmHWM), or undefined once the process is gone. */
const procStatus = (pid: number, field: string): number | undefined => {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return m === null ? undefined : Number(m[1]) * 1024
  } catch {
    return undefined
  }
}

interface Sample {
  readonly at: number
  readonly rss: number
}

/** Reads VmRSS of `pid` every `sampleMs` until stopped. */
const sampler = (pid: number) => {
  const samples: Array<Sample> = []
  const take = () => {
    const rss = procStatus(pid, "VmRSS")
    if (rss !== undefined) samples.push({ at: Date.now(), rss })
  }
  take()
  const timer = setInterval(take, sampleMs)
  return { samples, take, stop: () => clearInterval(timer) } as const
}

const peakOf = (samples: ReadonlyArray<Sample>, from: number, to: number) =>
  samples.filter((s) => s.at >= from && s.at <= to).reduce((m, s) => Math.max(m, s.rss), 0)

// ---------------------------------------------------------------------------------------------
// Load

interface Answer {
  readonly status: number
  /** The body runs from "[" to "]" (a JSON array), checked on every answer without parsing it. */
  readonly isArray: boolean
  readonly bytes: number
  readonly body: Buffer | undefined
}

/** GET `url`, draining the body (kept only when `keep`), failing after `requestTimeoutMs`. */
const get = (agent: http.Agent, url: string, keep: boolean): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: requestTimeoutMs }, (res) => {
      const chunks: Array<Buffer> = []
      let bytes = 0
      let first = -1
      let last = -1
      res.on("data", (chunk: Buffer) => {
        if (first < 0) first = chunk[0]!
        last = chunk[chunk.length - 1]!
        bytes += chunk.length
        if (keep) chunks.push(chunk)
      })
      res.on("end", () => {
        resolve({
          status: res.statusCode ?? 0,
          isArray: first === 0x5b && last === 0x5d,
          bytes,
          body: keep ? Buffer.concat(chunks) : undefined
        })
      })
      res.on("error", reject)
    })
    req.on("timeout", () => req.destroy(new Error(`no answer within ${requestTimeoutMs} ms`)))
    req.on("error", reject)
  })

interface RunResult {
  readonly label: string
  readonly main: string
  readonly idle: number
  readonly peak: number
  readonly hwm: number | undefined
  readonly after: ReadonlyArray<number>
  readonly rps: number
  readonly completed: number
  readonly failures: ReadonlyArray<string>
  readonly meanBytes: number
  readonly urlScheme: string
}

/** One server, one load: idle RSS, 2,000 distinct URLs, RSS after 5 s and 15 s. */
const run = async (label: string, main: string, db: string, env: Record<string, string> = {}): Promise<RunResult> => {
  const shown = main.startsWith(`${repoRoot}${path.sep}`) ? path.relative(repoRoot, main) : main
  log(`\n[${label}] node ${shown} --role=api`)
  const api = await startApi({ db, main, env })
  const pid = api.process.pid
  if (pid === undefined) throw new Error("the API has no pid")
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })
  const rss = sampler(pid)
  try {
    // Is an unknown query parameter accepted? It decides how the URLs are made distinct.
    const probe = await get(agent, `${api.base}/trades/latest?symbol=${symbols[0]}&limit=${limit}&n=probe`, true)
    const extraAccepted = probe.status === 200
    const rowsOf = (body: Buffer | undefined) => (JSON.parse(body?.toString("utf8") ?? "null") as ReadonlyArray<unknown>).length
    if (extraAccepted && rowsOf(probe.body) !== Math.min(limit, rowsPerSymbol)) {
      throw new Error(`the probe answered ${rowsOf(probe.body)} events, expected ${Math.min(limit, rowsPerSymbol)}`)
    }
    if (!extraAccepted && probe.status !== 400) {
      throw new Error(`the probe answered ${probe.status}: ${probe.body?.toString("utf8").slice(0, 300)}`)
    }
    const urlScheme = extraAccepted
      ? `symbol=<${symbols.length} symbols in turn>&limit=${limit}&n=<i>: an unknown parameter is accepted (200)`
      : `symbol=<${symbols.length} symbols in turn>&limit=${limit}, ${limit - 1}, …: the unknown parameter was rejected (400)`
    const pathOf = (i: number) => {
      const symbol = symbols[i % symbols.length]!
      if (extraAccepted) return `/trades/latest?symbol=${symbol}&limit=${limit}&n=${i}`
      const l = limit - Math.floor(i / symbols.length)
      if (l < 1) throw new Error(`--requests ${requests} needs more distinct (symbol, limit) pairs than ${symbols.length} × ${limit}`)
      return `/trades/latest?symbol=${symbol}&limit=${l}`
    }
    log(`  URLs: ${urlScheme}`)
    log(`  the probe: ${probe.status}, ${probe.bytes} bytes`)

    // Idle: a few seconds after the probe (whose cached answer has expired by then).
    await sleep(3000)
    const idleFrom = Date.now()
    await sleep(1000)
    const idleSamples = rss.samples.filter((s) => s.at >= idleFrom).map((s) => s.rss)
    const idle = idleSamples.length === 0 ? (procStatus(pid, "VmRSS") ?? 0) : Math.max(...idleSamples)
    log(`  idle RSS ${fmt(idle / MB, 1)} MB`)

    // Load: `requests` distinct URLs, at most `concurrency` in flight, bounded by the deadline.
    const failures: Array<string> = []
    let next = 0
    let completed = 0
    let bytes = 0
    const started = Date.now()
    const deadline = started + deadlineMs
    let lastReport = started
    let cut = false
    const worker = async () => {
      for (;;) {
        if (next >= requests) return
        if (Date.now() > deadline || failures.length > 20) {
          cut = true
          return
        }
        const i = next++
        const keep = i % 100 === 0 // every 100th answer is parsed and its events counted
        try {
          const answer = await get(agent, `${api.base}${pathOf(i)}`, keep)
          if (answer.status !== 200) failures.push(`${pathOf(i)}: status ${answer.status}`)
          else if (!answer.isArray) failures.push(`${pathOf(i)}: 200 but not a JSON array`)
          else if (keep && rowsOf(answer.body) < 1) failures.push(`${pathOf(i)}: an empty answer`)
          else {
            completed++
            bytes += answer.bytes
          }
        } catch (error) {
          failures.push(`${pathOf(i)}: ${error instanceof Error ? error.message : String(error)}`)
        }
        const now = Date.now()
        if (now - lastReport >= 5000) {
          lastReport = now
          log(`  … ${completed}/${requests} answered, RSS now ${fmt((procStatus(pid, "VmRSS") ?? 0) / MB, 1)} MB`)
        }
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
    const ended = Date.now()
    if (cut) failures.push(`the load stopped early (deadline ${deadlineMs / 1000} s, or more than 20 failures) after ${completed} answers`)
    const rps = (completed * 1000) / Math.max(1, ended - started)
    log(`  load: ${completed} answers in ${fmt((ended - started) / 1000, 1)} s (${fmt(rps, 0)} req/s), ${fmt(bytes / Math.max(1, completed) / 1024, 1)} KiB per answer`)
    agent.destroy() // no idle keep-alive sockets held open on the server while it rests

    // After: RSS 5 s and 15 s after the last answer, the sampler still running.
    const after: Array<number> = []
    for (const s of AFTER_S) {
      await sleep(Math.max(0, ended + s * 1000 - Date.now()))
      rss.take()
      after.push(rss.samples[rss.samples.length - 1]?.rss ?? 0)
      log(`  +${s} s: RSS ${fmt(after[after.length - 1]! / MB, 1)} MB`)
    }
    const peak = peakOf(rss.samples, started, ended + 1000)
    const hwm = procStatus(pid, "VmHWM") // the kernel's high-water mark over the server's whole life
    return {
      label,
      main,
      idle,
      peak,
      hwm,
      after,
      rps,
      completed,
      failures,
      meanBytes: bytes / Math.max(1, completed),
      urlScheme
    }
  } finally {
    rss.stop()
    agent.destroy()
    await api.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// The binary as it was before the cache was bounded: current src/, HotPath.ts from `rev`

const buildBefore = (rev: string, dir: string): { main: string } | { skipped: string } => {
  const started = Date.now()
  let hotPath: string
  try {
    hotPath = execFileSync("git", ["show", `${rev}:src/api/HotPath.ts`], { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
  } catch (error) {
    return { skipped: `git show ${rev}:src/api/HotPath.ts failed: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}` }
  }
  fs.cpSync(path.join(repoRoot, "src"), path.join(dir, "src"), { recursive: true })
  for (const f of ["package.json", "tsconfig.json", "tsconfig.build.json"]) fs.copyFileSync(path.join(repoRoot, f), path.join(dir, f))
  fs.symlinkSync(path.join(repoRoot, "node_modules"), path.join(dir, "node_modules"), "dir")
  fs.writeFileSync(path.join(dir, "src", "api", "HotPath.ts"), hotPath)
  const tsc = spawnSync(process.execPath, [path.join(repoRoot, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"], {
    cwd: dir,
    encoding: "utf8",
    timeout: 300_000
  })
  if (tsc.status !== 0) return { skipped: `the build with ${rev}'s HotPath.ts failed: ${`${tsc.stdout}${tsc.stderr}`.trim().split("\n").slice(0, 5).join(" | ")}` }
  log(`before: current src/ with HotPath.ts from ${rev}, built in ${fmt((Date.now() - started) / 1000, 1)} s in ${dir}`)
  return { main: path.join(dir, "dist", "main.js") }
}

// ---------------------------------------------------------------------------------------------

const mb = (bytes: number | undefined) => (bytes === undefined ? "-" : fmt(bytes / MB, 1))

const main = async () => {
  log(`bench: RSS of the /trades/latest answer cache under ${requests} distinct URLs (limit=${limit}), ${concurrency} in flight`)
  log(machineLine())
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "hot-cache-rss-"))
  try {
    const db = path.join(tmp, "bench.db")
    const seedStarted = Date.now()
    const written = await Effect.runPromise(seed(db))
    log(`seed: ${written} ticker events (${rowsPerSymbol} for each of ${symbols.join(", ")}) through TickRepo.insertMany in ${fmt((Date.now() - seedStarted) / 1000, 1)} s, ${db}`)

    const results: Array<RunResult> = [await run("current", path.resolve(args.main), db)]
    if (!args["skip-control"]) {
      // The same binary with the cache switched off (a CORS setting needs a per-request decision, so
      // HotResponses keeps nothing): what serving the load costs without any cache.
      results.push(await run("current, cache off (CORS_ORIGINS set)", path.resolve(args.main), db, { CORS_ORIGINS: "http://127.0.0.1:9" }))
    }
    let beforeNote = ""
    if (args.before !== "") {
      const built = buildBefore(args.before, path.join(tmp, "before"))
      if ("skipped" in built) {
        beforeNote = `before (${args.before}): skipped, ${built.skipped}`
        log(beforeNote)
      } else {
        results.push(await run(`before (${args.before} HotPath.ts)`, built.main, db))
      }
    }

    // The table, printed and recorded.
    const header = ["server", "idle MB", "peak MB", "VmHWM MB", "+5 s MB", "+15 s MB", "+15 s − idle MB", "req/s", "answers", "KiB/answer"]
    const rows = results.map((r) => [
      r.label,
      mb(r.idle),
      mb(r.peak),
      mb(r.hwm),
      mb(r.after[0]),
      mb(r.after[1]),
      mb((r.after[1] ?? 0) - r.idle),
      fmt(r.rps, 0),
      `${r.completed}/${requests}`,
      fmt(r.meanBytes / 1024, 1)
    ])
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
    const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")
    log("")
    log(line(header))
    for (const row of rows) log(line(row))
    const failures = results.flatMap((r) => r.failures.map((f) => `${r.label}: ${f}`))
    for (const f of failures.slice(0, 20)) log(`ERROR: ${f}`)
    if (beforeNote !== "") log(beforeNote)
    log(machineLine())

    const markdown = [
      `${requests} GETs to distinct URLs of \`/trades/latest\` (${results[0]!.urlScheme}), ${concurrency} in flight, keep-alive, ` +
        `against \`--role=api\` on a temporary database of ${rowsPerSymbol} events for each of ${symbols.length} symbols. ` +
        `RSS is VmRSS of the server process: idle before the load, the highest ${sampleMs} ms sample during it (VmHWM: the kernel's high-water mark), ` +
        `then 5 s and 15 s after the last answer. The cache holds at most 8 MiB and frees each answer after 1 s. ` +
        `"cache off" is the same binary with \`CORS_ORIGINS\` set, which keeps the cache empty: the memory the load takes without any cache. ` +
        `"before" is the current src/ with \`src/api/HotPath.ts\` from the commit given (at most 1,000 answers, kept until pushed out).`,
      "",
      `| ${header.join(" | ")} |`,
      `|${header.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
      ...rows.map((row) => `| ${row.join(" | ")} |`),
      ...(beforeNote !== "" ? ["", beforeNote] : []),
      ...(failures.length > 0 ? ["", `**Not valid:** ${failures.length} failed requests, e.g. ${failures[0]}`] : [])
    ].join("\n")
    recordResults("hot-cache-rss", markdown)
    return failures.length === 0
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

runBench("hot-cache-rss", main)

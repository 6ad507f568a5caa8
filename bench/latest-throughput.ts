/**
 * (B) The API's read path under load against bare `node:http` servers, same machine, same run
 * (issue 9): requests/s and p99 latency under `--connections` (32) keep-alive connections.
 *
 * - Uncached `GET /trades/latest?limit=200` and `GET /trades/range` returning 1,000 rows: every request
 *   a distinct URL (the symbol goes round the ten bench symbols and `&n=<count>` is appended), so the
 *   API's answer cache never answers. Baseline: bench/bare-server.ts `--db`, the same SQL through
 *   better-sqlite3 and `JSON.stringify` on the same database. Goal: ≥ 0.8× its requests/s and a p99
 *   no more than 2× its p99, with protections off and with API keys + rate limit on (a limit of
 *   1,000,000 requests per minute, which the bench never reaches).
 * - Cached `GET /trades/latest?symbol=BTCUSDT&limit=200` (the same URL repeated) against a bare server
 *   returning the same bytes from memory (`--body`): the ratio, protections off and on.
 * - The cost of each protection layer per request: the cached URL against the API with one layer on
 *   at a time (API keys, rate limit, CORS), as µs per request over the API with every layer off.
 *
 * Starts the shipped binary (`node dist/main.js --role=api`) once per protection setting on the
 * benchmark database, and the bare servers, as child processes; loads each in turn (`--rounds`), each
 * run preceded by a warm-up, with wrk (`wrk -t1 -c32 -d10s --latency`, a Lua script for distinct
 * URLs) when it is installed, else with the pure-Node load generator bench/load.ts.
 *
 *   node dist/bench/bench/latest-throughput.js [--db bench/.data/bench.db] [--main dist/main.js]
 *     [--duration 10] [--warmup 2] [--connections 32] [--rounds 2] [--loader auto|wrk|node]
 *     [--min-ratio 0.8] [--max-p99 2] [--skip-layers] [--profile] [--results bench/RESULTS.md]
 *
 * --results writes the section elsewhere (a smoke run: `--results /tmp/scratch.md`).
 * --profile runs the API under `node --cpu-prof` (figures not recorded). Exit code 1 when a goal is missed.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { parseArgs } from "node:util"
import {
  BENCH_SYMBOLS,
  compiledBenchDir,
  DEFAULT_DB,
  DEFAULT_MAIN,
  fmt,
  freePort,
  log,
  machineLine,
  recordResults,
  reportProfile,
  RESULTS_FILE,
  runBench,
  repoRoot,
  spawnChild,
  startApi,
  transcript,
  waitFor
} from "./lib.js"

const { values: args } = parseArgs({
  options: {
    db: { type: "string", default: DEFAULT_DB },
    main: { type: "string", default: DEFAULT_MAIN },
    duration: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    connections: { type: "string", default: "32" },
    rounds: { type: "string", default: "2" },
    loader: { type: "string", default: "auto" },
    "min-ratio": { type: "string", default: "0.8" },
    "max-p99": { type: "string", default: "2" },
    "skip-layers": { type: "boolean", default: false },
    profile: { type: "boolean", default: false },
    results: { type: "string", default: RESULTS_FILE }
  }
})
const duration = Number(args.duration)
const warmup = Number(args.warmup)
const connections = Number(args.connections)
const rounds = Number(args.rounds)
const minRatio = Number(args["min-ratio"])
const maxP99 = Number(args["max-p99"])
const dataDir = path.join(repoRoot, "bench", ".data")
const profileDir = path.join(dataDir, "profiles")

const KEY = "bench-api-key-0123456789abcdef"
const KEYS_ENV = { API_KEYS: KEY }
const RATE_ENV = { RATE_LIMIT_PER_MINUTE: "1000000", RATE_LIMIT_BURST: "1000000" }
const CORS_ENV = { CORS_ORIGINS: "https://dashboard.example.com" }
const LATEST = "/trades/latest?symbol=BTCUSDT&limit=200"
const RANGE = "/trades/range?symbol=BTCUSDT&start=2000-01-01&end=2100-01-01&limit=1000"

interface Run {
  readonly rps: number
  readonly requests: number
  readonly p50: number
  readonly p99: number
  readonly errors: number
  readonly non2xx: number
}

/** What one load run asks: a URL, whether each request makes it distinct, and headers. */
interface Load {
  readonly url: string
  readonly vary: boolean
  readonly headers: Readonly<Record<string, string>>
}

/** wrk's version line ("wrk 4.2.0 [epoll] …", "wrk debian/4.1.0-3 [epoll] …"), or undefined when it is not installed. */
const wrkVersion = () => {
  const r = spawnSync("wrk", ["--version"], { encoding: "utf8" })
  if (r.error !== undefined) return undefined
  return /^wrk \S+/m.exec(`${r.stdout}${r.stderr}`)?.[0]
}

/** Runs a command to completion, collecting stdout. */
const collect = (command: string, argv: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn(command, argv, { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (chunk: string) => (out += chunk))
    child.on("error", reject)
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} exited with ${code}: ${out}`))))
  })

const toMs = (value: string, unit: string) => Number(value) * (unit === "us" ? 0.001 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 1)

const parseWrk = (out: string): Run => {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out)
  const requests = /(\d+) requests in/.exec(out)
  if (rps === null || requests === null) throw new Error(`cannot read wrk's output:\n${out}`)
  const pct = (p: string) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m").exec(out)
    return m === null ? NaN : toMs(m[1]!, m[2]!)
  }
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)
  return {
    rps: Number(rps[1]),
    requests: Number(requests[1]),
    p50: pct("50"),
    p99: pct("99"),
    errors: socket === null ? 0 : socket.slice(1).reduce((a, b) => a + Number(b), 0),
    non2xx: non2xx === null ? 0 : Number(non2xx[1])
  }
}

/** A wrk script that makes every request's URL distinct, as bench/load.ts --vary does. */
const varyScript = () => {
  const file = path.join(dataDir, "vary.lua")
  fs.writeFileSync(
    file,
    `local symbols = { ${BENCH_SYMBOLS.map((s) => `"${s}"`).join(", ")} }\n` +
      "local n = 0\n" +
      "request = function()\n" +
      "  n = n + 1\n" +
      "  local p = wrk.path:gsub(\"symbol=[^&]*\", \"symbol=\" .. symbols[(n % #symbols) + 1]) .. \"&n=\" .. n\n" +
      "  return wrk.format(nil, p)\n" +
      "end\n"
  )
  return file
}

const wrkRun = async (load: Load): Promise<Run> => {
  const options = [
    "-t1",
    `-c${connections}`,
    ...Object.entries(load.headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
    ...(load.vary ? ["-s", varyScript()] : [])
  ]
  if (warmup > 0) await collect("wrk", [...options, `-d${warmup}s`, load.url])
  // a 10 s request timeout (wrk's default is 2 s), so slow answers are counted in the latencies, not as errors
  return parseWrk(await collect("wrk", [...options, `-d${duration}s`, "--timeout", "10s", "--latency", load.url]))
}

let nodeClient = ""
const nodeRun = async (load: Load): Promise<Run> => {
  const out = await collect(process.execPath, [
    path.join(compiledBenchDir, "load.js"),
    `--url=${load.url}`,
    `--connections=${connections}`,
    `--duration=${duration}`,
    `--warmup=${warmup}`,
    ...(load.vary ? ["--vary", `--symbols=${BENCH_SYMBOLS.join(",")}`] : []),
    ...Object.entries(load.headers).map(([k, v]) => `--header=${k}: ${v}`)
  ])
  const r = JSON.parse(out.trim().split("\n").pop()!) as {
    client: string
    rps: number
    requests: number
    errors: number
    non2xx: number
    latency: { p50: number; p99: number }
  }
  nodeClient = r.client
  return { rps: r.rps, requests: r.requests, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors, non2xx: r.non2xx }
}

const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)

/** A bare node:http server (bench/bare-server.ts) with `options`, ready once `probe` answers. */
const startBare = async (label: string, options: ReadonlyArray<string>, probe: string) => {
  const port = await freePort()
  const child = spawnChild(label, process.execPath, [path.join(compiledBenchDir, "bare-server.js"), `--port=${port}`, ...options], process.env)
  const base = `http://127.0.0.1:${port}`
  await Promise.race([waitFor(`${base}${probe}`, 15_000), child.exited])
  return { ...child, base }
}

const bytesOf = async (url: string, headers: Readonly<Record<string, string>> = {}) => {
  const res = await fetch(url, { headers })
  const body = Buffer.from(await res.arrayBuffer())
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${body.toString("utf8").slice(0, 300)}`)
  return { body, contentType: res.headers.get("content-type") ?? "application/octet-stream" }
}

const main = async () => {
  log("bench (B): the API's read path under load, against bare node:http servers")
  log(machineLine())
  const wrk = args.loader === "node" ? undefined : wrkVersion()
  if (args.loader === "wrk" && wrk === undefined) throw new Error("--loader wrk: wrk is not installed")
  const loader = wrk !== undefined ? "wrk" : "node"
  const run = (load: Load) => (loader === "wrk" ? wrkRun(load) : nodeRun(load))
  fs.mkdirSync(dataDir, { recursive: true })
  if (args.profile) fs.mkdirSync(profileDir, { recursive: true })

  const db = path.resolve(args.db)
  const main = path.resolve(args.main)
  const api = (env: Record<string, string> = {}) =>
    startApi({ db, main, env, nodeArgs: args.profile ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [] })
  const children: Array<{ readonly stop: () => Promise<void> }> = []
  const keep = <A extends { readonly stop: () => Promise<void> }>(child: A) => {
    children.push(child)
    return child
  }
  const out = transcript()
  try {
    const apiOff = keep(await api())
    const apiOn = keep(await api({ ...KEYS_ENV, ...RATE_ENV }))
    const keyed = { "x-api-key": KEY }
    const bareDb = keep(await startBare("bare --db", [`--db=${db}`], LATEST))

    // the servers agree on the bytes before anything is measured
    const latest = await bytesOf(`${apiOff.base}${LATEST}`)
    for (const [name, url, headers] of [
      ["api (protections on)", `${apiOn.base}${LATEST}`, keyed],
      ["bare --db", `${bareDb.base}${LATEST}`, {}]
    ] as const) {
      if (!(await bytesOf(url, headers)).body.equals(latest.body)) throw new Error(`${name} does not return the API's bytes for ${LATEST}`)
    }
    const range = await bytesOf(`${apiOff.base}${RANGE}`)
    if (!(await bytesOf(`${bareDb.base}${RANGE}`)).body.equals(range.body)) throw new Error(`bare --db does not return the API's bytes for ${RANGE}`)
    const rangeRows = (JSON.parse(range.body.toString("utf8")) as ReadonlyArray<unknown>).length
    if (rangeRows !== 1000) throw new Error(`${RANGE} returned ${rangeRows} rows, not 1,000: seed more ticks (bench/README.md)`)
    const bodyFile = path.join(dataDir, "latest-body.bin")
    fs.writeFileSync(bodyFile, latest.body)
    const bareBody = keep(await startBare("bare --body", [`--body=${bodyFile}`, `--content-type=${latest.contentType}`], LATEST))

    out.print(`api: node ${path.relative(repoRoot, main)} --role=api, protections off on ${apiOff.base}, API keys + rate limit on ${apiOn.base}`)
    out.print(`${LATEST}: ${latest.body.length} bytes; ${RANGE}: ${range.body.length} bytes, ${rangeRows} events; the bare servers return the same bytes`)
    out.print(
      `load generator: ${loader === "wrk" ? `${wrk} (wrk -t1 -c${connections} -d${duration}s --timeout 10s --latency, after a ${warmup}s warm-up run)` : "pure Node (bench/load.ts in a child process)"}; ` +
        `${connections} keep-alive connections, ${warmup}s warm-up + ${duration}s measured per run, ${rounds} round(s)`
    )

    type Target = readonly [name: string, load: Load]
    const uncached = (url: string, base: string, headers: Readonly<Record<string, string>> = {}): Load => ({ url: `${base}${url}`, vary: true, headers })
    const cached = (base: string, headers: Readonly<Record<string, string>> = {}): Load => ({ url: `${base}${LATEST}`, vary: false, headers })
    const targets: Array<Target> = [
      ["latest uncached, api off", uncached(LATEST, apiOff.base)],
      ["latest uncached, api on", uncached(LATEST, apiOn.base, keyed)],
      ["latest uncached, bare", uncached(LATEST, bareDb.base)],
      ["range 1000 uncached, api off", uncached(RANGE, apiOff.base)],
      ["range 1000 uncached, api on", uncached(RANGE, apiOn.base, keyed)],
      ["range 1000 uncached, bare", uncached(RANGE, bareDb.base)],
      ["latest cached, api off", cached(apiOff.base)],
      ["latest cached, api on", cached(apiOn.base, keyed)],
      ["latest cached, bare", cached(bareBody.base)]
    ]
    if (!args["skip-layers"]) {
      const keysOnly = keep(await api(KEYS_ENV))
      const rateOnly = keep(await api(RATE_ENV))
      const corsOnly = keep(await api(CORS_ENV))
      targets.push(
        ["layer: API keys only", cached(keysOnly.base, keyed)],
        ["layer: rate limit only", cached(rateOnly.base)],
        ["layer: CORS only", cached(corsOnly.base, { origin: CORS_ENV.CORS_ORIGINS })]
      )
    }
    const results = new Map<string, Array<Run>>()
    const width = Math.max(...targets.map(([name]) => name.length))
    for (let round = 1; round <= rounds; round++) {
      for (const [name, load] of targets) {
        const r = await run(load)
        results.set(name, [...(results.get(name) ?? []), r])
        out.print(
          `  round ${round} ${name.padEnd(width)}: ${fmt(r.rps, 0).padStart(7)} req/s  (${r.requests} requests, latency p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms` +
            `${r.errors + r.non2xx > 0 ? `, ${r.errors} socket errors, ${r.non2xx} non-2xx` : ""})`
        )
      }
    }
    if (loader === "node") {
      out.print(`  (node load generator client: ${nodeClient}; it tops out at a few thousand req/s on its own, so bare figures are client-bound: install wrk for a verdict)`)
    }

    const of = (name: string) => {
      const runs = results.get(name) ?? []
      return { rps: mean(runs.map((r) => r.rps)), p99: mean(runs.map((r) => r.p99)), broken: runs.some((r) => r.errors + r.non2xx > 0) }
    }
    log("")
    let pass = true
    for (const endpoint of ["latest uncached", "range 1000 uncached"]) {
      const bare = of(`${endpoint}, bare`)
      for (const protections of ["off", "on"] as const) {
        const a = of(`${endpoint}, api ${protections}`)
        const ratio = a.rps / bare.rps
        const p99 = a.p99 / bare.p99
        const ok = !a.broken && !bare.broken && ratio >= minRatio && p99 <= maxP99
        pass &&= ok
        out.print(
          `${ok ? "PASS" : "FAIL"}: ${endpoint}, protections ${protections}: ${fmt(a.rps, 0)} req/s = ${fmt(ratio, 2)}× bare ${fmt(bare.rps, 0)} (target ≥ ${minRatio}); ` +
            `p99 ${fmt(a.p99)} ms = ${fmt(p99, 2)}× bare ${fmt(bare.p99)} ms (target ≤ ${maxP99})${a.broken || bare.broken ? "; some requests failed" : ""}`
        )
      }
    }
    const bareCached = of("latest cached, bare")
    for (const protections of ["off", "on"] as const) {
      const a = of(`latest cached, api ${protections}`)
      out.print(
        `INFO: latest cached, protections ${protections}: ${fmt(a.rps, 0)} req/s = ${fmt(a.rps / bareCached.rps, 2)}× bare ${fmt(bareCached.rps, 0)} (same bytes from memory); ` +
          `p99 ${fmt(a.p99)} ms vs ${fmt(bareCached.p99)} ms`
      )
    }
    const none = of("latest cached, api off")
    const costUs = (rps: number) => 1e6 / rps - 1e6 / none.rps
    for (const name of args["skip-layers"] ? [] : ["layer: API keys only", "layer: rate limit only", "layer: CORS only"]) {
      const layer = of(name)
      out.print(`INFO: ${name}: ${fmt(layer.rps, 0)} req/s, ${fmt(costUs(layer.rps), 1)} µs per request over every layer off (${fmt(none.rps, 0)} req/s)`)
    }
    const both = of("latest cached, api on")
    out.print(`INFO: API keys + rate limit: ${fmt(costUs(both.rps), 1)} µs per request over every layer off`)
    out.print(`${pass ? "PASS" : "FAIL"}: bench (B) overall; load generator: ${loader === "wrk" ? "wrk" : `node (${nodeClient})`}`)
    log(machineLine())
    if (args.profile) log("results: not recorded (a profiled run is slower than a real one)")
    else {
      recordResults(
        "latest-throughput",
        `Bench (B), the read path (\`/trades/latest\`, \`/trades/range\`) against bare \`node:http\` servers: ≥ ${minRatio}× their req/s and p99 ≤ ${maxP99}× theirs.\n\n${out.block()}`,
        path.resolve(args.results)
      )
    }
    return pass
  } finally {
    for (const child of children.reverse()) await child.stop()
    reportProfile(args.profile, profileDir)
  }
}

runBench("latest-throughput", main)

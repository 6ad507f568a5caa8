/**
 * (B) Throughput of `GET /trades/latest?symbol=BTCUSDT` (default limit: 200 events) against a bare
 * `node:http` server returning the same bytes, same machine, same run; target: API ≥ 0.5 × bare.
 *
 * Starts the shipped binary (`node dist/main.js --role=api`) on the benchmark database and the bare
 * server (bench/bare-server.ts) as two child processes, fetches the API's answer once and hands its
 * body and content-type to the bare server, then loads each in turn, API/bare/API/bare (`--rounds`),
 * each run preceded by a warm-up, with wrk (`wrk -t1 -c32 -d10s --latency`) when it is installed,
 * else with the pure-Node load generator bench/load.ts in a child process of its own.
 *
 *   node dist/bench/bench/latest-throughput.js [--db bench/.data/bench.db] [--main dist/main.js]
 *     [--duration 10] [--warmup 2] [--connections 32] [--rounds 2] [--loader auto|wrk|node]
 *     [--min-ratio 0.5] [--profile] [--ceiling=httpapi+security,httpapi,app | --ceiling=all]
 *
 * --ceiling adds targets to every round, for reference only (not part of the verdict): the product's
 * HTTP stack serving the same bytes from memory (bench/ceiling-server.ts, one server per variant), the
 * most the API could reach on that stack with the answer cached.
 * --profile runs the API under `node --cpu-prof` and prints where its CPU time went (the figures
 * of a profiled run are slower and not for the record). Exit code 1 when the ratio is missed.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { parseArgs } from "node:util"
import {
  compiledBenchDir,
  DEFAULT_DB,
  DEFAULT_MAIN,
  fmt,
  freePort,
  log,
  machineLine,
  recordResults,
  reportProfile,
  runBench,
  openEnv,
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
    "min-ratio": { type: "string", default: "0.5" },
    profile: { type: "boolean", default: false },
    ceiling: { type: "string", default: "" }
  }
})
const duration = Number(args.duration)
const warmup = Number(args.warmup)
const connections = Number(args.connections)
const rounds = Number(args.rounds)
const minRatio = Number(args["min-ratio"])
const dataDir = path.join(repoRoot, "bench", ".data")
const profileDir = path.join(dataDir, "profiles")
const PATH = "/trades/latest?symbol=BTCUSDT"

interface Run {
  readonly rps: number
  readonly requests: number
  readonly p50: number
  readonly p99: number
  readonly errors: number
  readonly non2xx: number
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

const wrkRun = async (url: string): Promise<Run> => {
  if (warmup > 0) await collect("wrk", ["-t1", `-c${connections}`, `-d${warmup}s`, url])
  // a 10 s request timeout (wrk's default is 2 s), so slow answers are counted in the latencies, not as errors
  return parseWrk(await collect("wrk", ["-t1", `-c${connections}`, `-d${duration}s`, "--timeout", "10s", "--latency", url]))
}

let nodeClient = ""
const nodeRun = async (url: string): Promise<Run> => {
  const out = await collect(process.execPath, [
    path.join(compiledBenchDir, "load.js"),
    `--url=${url}`,
    `--connections=${connections}`,
    `--duration=${duration}`,
    `--warmup=${warmup}`
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

const main = async () => {
  log(`bench (B): GET ${PATH} throughput, API vs bare node:http server`)
  log(machineLine())
  const wrk = args.loader === "node" ? undefined : wrkVersion()
  if (args.loader === "wrk" && wrk === undefined) throw new Error("--loader wrk: wrk is not installed")
  const useWrk = wrk !== undefined
  if (args.profile) fs.mkdirSync(profileDir, { recursive: true })

  const api = await startApi({
    db: path.resolve(args.db),
    main: path.resolve(args.main),
    nodeArgs: args.profile ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []
  })
  let bare: ReturnType<typeof spawnChild> | undefined
  const ceilings: Array<ReturnType<typeof spawnChild>> = []
  const out = transcript()
  try {
    const res = await fetch(`${api.base}${PATH}`)
    const body = Buffer.from(await res.arrayBuffer())
    const contentType = res.headers.get("content-type") ?? "application/octet-stream"
    if (res.status !== 200) throw new Error(`GET ${PATH}: ${res.status} ${body.toString("utf8").slice(0, 300)}`)
    const rows = (JSON.parse(body.toString("utf8")) as ReadonlyArray<unknown>).length
    out.print(`api: node ${path.relative(repoRoot, path.resolve(args.main))} --role=api on ${api.base}; ${PATH}: ${body.length} bytes, ${rows} events, ${contentType}`)

    fs.mkdirSync(dataDir, { recursive: true })
    const bodyFile = path.join(dataDir, "latest-body.bin")
    fs.writeFileSync(bodyFile, body)
    const barePort = await freePort()
    bare = spawnChild("bare", process.execPath, [
      path.join(compiledBenchDir, "bare-server.js"),
      `--port=${barePort}`,
      `--body=${bodyFile}`,
      `--content-type=${contentType}`
    ], process.env)
    const bareBase = `http://127.0.0.1:${barePort}`
    await Promise.race([waitFor(`${bareBase}${PATH}`, 15_000), bare.exited])
    const check = await fetch(`${bareBase}${PATH}`)
    const bareBody = Buffer.from(await check.arrayBuffer())
    if (!bareBody.equals(body) || check.headers.get("content-type") !== contentType) throw new Error("the bare server does not return the API's bytes")
    out.print(`bare: node:http on ${bareBase}, same ${bareBody.length} bytes and content-type`)
    const variants = args.ceiling === "all" ? ["httpapi+security", "httpapi", "app"] : args.ceiling.split(",").filter((v) => v !== "")
    const ceilingTargets: Array<readonly [string, string]> = []
    for (const variant of variants) {
      const port = await freePort()
      const child = spawnChild(`ceiling ${variant}`, process.execPath, [
        path.join(compiledBenchDir, "ceiling-server.js"),
        `--port=${port}`,
        `--body=${bodyFile}`,
        `--content-type=${contentType}`,
        `--variant=${variant}`
      ], openEnv())
      ceilings.push(child)
      const base = `http://127.0.0.1:${port}`
      await Promise.race([waitFor(`${base}${PATH}`, 30_000), child.exited])
      const c = await fetch(`${base}${PATH}`)
      if (!Buffer.from(await c.arrayBuffer()).equals(body)) throw new Error(`the ceiling server (${variant}) does not return the API's bytes`)
      ceilingTargets.push([`ceiling ${variant}`, `${base}${PATH}`])
    }
    if (variants.length > 0) out.print(`ceilings (reference only, same bytes from memory): ${variants.join(", ")}`)
    const loader = useWrk ? "wrk" : "node"
    out.print(
      `load generator: ${useWrk ? `${wrk} (wrk -t1 -c${connections} -d${duration}s --timeout 10s --latency, after a ${warmup}s warm-up run)` : `pure Node (bench/load.ts in a child process; ${args.loader === "node" ? "--loader node" : "wrk not found"})`}; ` +
        `${connections} keep-alive connections, ${warmup}s warm-up + ${duration}s measured per run, order ${["API", "bare", ...variants.map((v) => `ceiling ${v}`)].join("/")} × ${rounds}`
    )
    const results = new Map<string, Array<Run>>()
    const targets: Array<readonly [string, string]> = [["api", `${api.base}${PATH}`], ["bare", `${bareBase}${PATH}`], ...ceilingTargets]
    const width = Math.max(...targets.map(([name]) => name.length))
    for (let round = 1; round <= rounds; round++) {
      for (const [name, url] of targets) {
        const run = loader === "wrk" ? await wrkRun(url) : await nodeRun(url)
        results.set(name, [...(results.get(name) ?? []), run])
        out.print(
          `  round ${round} ${name.padEnd(width)}: ${fmt(run.rps, 0).padStart(7)} req/s  (${run.requests} requests, latency p50 ${fmt(run.p50)} ms, p99 ${fmt(run.p99)} ms` +
            `${run.errors + run.non2xx > 0 ? `, ${run.errors} socket errors, ${run.non2xx} non-2xx` : ""})`
        )
      }
    }
    if (loader === "node") {
      out.print(`  (node load generator client: ${nodeClient})`)
      out.print(
        "  caveat: a Node load generator tops out at a few thousand req/s on its own (undici Pool ≈ 7k, node:http ≈ 2k on the " +
          "2-core reference machine, against ≈ 15–25k with wrk), so the bare figure is client-bound and the ratio overstates the " +
          "API: install wrk for a verdict"
      )
    }

    const rpsOf = (name: string) => mean((results.get(name) ?? []).map((r) => r.rps))
    const apiRps = rpsOf("api")
    const bareRps = rpsOf("bare")
    const ratio = apiRps / bareRps
    const broken = [...(results.get("api") ?? []), ...(results.get("bare") ?? [])].some((r) => r.errors + r.non2xx > 0)
    const pass = !broken && ratio >= minRatio
    log("")
    out.print(`api  ${fmt(apiRps, 0)} req/s (mean of ${rounds}), bare ${fmt(bareRps, 0)} req/s (mean of ${rounds}), ratio api/bare ${fmt(ratio, 3)}`)
    for (const [name] of ceilingTargets) {
      out.print(`${name} (reference: same bytes from memory) ${fmt(rpsOf(name), 0)} req/s, ratio to bare ${fmt(rpsOf(name) / bareRps, 3)}`)
    }
    if (broken) out.print("ERROR: some requests failed (socket errors or non-2xx answers): the figures are not valid")
    out.print(`${pass ? "PASS" : "FAIL"}: ratio ${fmt(ratio, 3)} (target ≥ ${minRatio}); load generator: ${loader === "wrk" ? "wrk" : `node (${nodeClient})`}`)
    log(machineLine())
    if (args.profile) log("results: not recorded (a profiled run is slower than a real one)")
    else recordResults("latest-throughput", `Bench (B), \`GET ${PATH}\` req/s against a bare \`node:http\` server, target ratio ≥ ${minRatio}.\n\n${out.block()}`)
    return pass
  } finally {
    for (const c of ceilings) await c.stop()
    await bare?.stop()
    await api.stop()
    reportProfile(args.profile, profileDir)
  }
}

runBench("latest-throughput", main)

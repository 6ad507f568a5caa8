/**
 * Shared helpers of the benchmark drivers: repository paths, free ports, starting the real API
 * (`node dist/main.js --role=api`) as a child process, timed HTTP requests and summary statistics.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The ten symbols of the benchmark dataset. */
export const BENCH_SYMBOLS = [
  "BTCUSDT",
  "ETHUSDT",
  "SOLUSDT",
  "BNBUSDT",
  "XRPUSDT",
  "ADAUSDT",
  "DOGEUSDT",
  "TRXUSDT",
  "AVAXUSDT",
  "LINKUSDT"
] as const

/** The repository root: the nearest directory above this file (bench/ or its compiled copy) whose package.json is the project's. */
export const repoRoot = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const manifest = path.join(dir, "package.json")
    if (fs.existsSync(manifest)) {
      const name = (JSON.parse(fs.readFileSync(manifest, "utf8")) as { name?: string }).name
      if (name === "crypto-streaming-platform") return dir
    }
    const parent = path.dirname(dir)
    if (parent === dir) throw new Error("cannot find the repository root (package.json of crypto-streaming-platform)")
    dir = parent
  }
})()

export const DEFAULT_DB = path.join(repoRoot, "bench", ".data", "bench.db")
export const DEFAULT_MAIN = path.join(repoRoot, "dist", "main.js")
/** Compiled benchmark modules (bench/tsconfig.json): dist/bench/bench/*.js. */
export const compiledBenchDir = path.join(repoRoot, "dist", "bench", "bench")

export const log = (line: string) => process.stdout.write(`${line}\n`)

/** The machine: CPU model, cores, RAM, Node version, OS. */
export const machineInfo = () => {
  const cpus = os.cpus()
  return `${cpus.length} × ${cpus[0]?.model.trim() ?? "?"}, ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM, node ${process.version}, ${os.platform()} ${os.release()}`
}

/** The 1, 5 and 15 minute load averages. */
export const loadAverage = () => os.loadavg().map((l) => l.toFixed(2)).join(" ")

/** The load average when this bench process started (lib.ts is loaded first). */
const loadAtStart = loadAverage()

/** One line about the machine, printed by every bench: results on a loaded machine are not comparable. */
export const machineLine = () => `machine: ${machineInfo()}, load average ${loadAverage()}`

/** Where the benches keep their latest figures (recordResults). */
export const RESULTS_FILE = path.join(repoRoot, "bench", "RESULTS.md")

const RESULTS_HEADER = `# Benchmark results

Written by the benches under \`bench/\` (\`recordResults\` in \`bench/lib.ts\`), never by hand and never from
test assertions: each bench replaces its own section with its latest run and leaves the others as they are.
Every section says when it ran, the command, the machine and the load average (1/5/15 min) at the start and
the end of the run: figures from a busy machine are not comparable. See bench/README.md for what each
bench measures.
`

/** The command that is running: the npm script (when started by npm) and the node command line. */
const commandLine = () => {
  const script = process.env["npm_lifecycle_event"]
  const node = ["node", ...process.argv.slice(1).map((a, i) => (i === 0 ? path.relative(repoRoot, a) : a))].join(" ")
  return script !== undefined && script !== "" ? `\`npm run ${script}\` → \`${node}\`` : `\`${node}\``
}

/**
 * Replaces (or appends) the section `section` of bench/RESULTS.md with `body` (Markdown), stamped with the
 * date, the command, the machine and the load average; other sections stay as they are.
 */
export const recordResults = (section: string, body: string, file: string = RESULTS_FILE) => {
  const begin = `<!-- bench:${section} -->`
  const end = `<!-- /bench:${section} -->`
  const block = [
    begin,
    `## ${section}`,
    "",
    `- date: ${new Date().toISOString()}`,
    `- command: ${commandLine()}`,
    `- machine: ${machineInfo()}`,
    `- load average (1/5/15 min): ${loadAtStart} at the start, ${loadAverage()} at the end`,
    "",
    body.trimEnd(),
    end
  ].join("\n")
  const current = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : RESULTS_HEADER
  const from = current.indexOf(begin)
  const to = from < 0 ? -1 : current.indexOf(end, from)
  const next =
    from >= 0 && to >= 0
      ? `${current.slice(0, from)}${block}${current.slice(to + end.length)}`
      : `${current.trimEnd()}\n\n${block}\n`
  const temp = `${file}.${process.pid}.tmp`
  fs.writeFileSync(temp, next)
  fs.renameSync(temp, file)
  log(`results: section "${section}" of ${path.relative(repoRoot, file)} updated`)
}

/** Lines that are printed and kept, to be recorded as they were printed (recordResults). */
export const transcript = () => {
  const lines: Array<string> = []
  const print = (line: string) => {
    log(line)
    lines.push(line)
  }
  /** The kept lines as a Markdown code block. */
  const block = () => ["```", ...lines.flatMap((l) => l.split("\n")), "```"].join("\n")
  return { print, lines, block } as const
}

/** A TCP port nobody listens on right now (the OS picks it). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A child process whose output lines are forwarded with a prefix, and that can be stopped. */
export interface Child {
  readonly process: ChildProcess
  readonly stop: () => Promise<void>
  /** Rejects when the process exits before `stop`. */
  readonly exited: Promise<never>
}

export const spawnChild = (label: string, command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv): Child => {
  const child = spawn(command, args, { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] })
  const forward = (stream: NodeJS.ReadableStream | null) => {
    let pending = ""
    stream?.setEncoding("utf8")
    stream?.on("data", (chunk: string) => {
      pending += chunk
      const lines = pending.split("\n")
      pending = lines.pop() ?? ""
      for (const line of lines) if (line.trim() !== "") log(`  [${label}] ${line}`)
    })
  }
  forward(child.stdout)
  forward(child.stderr)
  let stopping = false
  const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  const exited = exit.then((code) => {
    if (stopping) return new Promise<never>(() => {})
    throw new Error(`${label} exited early with code ${code}`)
  })
  exited.catch(() => {}) // observed by whoever races it
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    stopping = true
    child.kill("SIGTERM")
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
    await exit
    clearTimeout(timer)
  }
  return { process: child, stop, exited }
}

/** Environment variables that would switch on API keys or rate limiting and skew the figures. */
const SECURITY_VARS = ["API_KEYS", "RATE_LIMIT_PER_MINUTE", "RATE_LIMIT_BURST", "CORS_ORIGINS", "TRUST_PROXY", "HSTS", "API_PUBLIC_DOCS"]

/** This process's environment without the API protection settings (bench servers run with all of them off). */
export const openEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const name of SECURITY_VARS) delete env[name]
  return env
}

export interface Api extends Child {
  readonly base: string
}

/**
 * The shipped API binary, `node dist/main.js --role=api`, serving `db` on 127.0.0.1:<free port>,
 * ready once GET /health answers 200. Security settings come from nothing (all protections off,
 * the middleware still runs and adds its headers).
 */
export const startApi = async (options: {
  readonly db: string
  readonly main: string
  readonly nodeArgs?: ReadonlyArray<string>
  /** Set on top of the bench environment (e.g. a security setting a bench wants on). */
  readonly env?: Readonly<Record<string, string>>
}): Promise<Api> => {
  if (!fs.existsSync(options.main)) throw new Error(`${options.main} is missing: run \`npm run build\` first`)
  if (options.env?.["STORE"] !== "postgres" && !fs.existsSync(options.db)) throw new Error(`${options.db} is missing: run the seed bench first (bench/README.md)`)
  const port = await freePort()
  const env = openEnv()
  Object.assign(env, {
    STORAGE_PATH: options.db,
    HOST: "127.0.0.1",
    PORT: String(port),
    SYMBOLS: BENCH_SYMBOLS.join(","),
    LOG_LEVEL: "warning",
    NODE_ENV: "production"
  })
  Object.assign(env, options.env ?? {})
  const child = spawnChild("api", process.execPath, [...(options.nodeArgs ?? []), options.main, "--role=api"], env)
  const base = `http://127.0.0.1:${port}`
  await Promise.race([waitFor(`${base}/health`, 60_000), child.exited])
  return { ...child, base }
}

/** Resolves once GET `url` answers 200. */
export const waitFor = async (url: string, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const res = await fetch(url)
      await res.arrayBuffer()
      if (res.status === 200) return
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`)
    await sleep(100)
  }
}

export interface Timed {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: Buffer
  /** From writing the request to the last byte of the answer. */
  readonly ms: number
}

/** GET over `agent` (keep-alive), timed with the monotonic clock. */
export const timedGet = (agent: http.Agent, url: string, headers: Record<string, string> = {}): Promise<Timed> =>
  new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const req = http.get(url, { agent, headers }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          ms: Number(process.hrtime.bigint() - started) / 1e6
        })
      )
      res.on("error", reject)
    })
    req.on("error", reject)
  })

export interface Summary {
  readonly count: number
  readonly mean: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly max: number
}

/** Nearest-rank percentiles. */
export const summarize = (samples: ReadonlyArray<number>): Summary => {
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
  return {
    count: sorted.length,
    mean: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length),
    p50: rank(50),
    p95: rank(95),
    p99: rank(99),
    max: sorted[sorted.length - 1] ?? 0
  }
}

export const fmt = (x: number, digits = 2) => x.toFixed(digits)

export const formatSummary = (s: Summary) =>
  `n=${s.count}  mean ${fmt(s.mean)}  p50 ${fmt(s.p50)}  p95 ${fmt(s.p95)}  p99 ${fmt(s.p99)}  max ${fmt(s.max)} ms`

export const formatDuration = (ms: number) => {
  const s = Math.round(ms / 1000)
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
}

// ---------------------------------------------------------------------------------------------
// CPU profiles (node --cpu-prof): where a server spent its time

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly hitCount?: number
  readonly children?: ReadonlyArray<number>
}
interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
}

/** Which package, Node internal or product file a profile frame belongs to. */
const ownerOf = (url: string, functionName: string): string => {
  if (url === "") return functionName.startsWith("(") ? functionName : "(native)"
  if (url.startsWith("node:")) return "node (internals)"
  const nm = url.lastIndexOf("/node_modules/")
  if (nm >= 0) {
    const parts = url.slice(nm + "/node_modules/".length).split("/")
    return parts[0]!.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!
  }
  const rel = url.replace(/^file:\/\//, "").replace(`${repoRoot}/`, "")
  return `product: ${rel}`
}

const shortUrl = (url: string) => {
  const nm = url.lastIndexOf("/node_modules/")
  if (nm >= 0) return url.slice(nm + "/node_modules/".length)
  return url.replace(/^file:\/\//, "").replace(`${repoRoot}/`, "")
}

/**
 * A text summary of a .cpuprofile: self time by owner (package / product file), the hottest functions
 * by self time, and product functions by inclusive time (time with them on the stack).
 */
export const summarizeProfile = (file: string, top = 20): string => {
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const totalMs = (profile.endTime - profile.startTime) / 1000
  const perSample = totalMs / Math.max(1, profile.samples.length)
  const selfByOwner = new Map<string, number>()
  const selfByFunction = new Map<string, number>()
  const inclusiveProduct = new Map<string, number>()
  const keyOf = (n: ProfileNode) =>
    `${n.callFrame.functionName || "(anonymous)"}  ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`
  for (const id of profile.samples) {
    const leaf = byId.get(id)
    if (leaf === undefined) continue
    const owner = ownerOf(leaf.callFrame.url, leaf.callFrame.functionName)
    selfByOwner.set(owner, (selfByOwner.get(owner) ?? 0) + perSample)
    const key = keyOf(leaf)
    selfByFunction.set(key, (selfByFunction.get(key) ?? 0) + perSample)
    const seen = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const n = byId.get(at)!
      if (!ownerOf(n.callFrame.url, n.callFrame.functionName).startsWith("product:")) continue
      const k = keyOf(n)
      if (seen.has(k)) continue
      seen.add(k)
      inclusiveProduct.set(k, (inclusiveProduct.get(k) ?? 0) + perSample)
    }
  }
  const busy = totalMs - (selfByOwner.get("(idle)") ?? 0)
  const table = (m: Map<string, number>, n: number) =>
    [...m.entries()]
      .filter(([k]) => !k.startsWith("(idle)"))
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, ms]) => `    ${fmt(ms, 0).padStart(7)} ms  ${fmt((100 * ms) / Math.max(1, busy), 1).padStart(5)} %  ${k}`)
      .join("\n")
  return [
    `profile ${path.relative(repoRoot, file)}: ${fmt(totalMs, 0)} ms recorded, ${fmt(busy, 0)} ms busy (not idle); % of busy time`,
    "  self time by owner:",
    table(selfByOwner, 15),
    `  top ${top} functions by self time:`,
    table(selfByFunction, top),
    `  product functions by inclusive time:`,
    table(inclusiveProduct, top)
  ].join("\n")
}

/** The newest .cpuprofile in `dir`. */
export const newestProfile = (dir: string): string | undefined =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => f.endsWith(".cpuprofile"))
        .map((f) => path.join(dir, f))
        .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0]
    : undefined

/** Prints a summary of the newest CPU profile in `dir` when the run was profiled. */
export const reportProfile = (profiled: boolean, dir: string) => {
  if (!profiled) return
  const file = newestProfile(dir)
  log(file === undefined ? "no CPU profile was written" : `\n${summarizeProfile(file)}`)
}

/** Runs a bench: exit 0 on PASS, 1 on FAIL, 2 when the bench itself failed. */
export const runBench = (name: string, main: () => Promise<boolean>) =>
  main().then(
    (pass) => process.exit(pass ? 0 : 1),
    (error: unknown) => {
      process.stderr.write(`${name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
      process.exit(2)
    }
  )

/**
 * For each line of a bundle's text, where its code came from, by esbuild's region comments: the
 * package for node_modules, the file for src/ (and `(bundle) <file>` for another file), and
 * "(esbuild runtime)" before the first region.
 */
export const bundleOwners = (bundle: string) => {
  const starts: Array<[number, string]> = []
  bundle.split("\n").forEach((line, i) => {
    const m = /^\/\/ (\S+\.(?:[cm]?js|ts|json))$/.exec(line)
    if (m === null) return
    const file = m[1]!
    if (!file.startsWith("node_modules/")) return void starts.push([i, file.startsWith("src/") ? file : `(bundle) ${file}`])
    const rest = file.slice("node_modules/".length).split("/")
    starts.push([i, rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!])
  })
  return (line: number) => {
    let lo = 0
    let hi = starts.length - 1
    let found = "(esbuild runtime)"
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (starts[mid]![0] <= line) {
        found = starts[mid]![1]
        lo = mid + 1
      } else hi = mid - 1
    }
    return found
  }
}

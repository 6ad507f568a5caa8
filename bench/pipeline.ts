/**
 * Shared helpers of the ingestion benches (store-path, e2e-direct, e2e-kafka, memory): simulated ticks
 * from the product's own simulator, the product's SQLite schema, the plain better-sqlite3 baseline,
 * the shipped binary started as a role with JSON logs, read-only SQLite queries, RSS from /proc and a
 * CPU-profile summary that knows which package each line of the bundle came from.
 */
import { NodeContext } from "@effect/platform-node"
import { ConfigProvider, Duration, Effect, Layer } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import * as AppConfig from "../src/Config.js"
import { makeSimMarket, offsetMicros } from "../src/domain/SimMarket.js"
import type { Tick, TickerSymbol } from "../src/domain/Ticker.js"
import { Health } from "../src/status/Health.js"
import { CandleRepo } from "../src/store/CandleRepo.js"
import { makeJsonlSink } from "../src/store/JsonlSink.js"
import { checkpointer, WAL_AUTOCHECKPOINT_PAGES } from "../src/store/Checkpointer.js"
import { sqliteLayer } from "../src/store/Sql.js"
import { makeSqliteSink } from "../src/store/SqliteSink.js"
import { fanOut, TickSink } from "../src/store/TickSink.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { BENCH_SYMBOLS, bundleOwners, DEFAULT_MAIN, fmt, freePort, log, repoRoot, sleep } from "./lib.js"

// ---------------------------------------------------------------------------------------------
// better-sqlite3, typed as far as the benches use it (the project has no @types/better-sqlite3)

export interface SqliteStatement {
  readonly source: string
  readonly reader: boolean
  run(...params: ReadonlyArray<unknown>): { changes: number }
  all(...params: ReadonlyArray<unknown>): Array<Record<string, unknown>>
  get(...params: ReadonlyArray<unknown>): Record<string, unknown> | undefined
}
export interface SqliteDb {
  prepare(sql: string): SqliteStatement
  pragma(source: string): unknown
  transaction<A extends ReadonlyArray<unknown>>(fn: (...args: A) => void): (...args: A) => void
  close(): void
}
export type SqliteDatabase = new (file: string, options?: { readonly?: boolean; fileMustExist?: boolean }) => SqliteDb
/** The same module instance that @effect/sql-sqlite-node loads (one require cache). */
export const Database = createRequire(import.meta.url)("better-sqlite3") as SqliteDatabase

// ---------------------------------------------------------------------------------------------
// Ticks and the schema

/** The first `count` symbols of the benchmark set (10 at most). */
export const symbolsOf = (count: number): ReadonlyArray<string> => {
  if (!Number.isInteger(count) || count < 1 || count > BENCH_SYMBOLS.length) {
    throw new Error(`--symbols must be a whole number from 1 to ${BENCH_SYMBOLS.length}, got ${count}`)
  }
  return BENCH_SYMBOLS.slice(0, count)
}

/** `count` ticks of the product's simulated market (src/domain/SimMarket.ts), as the sim source publishes them. */
export const simTicks = (
  count: number,
  options: { readonly rate: number; readonly symbols: ReadonlyArray<string>; readonly startMicros: number; readonly seed?: number }
): Array<Tick> => {
  const market = makeSimMarket({
    seed: options.seed ?? 42,
    eventsPerSecond: options.rate,
    symbols: options.symbols as ReadonlyArray<TickerSymbol>,
    startMicros: options.startMicros
  })
  const out: Array<Tick> = new Array(count)
  for (let i = 0; i < count; i++) out[i] = market.next()
  return out
}

/** Creates `file` with the product's schema: the real sqliteLayer (WAL, synchronous=NORMAL, migrations), then closes it. */
export const createSchema = (file: string): Promise<void> =>
  Effect.runPromise(Effect.scoped(Layer.build(sqliteLayer(file))).pipe(Effect.asVoid))

export const TICK_COLUMNS = "symbol, ts_us, timestamp_utc, last_price, price_change_percent, volume, source, event_time, ingested_at"

/** Opens `file` for writing with the product's pragmas (Sql.ts: WAL, synchronous=NORMAL, its wal_autocheckpoint). */
export const openForWrite = (file: string): SqliteDb => {
  const db = new Database(file)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = NORMAL")
  db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`)
  return db
}

/**
 * The baseline: a plain better-sqlite3 loop, one prepared single-row INSERT into `ticks` (the same
 * columns and values the product stores, ON CONFLICT DO NOTHING like the product) per tick, one
 * transaction per `batch` ticks. `file` must have the schema (createSchema). Returns the elapsed ms of
 * the batches (open and close excluded) and the rows stored.
 */
export const plainInsert = (
  file: string,
  ticks: ReadonlyArray<Tick>,
  batch: number,
  options: {
    /** Set wal_autocheckpoint = 0: SQLite never copies the WAL back (an experiment: the WAL then grows without bound). */
    readonly noCheckpoints?: boolean
  } = {}
): { readonly ms: number; readonly rows: number } => {
  const db = openForWrite(file)
  try {
    if (options.noCheckpoints === true) db.pragma("wal_autocheckpoint = 0")
    const insert = db.prepare(
      `INSERT INTO ticks (${TICK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
    )
    const writeBatch = db.transaction((from: number, to: number, ingestedAt: string) => {
      for (let i = from; i < to; i++) {
        const { event, symbol, tsMicros } = ticks[i]!
        insert.run(
          symbol,
          tsMicros,
          event.timestamp_utc,
          event.lastPrice,
          event.priceChangePercent,
          event.volume,
          event.source,
          event.event_time ?? null,
          ingestedAt
        )
      }
    })
    const started = performance.now()
    for (let i = 0; i < ticks.length; i += batch) writeBatch(i, Math.min(ticks.length, i + batch), new Date().toISOString())
    const ms = performance.now() - started
    const rows = Number(db.prepare("SELECT COUNT(*) AS n FROM ticks").get()!["n"])
    return { ms, rows }
  } finally {
    db.close()
  }
}

/** Median of `xs` (mean of the two middle values for an even count). */
export const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length === 0 ? Number.NaN : s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** `n` events/s as text: 81,234/s. */
export const perSecond = (n: number) => `${Math.round(n).toLocaleString("en-US")}/s`
export const thousands = (n: number) => Math.round(n).toLocaleString("en-US")

// ---------------------------------------------------------------------------------------------
// The product's sinks, in process

export type Which = "sinks" | "sqlite sink" | "insertMany" | "jsonl sink" | "sinks, concurrent"

/** Per-sink time of one run (ms), filled when `timeSinks` is set. */
export type SinkTimes = Map<string, number>

export const timedSink = (sink: TickSink["Type"], times: SinkTimes): TickSink["Type"] =>
  TickSink.of({
    name: sink.name,
    writeBatch: (ticks) =>
      Effect.suspend(() => {
        const started = performance.now()
        return sink.writeBatch(ticks).pipe(
          Effect.ensuring(Effect.sync(() => times.set(sink.name, (times.get(sink.name) ?? 0) + performance.now() - started)))
        )
      })
  })

/**
 * Writes `ticks` in batches of `batchSize` through the product's sink(s) `which`, in this process, with
 * the layers --role=all uses (sqliteLayer at `dir`/app.db, its checkpoint worker, TickWriter, CandleRepo, Health, NodeContext);
 * returns the ms of the writes only (opening and migrations excluded).
 */
export const runProduct = (
  which: Which,
  ticks: ReadonlyArray<Tick>,
  dir: string,
  options: {
    readonly batchSize: number
    /** Filled with each sink's time when given. */
    readonly times?: SinkTimes
    /** Told when the timed writes start and end (after the layers are built, before they are released). */
    readonly timing?: { readonly started: () => void; readonly ended: () => void }
    /** Without the store's checkpoint worker (an experiment: the writers' commits checkpoint). */
    readonly noCheckpointWorker?: boolean
  }
): Promise<number> => {
  const { batchSize, times, timing } = options
  const db = path.join(dir, "app.db")
  const rawDir = path.join(dir, "raw")
  const worker = options.noCheckpointWorker === true ? Layer.empty : Layer.scopedDiscard(checkpointer(db))
  const layer = Layer.mergeAll(TickWriter.Default, CandleRepo.Default, worker).pipe(
    Layer.provideMerge(sqliteLayer(db)),
    Layer.merge(Health.Default),
    Layer.merge(NodeContext.layer)
  )
  return Effect.runPromise(
    Effect.gen(function* () {
      const health = yield* Health
      let write: (ticks: ReadonlyArray<Tick>) => Effect.Effect<unknown, unknown>
      const wrap = (s: TickSink["Type"]) => (times === undefined ? s : timedSink(s, times))
      switch (which) {
        case "sinks": {
          // As Roles.ts SinkLive wires them.
          const sink = fanOut([wrap(yield* makeSqliteSink), wrap(yield* makeJsonlSink(rawDir))], health.sinkResult)
          write = sink.writeBatch
          break
        }
        case "sinks, concurrent": {
          // Experiment (not the product): fanOut's semantics, both sinks written at the same time.
          const sinks = [yield* makeSqliteSink, yield* makeJsonlSink(rawDir)]
          write = (ticks) =>
            Effect.forEach(
              sinks,
              (s) =>
                s.writeBatch(ticks).pipe(
                  Effect.tapBoth({ onFailure: (e) => health.sinkResult(s.name, e.message), onSuccess: () => health.sinkResult(s.name, null) }),
                  Effect.either
                ),
              { concurrency: "unbounded" }
            ).pipe(Effect.flatMap((results) => Effect.forEach(results, (r) => r, { discard: true })))
          break
        }
        case "sqlite sink":
          write = (yield* makeSqliteSink).writeBatch
          break
        case "jsonl sink":
          write = (yield* makeJsonlSink(rawDir)).writeBatch
          break
        case "insertMany": {
          const writer = yield* TickWriter
          write = writer.insertMany
          break
        }
      }
      timing?.started()
      const started = performance.now()
      for (let i = 0; i < ticks.length; i += batchSize) yield* write(ticks.slice(i, i + batchSize))
      const ms = performance.now() - started
      timing?.ended()
      return ms
    }).pipe(Effect.provide(layer), Effect.scoped)
  )
}

// ---------------------------------------------------------------------------------------------
// Reading what a role stored

/** Runs `f` on a read-only connection to `file` (WAL: safe while another process writes). */
export const withReadOnly = <A>(file: string, f: (db: SqliteDb) => A): A => {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return f(db)
  } finally {
    db.close()
  }
}

export interface StoredSummary {
  /** Rows in `ticks`. */
  readonly rows: number
  /** Sum of `symbol_stats.events` (what /symbols adds up). */
  readonly statsEvents: number
  readonly minMicros: number | null
  readonly maxMicros: number | null
  /** Distinct (symbol, ts_us): equal to rows (the primary key), counted for the record. */
  readonly symbols: number
}

export const storedSummary = (file: string): StoredSummary =>
  withReadOnly(file, (db) => {
    const t = db.prepare("SELECT COUNT(*) AS n, MIN(ts_us) AS lo, MAX(ts_us) AS hi, COUNT(DISTINCT symbol) AS s FROM ticks").get()!
    const s = db.prepare("SELECT COALESCE(SUM(events), 0) AS n FROM symbol_stats").get()!
    return {
      rows: Number(t["n"]),
      statsEvents: Number(s["n"]),
      minMicros: t["lo"] === null ? null : Number(t["lo"]),
      maxMicros: t["hi"] === null ? null : Number(t["hi"]),
      symbols: Number(t["s"])
    }
  })

/** Lines (newline characters) in every *.jsonl file of `dir`: the raw log's event count. */
export const jsonlLines = (dir: string): number => {
  if (!fs.existsSync(dir)) return 0
  let lines = 0
  const buffer = Buffer.alloc(1 << 20)
  for (const name of fs.readdirSync(dir).filter((f) => f.endsWith(".jsonl"))) {
    const fd = fs.openSync(path.join(dir, name), "r")
    try {
      for (;;) {
        const n = fs.readSync(fd, buffer, 0, buffer.length, null)
        if (n === 0) break
        for (let i = 0; i < n; i++) if (buffer[i] === 10) lines++
      }
    } finally {
      fs.closeSync(fd)
    }
  }
  return lines
}

/**
 * The index `k` of the sim's event whose instant is `micros` (event k is at start + offsetMicros(k, rate)),
 * or undefined when no event has that instant.
 */
export const simIndexAt = (micros: number, startMicros: number, rate: number): number | undefined => {
  const offset = micros - startMicros
  if (offset < 0) return undefined
  let k = Math.max(0, Math.floor((offset * rate) / 1_000_000) - 1)
  while (offsetMicros(k, rate) < offset) k++
  return offsetMicros(k, rate) === offset ? k : undefined
}

// ---------------------------------------------------------------------------------------------
// Memory of a process

/** A field of /proc/<pid>/status in bytes (VmRSS, VmHWM), or undefined once the process is gone. */
export const procStatus = (pid: number, field: string): number | undefined => {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return m === null ? undefined : Number(m[1]) * 1024
  } catch {
    return undefined
  }
}
export const MB = 1024 * 1024

// ---------------------------------------------------------------------------------------------
// The shipped binary as a role

export interface LogLine {
  readonly message: string
  readonly logLevel: string
  readonly timestamp: string
  readonly annotations: Readonly<Record<string, unknown>>
  /** When the bench read the line (its clock). */
  readonly seenAt: number
}

export interface RoleProcess {
  readonly label: string
  readonly child: ChildProcess
  readonly pid: number
  /** JSON log lines so far. */
  readonly lines: Array<LogLine>
  /** Output lines that are not JSON log lines (a crash's stack, for instance). */
  readonly other: Array<string>
  /** Resolves when the process ends, with its exit code (null when killed by a signal) and signal. */
  readonly exit: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** The first log line matching `test`, waiting for it up to `timeoutMs`; rejects if the process ends first. */
  readonly waitForLine: (test: (line: LogLine) => boolean, timeoutMs: number, what: string) => Promise<LogLine>
  /** SIGTERM, then SIGKILL after `killAfterMs`; resolves with the exit and how long the stop took. */
  readonly stop: (killAfterMs?: number) => Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly ms: number }>
  /** SIGKILL if still running (cleanup). */
  readonly kill: () => void
}

/** The node options of `npm start` (package.json): how the product is launched, the Docker image included. */
export const launchNodeArgs: ReadonlyArray<string> = (() => {
  const start = (JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { scripts: { start: string } }).scripts.start
  const launch = /\bnode((?: --[\w-]+(?:=\S+)?)*) dist\/main\.js/.exec(start)
  if (launch === null) throw new Error(`package.json's start script does not run node … dist/main.js: ${start}`)
  return launch[1]!.split(" ").filter((a) => a !== "")
})()

/**
 * `node [nodeArgs: launchNodeArgs unless given] dist/main.js --role=<role>` with exactly PATH, HOME, LOG_FORMAT=json, LOG_LEVEL=info,
 * HOST=127.0.0.1 and `env` (no API protection, no inherited settings). Log lines at WARN and above are
 * echoed with the label; every JSON line is kept for the bench to read.
 */
export const startRole = (
  label: string,
  role: "all" | "producer" | "consumer" | "api",
  env: Readonly<Record<string, string>>,
  options: {
    readonly nodeArgs?: ReadonlyArray<string>
    readonly main?: string
    readonly echo?: (line: LogLine) => boolean
    /** Output lines that are not JSON log lines and are kept without being echoed (e.g. --trace-gc). */
    readonly quiet?: (text: string) => boolean
  } = {}
): RoleProcess => {
  const main = options.main ?? DEFAULT_MAIN
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` first`)
  const child = spawn(process.execPath, [...(options.nodeArgs ?? launchNodeArgs), main, `--role=${role}`], {
    cwd: repoRoot,
    env: {
      PATH: process.env["PATH"] ?? "",
      HOME: process.env["HOME"] ?? "",
      LOG_FORMAT: "json",
      LOG_LEVEL: "info",
      HOST: "127.0.0.1",
      NODE_ENV: "production",
      ...env
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  if (child.pid === undefined) throw new Error(`could not start ${label}`)
  const lines: Array<LogLine> = []
  const other: Array<string> = []
  const waiters = new Set<() => void>()
  const echo = options.echo ?? ((l: LogLine) => l.logLevel !== "INFO" && l.logLevel !== "DEBUG")
  const forward = (stream: NodeJS.ReadableStream | null) => {
    let pending = ""
    stream?.setEncoding("utf8")
    stream?.on("data", (chunk: string) => {
      pending += chunk
      const parts = pending.split("\n")
      pending = parts.pop() ?? ""
      for (const text of parts) {
        if (text.trim() === "") continue
        let parsed: LogLine | undefined
        try {
          const json = JSON.parse(text) as Omit<LogLine, "seenAt">
          if (typeof json.message === "string" && typeof json.logLevel === "string") {
            parsed = { ...json, annotations: json.annotations ?? {}, seenAt: Date.now() }
          }
        } catch {
          parsed = undefined
        }
        if (parsed === undefined) {
          other.push(text)
          if (options.quiet?.(text) !== true) log(`  [${label}] ${text}`)
        } else {
          lines.push(parsed)
          if (echo(parsed)) log(`  [${label}] ${parsed.logLevel} ${parsed.message}`)
        }
      }
      for (const w of waiters) w()
    })
  }
  forward(child.stdout)
  forward(child.stderr)
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => {
      resolve({ code, signal })
      for (const w of waiters) w()
    })
  )
  const ended = () => child.exitCode !== null || child.signalCode !== null
  const waitForLine = (test: (line: LogLine) => boolean, timeoutMs: number, what: string) =>
    new Promise<LogLine>((resolve, reject) => {
      const check = () => {
        const found = lines.find(test)
        if (found !== undefined) {
          done()
          resolve(found)
        } else if (ended()) {
          done()
          reject(new Error(`${label} ended (${child.exitCode ?? child.signalCode}) before ${what}; its last lines:\n${tailOf(lines, other)}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`${label}: no ${what} within ${timeoutMs} ms; its last lines:\n${tailOf(lines, other)}`))
      }, timeoutMs)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })
  const stop = async (killAfterMs = 10_000) => {
    const started = Date.now()
    if (!ended()) {
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs)
      const result = await exit
      clearTimeout(timer)
      return { ...result, ms: Date.now() - started }
    }
    return { ...(await exit), ms: 0 }
  }
  const kill = () => {
    if (!ended()) child.kill("SIGKILL")
  }
  return { label, child, pid: child.pid, lines, other, exit, waitForLine, stop, kill }
}

const tailOf = (lines: ReadonlyArray<LogLine>, other: ReadonlyArray<string>) =>
  [...lines.slice(-8).map((l) => `${l.logLevel} ${l.message}`), ...other.slice(-8)].map((l) => `    ${l}`).join("\n")

/** Processes started by this bench, killed on exit whatever happens (a failed bench leaves nothing running). */
const started = new Set<RoleProcess>()
process.on("exit", () => {
  for (const p of started) p.kill()
})
export const track = (p: RoleProcess): RoleProcess => {
  started.add(p)
  void p.exit.then(() => started.delete(p))
  return p
}

/** The sim's start line: when its loop began (the log's timestamp, ms) and the instant of event 0 it names. */
export const simStartOf = (lines: ReadonlyArray<LogLine>): { readonly beganMs: number; readonly firstEventMicros: number } | undefined => {
  const line = lines.find((l) => l.message.startsWith("simulating "))
  if (line === undefined) return undefined
  const m = /the first event at ([^\s;]+)/.exec(line.message) // ";" and the trade rate follow when trades are on
  return { beganMs: Date.parse(line.timestamp), firstEventMicros: m === null ? Number.NaN : isoMicros(m[1]!) }
}

/** How many events the sim says it published when it stopped, or undefined before it stopped. */
export const simPublishedOf = (lines: ReadonlyArray<LogLine>): number | undefined => {
  const line = lines.find((l) => l.message.startsWith("sim stopped after publishing "))
  const m = line === undefined ? null : /publishing (\d+) event/.exec(line.message)
  return m === null ? undefined : Number(m[1])
}

/** µs since the epoch of an ISO instant with up to 6 decimals (2026-01-15T14:03:22.913852+00:00). */
export const isoMicros = (text: string): number => {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)$/.exec(text)
  if (m === null) return Number.NaN
  const seconds = Date.parse(`${m[1]}${m[3]}`)
  return seconds * 1000 + Number((m[2] ?? "").padEnd(6, "0"))
}

/** An ISO instant with µs, UTC (the contract's spelling). */
export const microsIso = (micros: number) => {
  const second = Math.floor(micros / 1_000_000)
  return `${new Date(second * 1000).toISOString().slice(0, 19)}.${String(micros - second * 1_000_000).padStart(6, "0")}+00:00`
}

/** GET `url` as JSON within `timeoutMs`, or undefined (not listening, timed out, not JSON). */
export const getJson = async (url: string, timeoutMs = 2000): Promise<{ readonly status: number; readonly body: unknown } | undefined> => {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
    return { status: res.status, body: await res.json() }
  } catch {
    return undefined
  }
}

/** Resolves once GET `url` answers 200; throws after `timeoutMs` or when `role` ends first. */
export const waitLive = async (url: string, role: RoleProcess, timeoutMs = 30_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (role.child.exitCode !== null || role.child.signalCode !== null) {
      throw new Error(`${role.label} exited (${role.child.exitCode ?? role.child.signalCode}) before ${url} answered`)
    }
    const r = await getJson(url, 1000)
    if (r?.status === 200) return
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`)
    await sleep(50)
  }
}

/** Sum of `events` over `/symbols`, or undefined when the API did not answer. */
export const symbolsTotal = async (base: string): Promise<number | undefined> => {
  const r = await getJson(`${base}/symbols`)
  if (r === undefined || r.status !== 200 || !Array.isArray(r.body)) return undefined
  return (r.body as ReadonlyArray<{ events?: number }>).reduce((n, s) => n + Number(s.events ?? 0), 0)
}

/** `components.store.newest_event_age_seconds` of `/health` (null before the first event), undefined without an answer. */
export const newestAge = async (base: string): Promise<number | null | undefined> => {
  const r = await getJson(`${base}/health`)
  const body = r?.body as { components?: { store?: { newest_event_age_seconds?: number | null } } } | undefined
  const age = body?.components?.store?.newest_event_age_seconds
  return age === undefined ? undefined : age
}

export { freePort }

// ---------------------------------------------------------------------------------------------
// Temporary directories

/** A fresh directory under bench/.data/tmp (same disk as the repository), removed by `cleanup`. */
export const tempDir = (prefix: string) => {
  const base = path.join(repoRoot, "bench", ".data", "tmp")
  fs.mkdirSync(base, { recursive: true })
  return fs.mkdtempSync(path.join(base, `${prefix}-`))
}
export const removeDir = (dir: string) => fs.rmSync(dir, { recursive: true, force: true })

// ---------------------------------------------------------------------------------------------
// CPU profiles: self time by package, for the bundle (dist/main.js) and for unbundled modules alike

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}
interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/** Which package, product file or runtime part a frame belongs to. */
const frameOwner = (bundle: { readonly url: string; readonly owner: (line: number) => string } | undefined) => {
  return (n: ProfileNode): string => {
    const { functionName, lineNumber, url } = n.callFrame
    if (bundle !== undefined && url === bundle.url) return bundle.owner(lineNumber)
    if (url === "") {
      if (functionName.startsWith("(")) return functionName
      return /^(run|all|get|iterate|exec|prepare|Statement|Database|close)$/.test(functionName)
        ? "better-sqlite3 (native: SQLite)"
        : "(native: V8 builtins, JSON, Buffer, …)"
    }
    if (url.startsWith("node:")) return "node (internals)"
    const nm = url.lastIndexOf("/node_modules/")
    if (nm >= 0) {
      const parts = url.slice(nm + "/node_modules/".length).split("/")
      return parts[0]!.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!
    }
    const rel = url.replace(/^file:\/\//, "").replace(`${repoRoot}/`, "")
    const src = /(?:^|\/)(src\/.*)\.js$/.exec(rel)
    if (src !== null) return `${src[1]}.ts`
    return rel
  }
}

export interface ProfileSummary {
  readonly text: string
  /** Self ms by owner (package / src file / runtime part), idle excluded. */
  readonly byOwner: ReadonlyMap<string, number>
  readonly busyMs: number
  readonly totalMs: number
}

/**
 * Self time by owner and the hottest functions of a .cpuprofile. Pass `bundleFile` when the profile
 * is of dist/main.js, so that each bundle line is credited to its package or src/ file.
 */
export const summarizeCpuProfile = (file: string, bundleFile?: string, top = 15): ProfileSummary => {
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile
  const bundle = bundleFile === undefined ? undefined : { url: pathToFileURL(bundleFile).href, owner: bundleOwners(fs.readFileSync(bundleFile, "utf8")) }
  const ownerOf = frameOwner(bundle)
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = new Map<string, number>()
  const fns = new Map<string, number>()
  let total = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000
    const n = byId.get(profile.samples[i]!)
    if (n === undefined) continue
    total += dt
    const owner = ownerOf(n)
    self.set(owner, (self.get(owner) ?? 0) + dt)
    const key = `${n.callFrame.functionName || "(anonymous)"} [${owner}]`
    fns.set(key, (fns.get(key) ?? 0) + dt)
  }
  const idle = self.get("(idle)") ?? 0
  self.delete("(idle)")
  const busy = total - idle
  const table = (m: Map<string, number>, k: number) =>
    [...m.entries()]
      .filter(([key]) => !key.startsWith("(idle)"))
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([key, ms]) => `    ${fmt(ms, 0).padStart(7)} ms  ${fmt((100 * ms) / Math.max(1e-9, busy), 1).padStart(5)} %  ${key}`)
      .join("\n")
  const text = [
    `profile ${path.relative(repoRoot, file)}: ${fmt(total, 0)} ms sampled, ${fmt(busy, 0)} ms busy (not idle); % of busy time`,
    "  self time by owner:",
    table(self, top),
    `  top ${top} functions by self time:`,
    table(fns, top)
  ].join("\n")
  return { text, byOwner: self, busyMs: busy, totalMs: total }
}

/** Groups of owners for a one-line account of where a process's CPU went. */
export const ownerGroups = (byOwner: ReadonlyMap<string, number>): ReadonlyArray<readonly [string, number]> => {
  const groups = new Map<string, number>()
  const add = (g: string, ms: number) => groups.set(g, (groups.get(g) ?? 0) + ms)
  for (const [owner, ms] of byOwner) {
    if (owner === "effect") add("effect (runtime, Stream, Schema)", ms)
    // V8 often credits the native SQLite work of better-sqlite3's run/all to the JavaScript frame that
    // called it: @effect/sql-sqlite-node's runStatement. Both are SQLite executing statements.
    else if (owner === "@effect/sql-sqlite-node" || owner.startsWith("better-sqlite3")) add("SQLite statements (better-sqlite3, and runStatement in @effect/sql-sqlite-node that calls it)", ms)
    else if (owner.startsWith("@effect/sql")) add("@effect/sql (statements, transactions)", ms)
    else if (owner.startsWith("@effect/")) add("other @effect/* (platform, cli, …)", ms)
    else if (owner.startsWith("(native")) add("native V8 builtins (JSON, Buffer, …)", ms)
    else if (owner === "(garbage collector)") add("garbage collector", ms)
    else if (owner.startsWith("src/")) add("product code (src/)", ms)
    else if (owner === "node (internals)") add("node internals (fs, http, streams)", ms)
    else if (owner === "kafkajs") add("kafkajs", ms)
    else add("other", ms)
  }
  return [...groups.entries()].sort((a, b) => b[1] - a[1])
}

/** The newest .cpuprofile in `dir`. */
export const newestCpuProfile = (dir: string): string | undefined =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => f.endsWith(".cpuprofile"))
        .map((f) => path.join(dir, f))
        .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0]
    : undefined

export const PROFILE_DIR = path.join(repoRoot, "bench", ".data", "profiles")

// ---------------------------------------------------------------------------------------------
// CPU time of a process, and a trend

/** User + system CPU seconds of `pid` so far (/proc/<pid>/stat, clock ticks of 1/100 s), or undefined once gone. */
export const cpuSeconds = (pid: number): number | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return undefined
  }
}

/** Least-squares slope of y over x (per unit of x); 0 with fewer than two points. */
export const slope = (points: ReadonlyArray<readonly [number, number]>): number => {
  if (points.length < 2) return 0
  const n = points.length
  const mx = points.reduce((a, p) => a + p[0], 0) / n
  const my = points.reduce((a, p) => a + p[1], 0) / n
  let num = 0
  let den = 0
  for (const [x, y] of points) {
    num += (x - mx) * (y - my)
    den += (x - mx) * (x - mx)
  }
  return den === 0 ? 0 : num / den
}

// ---------------------------------------------------------------------------------------------
// Judging a run at a rate: stored vs generated, lag, the newest event's age

/** Events due by `elapsedMs` after the sim's loop began: event k is due at offsetMicros(k, rate) ≤ elapsed. */
export const dueBy = (elapsedMs: number, rate: number) => (elapsedMs < 0 ? 0 : Math.floor((elapsedMs * rate) / 1000) + 1)

export interface RateSample {
  /** Bench clock, ms since the epoch. */
  readonly t: number
  /** Seconds since the sim's loop began. */
  readonly elapsedS: number
  /** Events the sim has due by then. */
  readonly due: number
  /** Events stored (undefined: no answer). */
  readonly stored: number | undefined
  /** newest_event_age_seconds as /health reported it (null: nothing stored yet; undefined: no answer). */
  readonly ageS: number | null | undefined
}

export interface RateVerdict {
  readonly storedRate: number
  readonly lagSlope: number
  readonly lagEnd: number
  readonly lagMax: number
  /** The newest stored event's age less the constant start offset: how far behind its schedule, at worst. */
  readonly ageMaxAdj: number | undefined
  /** Why the rate is not sustained (empty: sustained, as far as the samples go). */
  readonly why: ReadonlyArray<string>
}

/**
 * A rate is sustained when, after the warm-up: the stored rate is ≥ 98 % of the rate, the lag
 * (generated − stored) does not grow (least-squares slope ≤ 2 % of the rate) and the newest stored
 * event stays ≤ 2.5 s behind its schedule. (The end-of-run count check is separate.)
 */
export const judgeRate = (
  samples: ReadonlyArray<RateSample>,
  options: { readonly rate: number; readonly warmupS: number; readonly startOffsetS: number }
): RateVerdict => {
  const { rate, startOffsetS, warmupS } = options
  const window = samples.filter((s) => s.elapsedS >= warmupS && s.stored !== undefined)
  const first = window[0]
  const last = window[window.length - 1]
  const storedRate = first !== undefined && last !== undefined && last.t > first.t ? ((last.stored! - first.stored!) / (last.t - first.t)) * 1000 : 0
  const lags = window.map((s) => [s.elapsedS, s.due - s.stored!] as const)
  const lagSlope = slope(lags)
  const lagEnd = lags.length > 0 ? lags[lags.length - 1]![1] : Number.NaN
  const lagMax = lags.reduce((m, l) => Math.max(m, l[1]), 0)
  const ages = window.map((s) => s.ageS).filter((a): a is number => typeof a === "number")
  const ageMaxAdj = ages.length > 0 ? Math.max(...ages) - startOffsetS : undefined
  const why: Array<string> = []
  if (window.length < 2) why.push("too few samples")
  if (storedRate < 0.98 * rate) why.push(`stored ${perSecond(storedRate)} < 98 % of the rate`)
  if (lagSlope > 0.02 * rate) why.push(`lag grows by ${perSecond(lagSlope)}`)
  if (ageMaxAdj === undefined) why.push("no newest_event_age_seconds")
  else if (ageMaxAdj > 2.5) why.push(`newest event up to ${fmt(ageMaxAdj, 1)} s behind its schedule`)
  return { storedRate, lagSlope, lagEnd, lagMax, ageMaxAdj, why }
}

/** Lines a role logged about events it could not store or lost. */
export const unstoredLines = (lines: ReadonlyArray<LogLine>) =>
  lines.filter((l) => /could not be stored|are lost|were lost|not yet handed/i.test(l.message)).map((l) => l.message)

/** The sim logged that the pipeline did not keep up. */
export const simFellBehind = (lines: ReadonlyArray<LogLine>) =>
  lines.some((l) => l.message.startsWith("sim: ") && l.message.includes("behind schedule"))

/** Busy and total jiffies of the whole machine (/proc/stat, all CPUs): busy = total − idle − iowait. */
export const machineJiffies = (): { readonly busy: number; readonly total: number } | undefined => {
  try {
    const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
    return { busy: total - v[3]! - v[4]!, total }
  } catch {
    return undefined
  }
}

/** Percent of the machine's CPU (all cores) busy between two machineJiffies readings. */
export const machineBusyPercent = (
  a: { readonly busy: number; readonly total: number } | undefined,
  b: { readonly busy: number; readonly total: number } | undefined
) => (a === undefined || b === undefined || b.total === a.total ? Number.NaN : (100 * (b.busy - a.busy)) / (b.total - a.total))

// ---------------------------------------------------------------------------------------------
// A transcript as Markdown, for RESULTS.md

/**
 * The printed lines as Markdown: tables (`|…`) stay tables, indented lines (and a profile summary's
 * `profile …` heading) go into code blocks, every other line is a paragraph of its own.
 */
export const toMarkdown = (lines: ReadonlyArray<string>): string => {
  const out: Array<string> = []
  let mode: "none" | "table" | "code" = "none"
  const close = () => {
    if (mode === "code") out.push("```")
    mode = "none"
  }
  for (const raw of lines.flatMap((l) => l.split("\n"))) {
    if (raw.trim() === "") {
      close()
      continue
    }
    if (raw.startsWith("|")) {
      if (mode !== "table") {
        close()
        out.push("")
        mode = "table"
      }
      out.push(raw)
    } else if (raw.startsWith("  ") || raw.startsWith("profile ")) {
      if (mode !== "code") {
        close()
        out.push("", "```")
        mode = "code"
      }
      out.push(raw)
    } else {
      close()
      out.push("", raw)
    }
  }
  close()
  return out.join("\n").trim()
}

// ---------------------------------------------------------------------------------------------
// The product's defaults, read from src/Config.ts (they change: the benches print what they ran with)

export interface ProductDefaults {
  readonly batchSize: number
  readonly batchWindowMs: number
  readonly directQueue: number
  readonly producerBuffer: number
}

/** CONSUMER_BATCH_SIZE, CONSUMER_BATCH_WINDOW_MS, DIRECT_QUEUE_CAPACITY, KAFKA_PRODUCER_BUFFER as unset. */
export const productDefaults = (): ProductDefaults =>
  Effect.runSync(
    Effect.all({
      batchSize: AppConfig.consumerBatchSize,
      batchWindowMs: Effect.map(AppConfig.consumerBatchWindow, Duration.toMillis),
      directQueue: AppConfig.directQueueCapacity,
      producerBuffer: AppConfig.kafkaProducerBuffer
    }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
  )

export const defaultsText = (d: ProductDefaults) =>
  `CONSUMER_BATCH_SIZE ${d.batchSize}, CONSUMER_BATCH_WINDOW_MS ${d.batchWindowMs}, DIRECT_QUEUE_CAPACITY ${d.directQueue}, KAFKA_PRODUCER_BUFFER ${d.producerBuffer}`

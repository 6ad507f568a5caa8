/**
 * Server-sent events under many clients (issue 11): RSS of `node dist/main.js --role=all` with
 * SOURCE=sim (`--events` ticker events/s and `--trades` aggregate trades/s over `--symbols` symbols,
 * direct mode, a fresh database) while `--clients` (1,000) clients hold GET /stream open for
 * `--duration` (180) s: `--readers` (500) read, the rest are sockets that send the request and never
 * read. At the default 1,000 + 1,000 events/s the replay ring (100,000 events at most) is full after
 * about 50 s, so the last part of the window shows the steady state.
 *
 * - Readers take `/stream?symbols=BTCUSDT` (every kind of one symbol, a tenth of the events: 500
 *   readers of the whole stream would be more bytes than 2 cores serve and parse). Each checks that
 *   SSE ids rise and that BTCUSDT's trades come with consecutive agg_trade_id (the sim numbers them
 *   so); one the server ends reconnects with Last-Event-ID (as a browser does) and must go on without
 *   a gap or a repeat. Gaps must be 0.
 * - Paused clients take the whole stream. Their sockets stop draining once the kernel's buffers are
 *   full (a few MB on loopback), and the server must drop them (the outbox rule of
 *   src/api/live/LiveFeed.ts) by resetting the connection. A paused socket reads nothing, so Node
 *   would not notice: the bench sees it leave ESTABLISHED in /proc/net/tcp, and opens a new paused
 *   client at once, so `--clients` stay connected and the drops go on all the window long.
 * - Memory: VmRSS of the server every `--sample-ms` (1000) ms through the window, VmHWM at the end,
 *   the V8 heap after each full collection (`--trace-gc`, as bench (G): the live heap, whenever V8
 *   chooses to collect), and the kernel's TCP buffers of the whole machine (/proc/net/sockstat),
 *   where what was sent to a socket that does not read waits until it is dropped. Baseline, first, in
 *   the same run: the same server on a fresh database with no client for `--baseline` (90) s. CPU:
 *   user + system time of the server over the window.
 *
 *   node dist/bench/bench/sse-clients.js [--clients 1000] [--readers 500] [--events 1000] [--trades 1000]
 *     [--symbols 10] [--duration 180] [--baseline 90] [--sample-ms 1000] [--max-growth-mb 200] [--main dist/main.js]
 *
 * PASS: no reader saw a gap or a repeat, every paused client opened in the first 10 s was dropped,
 * the largest RSS sample is at most `--max-growth-mb` above the baseline's largest (the ring's 32 MB,
 * 1,000 connections, and the garbage V8 keeps between collections), the live heap does not grow once
 * the ring is full (the largest heap after a full collection in the later half of that time ≤ 1.1 ×
 * the earlier half's; not judged without a collection in each half), and SIGTERM exits 0. Exit 1
 * otherwise, 2 when the bench failed.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { BENCH_SYMBOLS, DEFAULT_MAIN, fmt, machineLine, recordResults, runBench, sleep, transcript } from "./lib.js"
import {
  cpuSeconds,
  freePort,
  launchNodeArgs,
  MB,
  procStatus,
  removeDir,
  type RoleProcess,
  slope,
  startRole,
  tempDir,
  thousands,
  toMarkdown,
  track,
  waitLive
} from "./pipeline.js"

const { values: args } = parseArgs({
  options: {
    clients: { type: "string", default: "1000" },
    readers: { type: "string", default: "500" },
    events: { type: "string", default: "1000" },
    trades: { type: "string", default: "1000" },
    symbols: { type: "string", default: "10" },
    duration: { type: "string", default: "180" },
    baseline: { type: "string", default: "90" },
    "sample-ms": { type: "string", default: "1000" },
    "max-growth-mb": { type: "string", default: "200" },
    main: { type: "string", default: DEFAULT_MAIN }
  }
})
const n = (name: keyof typeof args, min: number, max: number) => {
  const v = Number(args[name])
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`--${name} must be a whole number from ${min} to ${max}`)
  return v
}
const clients = n("clients", 2, 10_000)
const readers = n("readers", 1, clients)
const paused = clients - readers
const events = n("events", 1, 200_000)
const trades = n("trades", 0, 200_000)
const symbolCount = n("symbols", 1, BENCH_SYMBOLS.length)
const durationS = n("duration", 10, 3600)
const baselineS = n("baseline", 3, 3600)
const sampleMs = n("sample-ms", 100, 60_000)
const maxGrowthMb = n("max-growth-mb", 1, 100_000)
const mainJs = path.resolve(String(args.main))

/**
 * A reader of `/stream?symbols=<symbol>` (every kind of one symbol): SSE ids must rise, and the
 * symbol's trades must come with consecutive agg_trade_id (the sim numbers them so), across the
 * reconnects a dropped reader makes with Last-Event-ID, as a browser does. A gap or a repeat counts.
 */
const reader = (base: string, symbol: string) => {
  const state = { events: 0, bytes: 0, gaps: 0, reconnects: 0, last: -1, lastTrade: -1, stopped: false }
  let request: http.ClientRequest | undefined
  const frame = (text: string) => {
    const id = Number(text.slice(4, text.indexOf("\n")))
    if (!(id > state.last)) state.gaps++
    state.last = id
    state.events++
    const at = text.indexOf('"agg_trade_id":')
    if (at < 0) return
    const trade = Number(text.slice(at + 15, text.indexOf(",", at)))
    if (state.lastTrade >= 0 && trade !== state.lastTrade + 1) state.gaps++
    state.lastTrade = trade
  }
  const connect = () => {
    const headers: Record<string, string> = state.last >= 0 ? { "last-event-id": String(state.last) } : {}
    request = http.get(`${base}/stream?symbols=${symbol}`, { agent: false, headers }, (res) => {
      let carry = ""
      res.setEncoding("utf8")
      res.on("data", (text: string) => {
        state.bytes += Buffer.byteLength(text)
        carry += text
        const end = carry.lastIndexOf("\n\n")
        if (end < 0) return
        for (const block of carry.slice(0, end).split("\n\n")) if (block.startsWith("id: ")) frame(block)
        carry = carry.slice(end + 2)
      })
      res.on("close", again)
    })
    request.on("error", again)
  }
  let scheduled = false
  function again() {
    if (state.stopped || scheduled) return
    scheduled = true
    state.reconnects++
    setTimeout(() => {
      scheduled = false
      connect()
    }, 100)
  }
  connect()
  return { state, stop: () => ((state.stopped = true), request?.destroy()) }
}

/** A client that sends GET /stream and never reads. */
const pausedSocket = (port: number) => {
  const socket = net.connect(port, "127.0.0.1")
  socket.on("error", () => {})
  socket.on("connect", () => {
    socket.write("GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    socket.pause()
  })
  return { socket, since: Date.now() }
}

/** Local ports of loopback connections to `port` in ESTABLISHED state (/proc/net/tcp). */
const establishedTo = (port: number): Set<number> => {
  const ports = new Set<number>()
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0")
  for (const line of fs.readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 4 || f[3] !== "01" || !f[2]!.endsWith(`:${hexPort}`)) continue
    ports.add(parseInt(f[1]!.split(":")[1]!, 16))
  }
  return ports
}

/** Memory of the machine's TCP buffers, bytes (/proc/net/sockstat counts pages). */
const tcpBuffers = () => Number(/^TCP:.* mem (\d+)/m.exec(fs.readFileSync("/proc/net/sockstat", "utf8"))?.[1] ?? NaN) * 4096

const mean = (xs: ReadonlyArray<number>) => (xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length)
const mb = (bytes: number) => `${fmt(bytes / MB, 1)} MB`

/** A --trace-gc line, and a full collection: `[pid:0x…]   82560 ms: Mark-Compact 138.3 (164.8) -> 43.3 (133.5) MB, …`. */
const GC_LINE = /^\[\d+:0x[0-9a-f]+\]\s+\d+ ms: /
const FULL_GC = /^\[\d+:0x[0-9a-f]+\]\s+(\d+) ms: Mark-Compact [\d.]+ \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB/

/** The server, `node dist/main.js --role=all` with the sim on a fresh database, live. */
const startServer = async (label: string) => {
  const dir = tempDir(label)
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const spawnedAt = Date.now()
  const role: RoleProcess = track(
    startRole(
      label,
      "all",
      {
        SOURCE: "sim",
        SIM_EVENTS_PER_SECOND: String(events),
        SIM_TRADES_PER_SECOND: String(trades),
        SIM_SEED: "42",
        SYMBOLS: BENCH_SYMBOLS.slice(0, symbolCount).join(","),
        BROKER_MODE: "direct",
        STORAGE_PATH: path.join(dir, "app.db"),
        RAW_DIR: path.join(dir, "raw"),
        PORT: String(port)
      },
      // --trace-gc (as bench (G)): the heap after each full collection is the live heap, GC timing aside
      { main: mainJs, nodeArgs: [...launchNodeArgs, "--trace-gc"], quiet: (text) => GC_LINE.test(text) }
    )
  )
  /** The heap (MB) after each full collection, at seconds since bench time `since`. */
  const fullGcs = (since: number) =>
    role.other.flatMap((line) => {
      const m = FULL_GC.exec(line)
      return m === null ? [] : [{ t: (spawnedAt + Number(m[1]) - since) / 1000, afterMb: Number(m[2]) }]
    })
  const done = () => {
    role.kill()
    removeDir(dir)
  }
  try {
    await waitLive(`${base}/health/live`, role)
  } catch (e) {
    done()
    throw e
  }
  return { role, base, port, done, fullGcs, rss: () => procStatus(role.pid, "VmRSS") ?? Number.NaN }
}

/** Samples (seconds since `started`, RSS) every --sample-ms for `seconds`, calling `each` after every sample. */
const sampleFor = async (rss: () => number, seconds: number, each: (t: number) => void = () => {}) => {
  const started = Date.now()
  const samples: Array<readonly [number, number]> = []
  while (Date.now() - started < seconds * 1000) {
    await sleep(sampleMs)
    const t = (Date.now() - started) / 1000
    samples.push([t, rss()])
    each(t)
  }
  return samples
}

/** Mean and max RSS of the samples in each third of `seconds`. */
const thirds = (samples: ReadonlyArray<readonly [number, number]>, seconds: number) =>
  [0, 1, 2].map((i) => {
    const values = samples.filter(([t]) => t > (i * seconds) / 3 && t <= ((i + 1) * seconds) / 3).map(([, v]) => v)
    return { mean: mean(values), max: Math.max(...values) }
  })

const main = async (): Promise<boolean> => {
  const out = transcript()
  out.print(`bench: sse-clients, ${thousands(clients)} clients of GET /stream (${readers} reading /stream?symbols=${BENCH_SYMBOLS[0]}, ${paused} paused on the whole stream) for ${durationS} s`)
  out.print(machineLine())
  out.print(`server: --role=all SOURCE=sim, ${events} ticker events/s + ${trades} trades/s over ${symbolCount} symbols, direct mode, fresh database`)

  const idle = await startServer("sse-baseline")
  let baseline: ReadonlyArray<readonly [number, number]>
  let idleGcs: ReadonlyArray<{ readonly t: number; readonly afterMb: number }>
  try {
    const idleFrom = Date.now()
    baseline = await sampleFor(idle.rss, baselineS)
    await idle.role.stop()
    idleGcs = idle.fullGcs(idleFrom).filter((g) => g.t >= 0)
  } finally {
    idle.done()
  }
  const base3 = thirds(baseline, baselineS)
  out.print(`baseline: the same server with no client, ${baselineS} s: RSS mean ${mb(mean(baseline.map(([, v]) => v)))}, max ${mb(Math.max(...baseline.map(([, v]) => v)))}`)

  const server = await startServer("sse")
  try {
    const { base, port, role } = server
    const cpuStart = cpuSeconds(role.pid) ?? Number.NaN
    const started = Date.now()
    const rs = Array.from({ length: readers }, () => reader(base, BENCH_SYMBOLS[0]))
    const ps = new Map<number, ReturnType<typeof pausedSocket>>()
    const dropTimes: Array<number> = []
    const openPaused = () => {
      const p = pausedSocket(port)
      p.socket.on("connect", () => ps.set(p.socket.localPort!, p))
    }
    for (let i = 0; i < paused; i++) {
      openPaused()
      if (i % 50 === 49) await sleep(20) // under the listen backlog
    }
    const kernel: Array<number> = []
    let lastPrint = 0
    const samples = await sampleFor(server.rss, durationS, (t) => {
      kernel.push(tcpBuffers())
      const alive = establishedTo(port)
      for (const [localPort, p] of ps) {
        if (alive.has(localPort)) continue
        ps.delete(localPort)
        dropTimes.push(Date.now() - p.since)
        p.socket.destroy()
        openPaused()
      }
      if (t - lastPrint >= 10) {
        lastPrint = t
        const got = rs.reduce((a, r) => a + r.state.events, 0)
        out.print(`  t=${fmt(t, 0).padStart(3)} s  RSS ${mb(server.rss())}  readers got ${thousands(got)} events  paused connected ${ps.size}, dropped so far ${dropTimes.length}`)
      }
    })
    const wall = (Date.now() - started) / 1000
    const cpu = ((cpuSeconds(role.pid) ?? Number.NaN) - cpuStart) / wall
    const hwm = procStatus(role.pid, "VmHWM") ?? Number.NaN
    for (const r of rs) r.stop()
    for (const p of ps.values()) p.socket.destroy()
    const stop = await role.stop()

    const values = samples.map(([, v]) => v)
    const with3 = thirds(samples, durationS)
    // the live heap once the ring is full: after each full collection from then on
    const ringFullS = 100_000 / (events + trades) + 5
    const gcs = server.fullGcs(started).filter((g) => g.t >= ringFullS && g.t <= wall)
    const half = gcs.filter((g) => g.t < (ringFullS + wall) / 2)
    const later = gcs.filter((g) => g.t >= (ringFullS + wall) / 2)
    const peak = (xs: ReadonlyArray<{ readonly afterMb: number }>) => Math.max(...xs.map((g) => g.afterMb))
    const gaps = rs.reduce((a, r) => a + r.state.gaps, 0)
    const readerReconnects = rs.reduce((a, r) => a + r.state.reconnects, 0)
    const perReader = rs.map((r) => r.state.events / wall)
    const bytes = rs.reduce((a, r) => a + r.state.bytes, 0)
    // paused clients open since the start and never dropped: the drop rule did not reach them
    const neverDropped = [...ps.values()].filter((p) => p.since < started + 10_000).length
    const ring = Math.min(100_000, (events + trades) * wall)
    const third = (x: { mean: number; max: number }) => `${mb(x.mean)} / ${mb(x.max)}`
    out.print("")
    out.print(`| RSS, mean / max | first third | second third | last third |`)
    out.print(`|---|---|---|---|`)
    out.print(`| no client (baseline run, ${baselineS} s) | ${base3.map(third).join(" | ")} |`)
    out.print(`| ${thousands(clients)} clients (${durationS} s) | ${with3.map(third).join(" | ")} |`)
    out.print("")
    out.print(`| figure | value |`)
    out.print(`|---|---|`)
    out.print(`| RSS with clients: max / VmHWM | ${mb(Math.max(...values))} / ${mb(hwm)} |`)
    out.print(`| RSS trend with clients, last third | ${fmt(slope(samples.filter(([t]) => t > (2 * durationS) / 3).map(([t, v]) => [t, v / MB] as const)) * 60, 1)} MB/min |`)
    out.print(`| V8 heap after each full collection, no client (MB) | ${idleGcs.map((g) => `${fmt(g.afterMb, 0)} at ${fmt(g.t, 0)} s`).join(", ") || "none"} |`)
    out.print(`| V8 heap after each full collection, ${thousands(clients)} clients (MB) | ${server.fullGcs(started).filter((g) => g.t >= 0 && g.t <= wall).map((g) => `${fmt(g.afterMb, 0)} at ${fmt(g.t, 0)} s`).join(", ") || "none"} |`)
    out.print(`| the machine's TCP buffers (kernel, all sockets): mean, max | ${mb(mean(kernel))}, ${mb(Math.max(...kernel))} |`)
    out.print(`| replay ring at the end (expected; ≤ 100,000 events, 32 MB) | ~${thousands(ring)} events |`)
    out.print(`| server CPU over the window | ${fmt(cpu * 100, 0)} % of one core |`)
    out.print(`| readers: events/s each (mean, min) | ${fmt(mean(perReader), 0)}, ${fmt(Math.min(...perReader), 0)} |`)
    out.print(`| readers: MB/s in all, gaps or repeats, reconnects | ${fmt(bytes / MB / wall, 1)}, ${gaps}, ${readerReconnects} |`)
    out.print(`| paused clients: dropped, time to drop (median, max) | ${thousands(dropTimes.length)}, ${fmt(median(dropTimes) / 1000, 1)} s, ${fmt(Math.max(0, ...dropTimes) / 1000, 1)} s |`)
    out.print(`| paused clients of the first 10 s never dropped | ${neverDropped} of ${paused} |`)
    out.print(`| stop: exit code, time | ${stop.code ?? stop.signal}, ${stop.ms} ms |`)
    const everyDropped = neverDropped === 0
    const within = Math.max(...values) <= Math.max(...baseline.map(([, v]) => v)) + maxGrowthMb * MB
    // judged when each half of the time after the ring filled saw a full collection
    const judged = half.length > 0 && later.length > 0
    const flat = !judged || peak(later) <= 1.1 * peak(half)
    const pass = gaps === 0 && everyDropped && within && flat && stop.code === 0
    out.print("")
    out.print(
      `${pass ? "PASS" : "FAIL"}: gaps ${gaps} (goal 0); paused clients never dropped ${neverDropped} (goal 0); ` +
        `max RSS ${mb(Math.max(...values))} ≤ the baseline's max + ${maxGrowthMb} MB: ${within ? "yes" : "no"}; ` +
        (judged
          ? `heap after full collections, later half ${fmt(peak(later), 0)} MB ≤ 1.1 × earlier half ${fmt(peak(half), 0)} MB: ${flat ? "yes" : "no"}; `
          : `too few full collections after the ring filled to judge the live heap's trend; `) +
        `exit ${stop.code ?? stop.signal}`
    )
    out.print(machineLine())
    recordResults("sse-clients", toMarkdown(out.lines))
    return pass
  } finally {
    server.done()
  }
}

const median = (xs: ReadonlyArray<number>) => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

runBench("sse-clients", main)

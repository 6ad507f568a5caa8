/**
 * The pure-Node load generator of bench (B), used when wrk is not installed; runs in its own process
 * so it shares no event loop with the servers. `connections` keep-alive connections each send GETs
 * back to back (read each answer whole, then send the next) for `warmup` + `duration` seconds; only
 * the `duration` part counts. Uses undici's Pool when node_modules has undici, else node:http with a
 * keep-alive Agent. Prints one JSON line: { client, requests, seconds, rps, errors, non2xx, bytes, latency }.
 * `--vary` makes every request's URL distinct: `symbol` goes round the `--symbols` list and `&n=<count>`
 * is appended, so no answer cache can answer it. `--header name:value` (repeatable) adds headers.
 *
 *   node dist/bench/bench/load.js --url http://127.0.0.1:8000/trades/latest?symbol=BTCUSDT --connections 32 --duration 10 --warmup 2
 */
import * as http from "node:http"
import { parseArgs } from "node:util"

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    connections: { type: "string", default: "32" },
    duration: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    client: { type: "string", default: "auto" },
    vary: { type: "boolean", default: false },
    symbols: { type: "string", default: "" },
    header: { type: "string", multiple: true, default: [] }
  }
})
if (args.url === undefined) throw new Error("--url is required")
const url = new URL(args.url)
const connections = Number(args.connections)

type Get = () => Promise<{ status: number; bytes: number }>

const headers = Object.fromEntries(args.header.map((h) => [h.slice(0, h.indexOf(":")).trim(), h.slice(h.indexOf(":") + 1).trim()]))
const symbols = args.symbols.split(",").filter((s) => s !== "")
let sent = 0
/** The path of the next request: the URL's, or with --vary a distinct one. */
const nextPath = () => {
  if (!args.vary) return url.pathname + url.search
  const varied = new URL(url)
  sent++
  if (symbols.length > 0) varied.searchParams.set("symbol", symbols[sent % symbols.length]!)
  varied.searchParams.set("n", String(sent))
  return varied.pathname + varied.search
}

/** undici (a dependency of @effect/platform-node), loaded by name so the type check does not depend on it. */
const undiciGet = async (): Promise<Get | undefined> => {
  try {
    const name = "undici"
    const undici = (await import(name)) as {
      Pool: new (origin: string, options: object) => {
        request: (o: object) => Promise<{ statusCode: number; body: AsyncIterable<Buffer> }>
      }
    }
    const pool = new undici.Pool(url.origin, { connections, pipelining: 1 })
    return async () => {
      const res = await pool.request({ path: nextPath(), method: "GET", headers })
      let bytes = 0
      for await (const chunk of res.body) bytes += chunk.length
      return { status: res.statusCode, bytes }
    }
  } catch {
    return undefined
  }
}

const nodeHttpGet = (): Get => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections })
  return () =>
    new Promise((resolve, reject) => {
      const req = http.get(new URL(nextPath(), url), { agent, headers }, (res) => {
        let bytes = 0
        res.on("data", (chunk: Buffer) => (bytes += chunk.length))
        res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes }))
        res.on("error", reject)
      })
      req.on("error", reject)
    })
}

const main = async () => {
  const undici = args.client === "node:http" ? undefined : await undiciGet()
  const get = undici ?? nodeHttpGet()
  const client = undici === undefined ? "node:http Agent(keepAlive)" : "undici Pool"
  const now = () => Number(process.hrtime.bigint()) / 1e6
  const start = now()
  const measureFrom = start + Number(args.warmup) * 1000
  const end = measureFrom + Number(args.duration) * 1000
  const latencies: Array<number> = []
  let errors = 0
  let non2xx = 0
  let bytes = 0
  const worker = async () => {
    while (now() < end) {
      const t = now()
      try {
        const res = await get()
        const done = now()
        if (t >= measureFrom && done <= end) {
          latencies.push(done - t)
          bytes += res.bytes
          if (res.status < 200 || res.status >= 400) non2xx++
        }
      } catch {
        errors++
      }
    }
  }
  await Promise.all(Array.from({ length: connections }, worker))
  latencies.sort((a, b) => a - b)
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.max(0, Math.ceil((p / 100) * latencies.length) - 1))] ?? 0
  const seconds = Number(args.duration)
  process.stdout.write(
    `${JSON.stringify({
      client,
      requests: latencies.length,
      seconds,
      rps: latencies.length / seconds,
      errors,
      non2xx,
      bytes,
      latency: { p50: pct(50), p90: pct(90), p99: pct(99), max: latencies[latencies.length - 1] ?? 0 }
    })}\n`
  )
  process.exit(0)
}

void main()

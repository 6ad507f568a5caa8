/**
 * The baselines of bench (B), a bare `node:http` server in one of two modes:
 *
 * - `--body <file>`: every request answered with the same bytes (body and content-type) from memory,
 *   the baseline of a cached answer.
 * - `--db <file>`: GET /trades/latest?symbol=&limit= and GET /trades/range?symbol=&start=&end=&limit=
 *   answered from the database with the same SQL as the API's reads, through better-sqlite3 (one
 *   statement prepared once each) and `JSON.stringify` of the contract events: what a hand-written
 *   server with no framework, validation or protection would do.
 *
 *   node dist/bench/bench/bare-server.js --port 8001 --body bench/.data/latest-body.bin --content-type "application/json"
 *   node dist/bench/bench/bare-server.js --port 8001 --db bench/.data/bench.db
 */
import Database from "better-sqlite3"
import * as fs from "node:fs"
import * as http from "node:http"
import { parseArgs } from "node:util"

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "8001" },
    host: { type: "string", default: "127.0.0.1" },
    body: { type: "string" },
    db: { type: "string" },
    "content-type": { type: "string", default: "application/json" }
  }
})

interface Row {
  readonly symbol: string
  readonly timestamp_utc: string
  readonly last_price: string
  readonly price_change_percent: string
  readonly volume: string
  readonly source: string
  readonly event_time: string | null
}

const COLUMNS = "symbol, timestamp_utc, last_price, price_change_percent, volume, source, event_time"

const fromDatabase = (file: string): http.RequestListener => {
  const db = new Database(file, { fileMustExist: true })
  const latest = db.prepare(`SELECT ${COLUMNS} FROM ticks WHERE symbol = ? ORDER BY ts_us DESC LIMIT ?`)
  const range = db.prepare(`SELECT ${COLUMNS} FROM ticks WHERE symbol = ? AND ts_us >= ? AND ts_us < ? ORDER BY ts_us ASC LIMIT ?`)
  const event = (r: Row) => {
    const e = {
      timestamp_utc: r.timestamp_utc,
      symbol: r.symbol,
      lastPrice: r.last_price,
      priceChangePercent: r.price_change_percent,
      volume: r.volume,
      source: r.source
    }
    return r.event_time === null ? e : { ...e, event_time: r.event_time }
  }
  const micros = (iso: string | null) => Date.parse(iso ?? "") * 1000
  return (req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost")
    const q = url.searchParams
    const limit = Number(q.get("limit") ?? "200")
    let rows: ReadonlyArray<Row> | undefined
    if (url.pathname === "/trades/latest") rows = latest.all(q.get("symbol"), limit) as unknown as Array<Row>
    else if (url.pathname === "/trades/range") rows = range.all(q.get("symbol"), micros(q.get("start")), micros(q.get("end")), limit) as unknown as Array<Row>
    if (rows === undefined) {
      res.writeHead(404).end()
      return
    }
    const body = JSON.stringify(rows.map(event))
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
    res.end(body)
  }
}

const fromMemory = (file: string): http.RequestListener => {
  const body = fs.readFileSync(file)
  const headers = { "content-type": args["content-type"], "content-length": String(body.length) }
  return (_req, res) => {
    res.writeHead(200, headers)
    res.end(body)
  }
}

if ((args.body === undefined) === (args.db === undefined)) throw new Error("one of --body <file> or --db <file> is required")
const server = http.createServer(args.db !== undefined ? fromDatabase(args.db) : fromMemory(args.body!))
server.listen(Number(args.port), args.host, () =>
  process.stdout.write(`bare node:http server on ${args.host}:${args.port}, ${args.db !== undefined ? `SQL on ${args.db}` : `bytes of ${args.body}`}\n`)
)
process.on("SIGTERM", () => server.close(() => process.exit(0)))

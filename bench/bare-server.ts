/**
 * The baseline of bench (B): a bare `node:http` server answering every request with the same bytes
 * (body and content-type) the API returned for GET /trades/latest?symbol=BTCUSDT, from memory.
 *
 *   node dist/bench/bench/bare-server.js --port 8001 --body bench/.data/latest-body.bin --content-type "application/json"
 */
import * as fs from "node:fs"
import * as http from "node:http"
import { parseArgs } from "node:util"

const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "8001" },
    host: { type: "string", default: "127.0.0.1" },
    body: { type: "string" },
    "content-type": { type: "string", default: "application/json" }
  }
})
if (args.body === undefined) throw new Error("--body <file> is required")
const body = fs.readFileSync(args.body)
const headers = { "content-type": args["content-type"], "content-length": String(body.length) }

const server = http.createServer((_req, res) => {
  res.writeHead(200, headers)
  res.end(body)
})
server.listen(Number(args.port), args.host, () => process.stdout.write(`bare node:http server on ${args.host}:${args.port}, ${body.length} bytes\n`))
process.on("SIGTERM", () => server.close(() => process.exit(0)))

import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type FakeBinance, startFakeBinance } from "./support/fakeBinance.js"
import { freePort, getJson, mainJs, runMain, waitFor } from "./support/process.js"

const CONTRACT_KEYS = ["timestamp_utc", "symbol", "lastPrice", "priceChangePercent", "volume", "source"]

let fake: FakeBinance
let dir: string
beforeAll(async () => {
  if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does it first)")
  fake = await startFakeBinance()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "e2e-"))
})
afterAll(async () => {
  await fake.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

describe("node dist/main.js --role=all (direct mode, one process)", () => {
  it("captures tickers from Binance into SQLite, JSONL and the API, and exits cleanly on SIGTERM", async () => {
    const port = await freePort()
    const rawDir = path.join(dir, "raw")
    const main = runMain(["--role=all"], {
      BINANCE_BASE_URL: fake.url,
      SYMBOLS: "BTCUSDT,ETHUSDT,SOLUSDT",
      POLL_INTERVAL_SECONDS: "0.3",
      PORT: String(port),
      HOST: "127.0.0.1",
      STORAGE_PATH: path.join(dir, "db", "app.db"),
      RAW_DIR: rawDir
    })
    try {
      const base = `http://127.0.0.1:${port}`
      const latest = await waitFor(
        async () => {
          const res = await getJson(`${base}/trades/latest?symbol=ETHUSDT&limit=5`)
          return res && res.status === 200 && res.body.length >= 2 ? res.body : undefined
        },
        20_000,
        "events through the API"
      )
      for (const event of latest) {
        expect(Object.keys(event).slice(0, 6)).toEqual(CONTRACT_KEYS)
        expect(event.symbol).toBe("ETHUSDT")
        expect(typeof event.lastPrice).toBe("string")
        expect(event.source).toBe("binance_api_v3_ticker_24hr")
      }
      expect(latest[0].timestamp_utc > latest[1].timestamp_utc).toBe(true)

      const symbols = (await getJson(`${base}/symbols`))!.body
      expect(symbols.map((s: { symbol: string }) => s.symbol)).toEqual(["BTCUSDT", "ETHUSDT", "SOLUSDT"])

      const health = (await getJson(`${base}/health`))!
      expect(health.status).toBe(200)
      expect(health.body.components.producer.state).toBe("up")

      const range = (await getJson(
        `${base}/trades/range?symbol=BTCUSDT&start=2000-01-01&end=2100-01-01`
      ))!.body
      expect(range.length).toBeGreaterThanOrEqual(2)
      expect(range[0].timestamp_utc < range[1].timestamp_utc).toBe(true)

      // Every poll is one request for all symbols.
      const tickerCalls = fake.requests.filter((r) => r.path === "/api/v3/ticker/24hr")
      expect(JSON.parse(tickerCalls[0]!.query.get("symbols")!)).toEqual(["BTCUSDT", "ETHUSDT", "SOLUSDT"])

      const files = fs.readdirSync(rawDir).filter((f) => f.endsWith(".jsonl")) // trades have a directory of their own
      expect(files.length).toBeGreaterThanOrEqual(1)
      expect(files[0]).toMatch(/^\d{4}-\d{2}-\d{2}\.jsonl$/)
      const lines = fs.readFileSync(path.join(rawDir, files[0]!), "utf8").trimEnd().split("\n")
      const first = JSON.parse(lines[0]!)
      expect(Object.keys(first).slice(0, 6)).toEqual(CONTRACT_KEYS)
    } finally {
      main.child.kill("SIGTERM")
    }
    const started = Date.now()
    const code = await main.exited
    expect(code, main.output()).toBe(0)
    expect(Date.now() - started).toBeLessThan(5_000)

    // What the API showed is what is stored: every JSONL line is one SQLite row and vice versa.
    const rows = fs
      .readdirSync(rawDir)
      .filter((f) => f.endsWith(".jsonl"))
      .flatMap((f) => fs.readFileSync(path.join(rawDir, f), "utf8").trimEnd().split("\n"))
      .map((l) => JSON.parse(l))
    const keys = new Set(rows.map((r) => `${r.symbol}|${r.timestamp_utc}`))
    expect(keys.size).toBe(rows.length)
  }, 40_000)

  it("with Binance unreachable keeps serving, reports it on /health with 503, and logs one line per failed cycle", async () => {
    const port = await freePort()
    const deadPort = await freePort()
    const main = runMain(["--role=all"], {
      BINANCE_BASE_URL: `http://127.0.0.1:${deadPort}`,
      POLL_INTERVAL_SECONDS: "1",
      PORT: String(port),
      HOST: "127.0.0.1",
      STORAGE_PATH: path.join(dir, "down", "app.db"),
      RAW_DIR: path.join(dir, "down", "raw")
    })
    try {
      const health = await waitFor(
        async () => {
          const res = await getJson(`http://127.0.0.1:${port}/health`)
          return res?.status === 503 ? res.body : undefined
        },
        20_000,
        "/health to report the producer down"
      )
      expect(health.components.producer.state).toBe("down")
      expect(health.components.producer.last_error).toContain("unreachable")
      await waitFor(() => (main.output().includes("poll failed") ? true : undefined), 30_000, "a failed cycle's log line")
      expect(main.child.exitCode).toBeNull()
      const failedLines = main.output().split("\n").filter((l) => l.includes("poll failed"))
      expect(failedLines.length).toBeGreaterThanOrEqual(1)
      expect(JSON.parse(failedLines[0]!).message).toMatch(/poll failed: Binance is unreachable \(network: /)
    } finally {
      main.child.kill("SIGTERM")
    }
    expect(await main.exited).toBe(0)
  }, 60_000)

  it("exits non-zero with one sentence for an impossible role, a busy port and a bad setting", async () => {
    const producer = runMain(["--role=producer"], { BROKER_MODE: "direct" })
    expect(await producer.exited).toBe(1)
    expect(producer.output().trim()).toBe(
      "--role=producer needs BROKER_MODE=kafka: in direct mode the broker is an in-process queue, so run --role=all, or set BROKER_MODE=kafka and KAFKA_BOOTSTRAP_SERVERS."
    )
    const taken = net.createServer()
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve))
    const port = (taken.address() as net.AddressInfo).port
    const busy = runMain(["--role=api"], { PORT: String(port), HOST: "127.0.0.1", STORAGE_PATH: path.join(dir, "busy", "app.db") })
    expect(await busy.exited).toBe(1)
    taken.close()
    expect(busy.output().trim().split("\n").at(-1)).toBe(
      `cannot listen on 127.0.0.1:${port} (PORT): the port is already in use; stop the other process or set PORT to another port.`
    )
    const bad = runMain(["--role=all"], { POLL_INTERVAL_SECONDS: "soon" })
    expect(await bad.exited).toBe(1)
    expect(bad.output().trim()).toBe(
      'Configuration error: POLL_INTERVAL_SECONDS="soon" is not valid: expected a positive number of seconds such as 60.'
    )
  }, 30_000)
})

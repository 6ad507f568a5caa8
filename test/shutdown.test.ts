import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type FakeBinance, startFakeBinance } from "./support/fakeBinance.js"
import { mountTmpfs, type Mounted } from "./support/mounts.js"
import { freePort, getJson, mainJs, runMain, type RunningMain, startRoleAll, waitFor } from "./support/process.js"
import { tickCount } from "./support/sqlite.js"

/** What an orchestrator grants between SIGTERM and SIGKILL, and what the platform promises. */
const EXIT_WITHIN_MS = 5000

let fake: FakeBinance
let dir: string
beforeAll(async () => {
  if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does it first)")
  fake = await startFakeBinance()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "shutdown-"))
})
afterAll(async () => {
  await fake.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

// The ticker pipeline's shutdown; the stream's own is in test/stream.test.ts.
const start = (name: string, env: Record<string, string> = {}) => startRoleAll(fake.url, path.join(dir, name), { SOURCE: "poll", ...env })

/** Sends SIGTERM and resolves with the exit code and how long the process took to end. */
const terminate = async (main: RunningMain) => {
  const sent = Date.now()
  main.child.kill("SIGTERM")
  const code = await Promise.race([main.exited, new Promise<string>((r) => setTimeout(() => r("still running"), 15_000))])
  const took = Date.now() - sent
  if (code === "still running") main.child.kill("SIGKILL")
  return { code, took }
}

const connect = (port: number) =>
  new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => resolve(socket))
    socket.on("error", reject)
  })

describe("SIGTERM stops the process within 5 s whatever the clients and sinks do", () => {
  it("with a client whose request headers never finish", async () => {
    const { main, port } = await start("slow-headers")
    const socket = await connect(port)
    socket.on("error", () => {})
    socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    const { code, took } = await terminate(main)
    socket.destroy()
    expect(code, main.output()).toBe(0)
    expect(took).toBeLessThan(EXIT_WITHIN_MS)
  })

  it("with an idle keep-alive connection and 200 requests in flight", async () => {
    const { main, base, port } = await start("in-flight")
    await waitFor(async () => ((await getJson(`${base}/symbols`))?.body.length === 2 ? true : undefined), 20_000, "stored events")
    // one idle keep-alive connection, left open by its client
    const idle = await connect(port)
    idle.on("error", () => {})
    idle.write("GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
    await new Promise((r) => idle.once("data", r))
    let sentAt = Number.POSITIVE_INFINITY
    let completed = 0
    const inFlight = Array.from({ length: 200 }, (_, i) =>
      fetch(`${base}/bi/daily_ohlc.csv?symbol=${i % 2 === 0 ? "BTCUSDT" : "ETHUSDT"}&days=3650`).then(
        async (res) => {
          const body = await res.text() // a body cut short rejects here
          completed++
          return { status: res.status, body, after: Date.now() > sentAt }
        },
        () => "cut" as const
      )
    )
    // SIGTERM while the server is working through them
    await waitFor(() => (completed >= 10 ? true : undefined), 20_000, "the first answers")
    sentAt = Date.now()
    const { code, took } = await terminate(main)
    const answered = await Promise.all(inFlight)
    idle.destroy()
    expect(code, main.output()).toBe(0)
    expect(took).toBeLessThan(EXIT_WITHIN_MS)
    const whole = answered.filter((a) => a !== "cut")
    // what got an answer got a whole one, including requests still being served after SIGTERM
    for (const a of whole) {
      expect(a.status).toBe(200)
      expect(a.body.split("\r\n")[0]).toBe("date,symbol,open,high,low,close,volume")
    }
    expect(whole.filter((a) => a.after).length, "no request was served after SIGTERM").toBeGreaterThan(0)
  })

  it("stores the events of a poll that Binance answers after SIGTERM", async () => {
    const tickerCalls = () => fake.requests.filter((r) => r.path === "/api/v3/ticker/24hr").length
    const calls = tickerCalls()
    // The first poll is in flight when SIGTERM comes; Binance answers it 300 ms later.
    fake.enqueueFaults({ kind: "slow", delayMs: 300 })
    const port = await freePort()
    const main = runMain(["--role=all"], {
      BINANCE_BASE_URL: fake.url,
      SOURCE: "poll",
      SYMBOLS: "BTCUSDT,ETHUSDT",
      POLL_INTERVAL_SECONDS: "3600",
      PORT: String(port),
      HOST: "127.0.0.1",
      STORAGE_PATH: path.join(dir, "late-answer", "app.db"),
      RAW_DIR: path.join(dir, "late-answer", "raw")
    })
    await waitFor(() => (tickerCalls() > calls ? true : undefined), 20_000, "the poll in flight")
    const { code, took } = await terminate(main)
    expect(code, main.output()).toBe(0)
    expect(took).toBeLessThan(EXIT_WITHIN_MS)
    expect(tickCount(path.join(dir, "late-answer", "app.db"))).toBe(2)
    const raw = fs.readdirSync(path.join(dir, "late-answer", "raw")).filter((f) => f.endsWith(".jsonl"))
    const lines = raw.flatMap((f) => fs.readFileSync(path.join(dir, "late-answer", "raw", f), "utf8").split("\n").filter((l) => l.length > 0))
    expect(lines).toHaveLength(2)
  })

  describe("with the raw log's disk full", () => {
    let mount: Mounted
    beforeAll(() => {
      mount = mountTmpfs("64k", { dir: path.join(dir, "full") })
    })
    afterAll(() => mount?.unmount())

    it("exits in time and says in one line what could not be stored", async () => {
      fs.writeFileSync(path.join(mount.dir, "filler"), Buffer.alloc(64 * 1024 - 4096)) // what the filesystem takes
      const { main, base } = await start("full-disk", { RAW_DIR: path.join(mount.dir, "raw"), POLL_INTERVAL_SECONDS: "0.2" })
      await waitFor(
        async () => ((await getJson(`${base}/health`))?.body.components.store.state === "down" ? true : undefined),
        20_000,
        "the store reported down"
      )
      const { code, took } = await terminate(main)
      expect(code, main.output()).toBe(0)
      expect(took).toBeLessThan(EXIT_WITHIN_MS)
      const lines = main
        .output()
        .split("\n")
        .filter((l) => l.includes("could not be stored in time"))
      expect(lines, main.output()).toHaveLength(1)
      expect(lines[0]).toMatch(/shutdown: \d+ event\(s\) could not be stored in time \(jsonl sink could not store the batch: .*no space left on device.*\); the in-process queue ends with the process, so they are lost/i)
    })
  })
})

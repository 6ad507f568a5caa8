import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { verifyCsv } from "../src/bi/verify.js"
import { type FakeBinance, startFakeBinance } from "./support/fakeBinance.js"
import { freePort, getJson, mainJs, runMain, waitFor } from "./support/process.js"

const ohlc = "date,symbol,open,high,low,close,volume\r\n"

describe("verifyCsv", () => {
  it("accepts a document that meets its contract", () => {
    expect(verifyCsv("daily_ohlc", `${ohlc}2026-03-03,BTCUSDT,110,112,98,99,30.25\r\n2026-03-04,BTCUSDT,99,106,98.5,105,40\r\n`)).toBeUndefined()
    expect(verifyCsv("daily_features", "date,symbol,close,log_return,volatility_7d,volatility_30d\r\n2026-03-02,BTCUSDT,110,0.09,,\r\n")).toBeUndefined()
    expect(verifyCsv("latest_prices", "symbol,last_price,price_change_percent,volume,timestamp_utc\r\nBTCUSDT,1.5,-1.2,3,2026-03-05T12:00:00.000000+00:00\r\n")).toBeUndefined()
  })

  it("names the first violation with its line", () => {
    expect(verifyCsv("daily_ohlc", "date,symbol,open,high,low,close\r\n")).toMatch(/^line 1: expected the header/)
    expect(verifyCsv("daily_ohlc", `${ohlc}2026-03-03,BTCUSDT,110,105,98,99,30\r\n`)).toBe("line 2: high 105 is below max(open, close) 110")
    expect(verifyCsv("daily_ohlc", `${ohlc}2026-03-03,BTCUSDT,110,112,100,99,30\r\n`)).toBe("line 2: low 100 is above min(open, close) 99")
    expect(verifyCsv("daily_ohlc", `${ohlc}2026-03-04,BTCUSDT,1,1,1,1,1\r\n2026-03-04,BTCUSDT,1,1,1,1,1\r\n`)).toBe(
      "line 3: dates must ascend without repeats, but 2026-03-04 follows 2026-03-04 for BTCUSDT"
    )
    expect(verifyCsv("daily_volume", "date,symbol,volume,quote_volume\r\n2026-02-30,BTCUSDT,1,1\r\n")).toContain("column date")
    expect(verifyCsv("daily_volume", "date,symbol,volume,quote_volume\r\n2026-02-03,BTCUSDT,1.0e3,1\r\n")).toContain("column volume")
    expect(verifyCsv("daily_volume", "date,symbol,volume,quote_volume\r\n2026-02-03,BTCUSDT,1\r\n")).toBe("line 2: expected 4 fields, got 3")
  })
})

describe("backfill, bi-build and verify-bi from the command line", () => {
  let fake: FakeBinance
  let dir: string
  beforeAll(async () => {
    if (!fs.existsSync(mainJs)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does it first)")
    fake = await startFakeBinance()
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "bi-cli-"))
  })
  afterAll(async () => {
    await fake.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("fills the history, writes the CSV files, verifies them and a running server, and catches a broken file", async () => {
    const env = { BINANCE_BASE_URL: fake.url, STORAGE_PATH: path.join(dir, "app.db"), SYMBOLS: "BTCUSDT,ETHUSDT" }
    const backfill = runMain(["backfill", "--days", "40", "--interval", "1d"], env)
    expect(await backfill.exited, backfill.output()).toBe(0)
    expect(backfill.output()).toContain("backfill done: 82 candle(s) in 2 request(s)")

    const biDir = path.join(dir, "bi")
    const build = runMain(["bi-build", "--dir", biDir, "--days", "30"], env)
    expect(await build.exited, build.output()).toBe(0)
    expect(fs.readdirSync(biDir).sort()).toEqual([
      "daily_features_BTCUSDT.csv",
      "daily_features_ETHUSDT.csv",
      "daily_ohlc_BTCUSDT.csv",
      "daily_ohlc_ETHUSDT.csv",
      "daily_volume_BTCUSDT.csv",
      "daily_volume_ETHUSDT.csv",
      "latest_prices.csv"
    ])
    const features = fs.readFileSync(path.join(biDir, "daily_features_BTCUSDT.csv"), "utf8").trimEnd().split("\r\n")
    expect(features.length).toBe(31)
    // with 40 days stored, the 30-day volatility exists on every one of the last 30 days but the first few
    expect(features.at(-1)!.split(",")[5]).toMatch(/^\d+\.\d+$/)

    const verify = runMain(["verify-bi", "--dir", biDir, "--days", "30"], env)
    expect(await verify.exited, verify.output()).toBe(0)
    expect(verify.output()).toContain("7 CSV document(s) match their contracts")

    const port = await freePort()
    const api = runMain(["--role=api"], { ...env, PORT: String(port), HOST: "127.0.0.1" })
    try {
      await waitFor(async () => ((await getJson(`http://127.0.0.1:${port}/health`))?.status === 200 ? true : undefined), 20_000, "the API")
      const remote = runMain(["verify-bi", "--url", `http://127.0.0.1:${port}`], env)
      expect(await remote.exited, remote.output()).toBe(0)
    } finally {
      api.child.kill("SIGTERM")
      await api.exited
    }

    const file = path.join(biDir, "daily_ohlc_ETHUSDT.csv")
    const lines = fs.readFileSync(file, "utf8").split("\r\n")
    const cells = lines[2]!.split(",")
    cells[3] = "0.00000001" // high below open and close
    lines[2] = cells.join(",")
    fs.writeFileSync(file, lines.join("\r\n"))
    const broken = runMain(["verify-bi", "--dir", biDir, "--days", "30"], env)
    expect(await broken.exited).toBe(1)
    expect(broken.output().trim()).toBe(`verify-bi: ${file} line 3: high 0.00000001 is below max(open, close) ${[cells[2], cells[5]].sort((a, b) => Number(b) - Number(a))[0]}`)
  }, 90_000)
})

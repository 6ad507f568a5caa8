import { HttpClient, HttpClientRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { gunzipSync } from "node:zlib"
import { type Browser, chromium, type Page } from "playwright-core"
import { afterAll, assert, beforeAll, describe, it } from "vitest"
import { httpServer } from "../src/api/Http.js"
import { DASHBOARD_PATHS } from "../src/api/security/settings.js"
import { Health } from "../src/status/Health.js"
import { sqliteStore } from "../src/store/Store.js"
import { DASHBOARD_PAGE, DASHBOARD_SCRIPT, DASHBOARD_STYLES } from "../src/web/Dashboard.js"
import { SseParser } from "../src/web/page/sse.js"
import { mainJs, repoRoot, startRoleAll } from "./support/process.js"

/**
 * The dashboard at / (src/web/Dashboard.ts, src/web/page/): the built binary on a simulated market,
 * driven in Debian's headless Chromium through playwright-core (no browser is downloaded), with API
 * keys off and on; its HTTP answers (CSP, caching, gzip); its SSE parser; its type-check against the DOM.
 */

/**
 * The browser's globals as the functions this file hands to the page use them (they run in Chromium;
 * this file is type-checked with Node's globals, without the DOM).
 */
interface PageElement {
  readonly dataset: Record<string, string | undefined>
  readonly textContent: string | null
}
declare const document: {
  getElementById(id: string): PageElement | null
  querySelector(selector: string): PageElement | null
}
declare const window: Record<string, unknown>
declare const localStorage: { getItem(key: string): string | null; setItem(key: string, value: string): void }

const CHROMIUM = "/usr/bin/chromium"
const KEY = "dashboard-key-0123456789abcdef"
const SCREENSHOT = path.join(repoRoot, "test-results", "dashboard.png")

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-test-"))

// --- the SSE parser --------------------------------------------------------------------------------

describe("the page's SSE parser", () => {
  const stream = [
    "retry: 1500\n",
    ": heartbeat\n\n",
    "id: 7\nevent: ticker\ndata: {\"symbol\":\"BTCUSDT\"}\n\n",
    "event: trade\r\ndata: line one\r\ndata:line two\r\nid: 8\r\n\r\n",
    "data: no event name\rid\r\r",
    "event: candle\ndata: {}\nid: bad\u0000id\n\n",
    "event: nothing\n\n"
  ].join("")

  const expected = [
    { event: "ticker", data: "{\"symbol\":\"BTCUSDT\"}", id: "7" },
    { event: "trade", data: "line one\nline two", id: "8" },
    { event: "message", data: "no event name", id: "" },
    { event: "candle", data: "{}", id: "" }
  ]

  it("reads events, ids, retry and comments, whatever the line ends", () => {
    const parser = new SseParser()
    assert.deepStrictEqual(parser.push(stream), expected)
    assert.strictEqual(parser.retryMs, 1500)
  })

  it("gives the same events however the stream is cut into chunks (CRLF split included)", () => {
    for (const size of [1, 2, 3, 5, 7, 13]) {
      const parser = new SseParser()
      const events = []
      for (let at = 0; at < stream.length; at += size) events.push(...parser.push(stream.slice(at, at + size)))
      assert.deepStrictEqual(events, expected, `chunks of ${size}`)
    }
  })

  it("keeps the last event id for a reconnection (Last-Event-ID)", () => {
    const parser = new SseParser()
    parser.push("id: 41\ndata: a\n\nid: 42\ndata: b\n")
    assert.strictEqual(parser.lastEventId, "42") // seen, even before its event is complete
  })
})

describe("the page's code", () => {
  it("type-checks against the browser's DOM (src/web/page/tsconfig.json)", () => {
    const tsc = path.join(repoRoot, "node_modules", "typescript", "bin", "tsc")
    const run = spawnSync(process.execPath, [tsc, "-p", path.join(repoRoot, "src", "web", "page", "tsconfig.json"), "--noEmit"], {
      cwd: repoRoot,
      encoding: "utf8"
    })
    assert.strictEqual(run.status, 0, `${run.stdout}${run.stderr}`)
  }, 60_000)

  it("serves exactly the paths the key gate lets through", () => {
    assert.deepStrictEqual([...DASHBOARD_PATHS].sort(), [DASHBOARD_PAGE, DASHBOARD_SCRIPT, DASHBOARD_STYLES].sort())
  })
})

describe("run from source (as the other tests' servers are)", () => {
  it("builds the page on first use and serves it, its CSP and its script without a key while keys are on", async () => {
    const dbFile = path.join(dir, "source.db")
    const runtime = ManagedRuntime.make(
      httpServer(NodeHttpServer.layerTest).pipe(
        Layer.provideMerge(Health.Default),
        Layer.provideMerge(sqliteStore(dbFile)),
        Layer.provide(
          Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["SYMBOLS", "BTCUSDT"], ["STORAGE_PATH", dbFile], ["API_KEYS", KEY]])))
        )
      )
    )
    try {
      const get = (url: string) =>
        runtime.runPromise(
          Effect.gen(function* () {
            const client = yield* HttpClient.HttpClient
            const res = yield* client.execute(HttpClientRequest.get(url))
            return { status: res.status, headers: res.headers, text: yield* res.text }
          }).pipe(Effect.scoped)
        )
      const page = await get("/")
      assert.strictEqual(page.status, 200)
      assert.include(page.headers["content-security-policy"] ?? "", "script-src 'self';")
      const script = /<script defer src="([^"]+)"/.exec(page.text)![1]!
      const js = await get(script)
      assert.strictEqual(js.status, 200)
      assert.include(js.text, "tv-attr-logo")
      assert.strictEqual((await get("/symbols")).status, 401)
    } finally {
      await runtime.dispose()
    }
  }, 60_000)
})

// --- the built binary, in a browser ---------------------------------------------------------------------

interface Raw {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: Buffer
}

/** A GET with exactly `headers` (fetch would add Accept-Encoding and undo the gzip). */
const rawGet = (url: string, headers: Record<string, string> = {}) =>
  new Promise<Raw>((resolve, reject) => {
    const request = http.get(url, { headers }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on("error", reject)
    })
    request.on("error", reject)
  })

const launch = (): Promise<Browser> => {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: the dashboard's browser test drives Debian's chromium through playwright-core ` +
        "(apt-get install chromium; .ci/run installs it). No browser is downloaded."
    )
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
  })
}

/** The sim server, fresh events (SIM_START: its start), 20 ticker events and 50 trades a second over two symbols. */
const startSim = (name: string, env: Record<string, string> = {}) => {
  const data = path.join(dir, name)
  fs.mkdirSync(data, { recursive: true })
  return startRoleAll("http://127.0.0.1:9", data, {
    SOURCE: "sim",
    SIM_EVENTS_PER_SECOND: "20",
    SIM_TRADES_PER_SECOND: "50",
    LOG_LEVEL: "Warning",
    ...env
  })
}

type Server = Awaited<ReturnType<typeof startSim>>

const stop = async (server: Server | undefined) => {
  if (server === undefined) return
  server.main.child.kill("SIGTERM")
  const killer = setTimeout(() => server.main.child.kill("SIGKILL"), 10_000)
  await server.main.exited
  clearTimeout(killer)
}

interface Opened {
  readonly page: Page
  /** Console errors, page errors and CSP violations so far (those `expected` lets through left out). */
  readonly problems: () => ReadonlyArray<string>
}

/** A new page on `url`, recording what goes wrong in it; `expected` names console errors that may happen. */
const open = async (browser: Browser, url: string, expected: ReadonlyArray<RegExp> = [], setup?: (page: Page) => Promise<void>): Promise<Opened> => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } })
  const problems: Array<string> = []
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`))
  page.on("console", (m) => {
    const text = m.text()
    if (/content security policy/i.test(text)) problems.push(`CSP: ${text}`)
    else if (m.type() === "error" && !expected.some((re) => re.test(text))) problems.push(`console error: ${text}`)
  })
  if (setup !== undefined) await setup(page)
  await page.goto(url)
  return { page, problems: () => problems }
}

const chartIs = (page: Page, symbol: string, interval: string) =>
  page.waitForFunction(
    ([s, i]) => {
      const chart = document.getElementById("chart")
      return chart?.dataset["symbol"] === s && chart.dataset["interval"] === i && chart.dataset["state"] === "ready" && Number(chart.dataset["bars"]) >= 1
    },
    [symbol, interval] as const,
    { timeout: 20_000 }
  )

const text = async (page: Page, selector: string) => ((await page.locator(selector).textContent()) ?? "").trim()

const priceCell = (symbol: string) => `#prices tr[data-symbol="${symbol}"] td.price`

/** Waits until the price cell of `symbol` shows a price, then until it shows another one. */
const seePriceChange = async (page: Page, symbol: string) => {
  await page.waitForFunction((selector) => /\d/.test(document.querySelector(selector)?.textContent ?? ""), priceCell(symbol), { timeout: 20_000 })
  const first = await text(page, priceCell(symbol))
  await page.waitForFunction(([selector, was]) => (document.querySelector(selector!)?.textContent ?? "").trim() !== was, [priceCell(symbol), first] as const, {
    timeout: 20_000
  })
  return first
}

describe("the dashboard, API keys off", { timeout: 150_000 }, () => {
  let server: Server | undefined
  let browser: Browser | undefined

  beforeAll(async () => {
    if (!fs.readFileSync(mainJs, "utf8").includes("loadPageAssets = () => Promise.resolve(")) {
      throw new Error(`${mainJs} has no dashboard built in: run npm run build first`)
    }
    ;[server, browser] = await Promise.all([startSim("off"), launch()])
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await stop(server)
  })

  it("serves the page, its script and stylesheet with their CSP, ETags and caching", async () => {
    const { base } = server!
    const page = await rawGet(`${base}/`)
    assert.strictEqual(page.status, 200)
    assert.strictEqual(page.headers["content-type"], "text/html; charset=utf-8")
    assert.strictEqual(page.headers["cache-control"], "no-cache")
    const csp = String(page.headers["content-security-policy"])
    assert.include(csp, "default-src 'none'")
    assert.include(csp, "script-src 'self';")
    assert.match(csp, /style-src 'self' 'sha256-[A-Za-z0-9+/=]+';/)
    assert.include(csp, "connect-src 'self'")
    assert.include(csp, "frame-ancestors 'none'")
    assert.notInclude(csp, "unsafe")
    assert.strictEqual(page.headers["x-frame-options"], "DENY")
    const html = page.body.toString("utf8")
    assert.notMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, "no inline script")
    assert.notMatch(html, /\sstyle=/, "no inline style")
    assert.include(html, 'href="https://www.tradingview.com/"', "the TradingView attribution")
    // the page is revalidated: a matching If-None-Match costs nothing
    const again = await rawGet(`${base}/`, { "if-none-match": String(page.headers.etag) })
    assert.strictEqual(again.status, 304)
    assert.strictEqual(again.body.length, 0)
    // a browser updates the page's stored headers from the 304: it must carry the page's CSP too
    assert.strictEqual(again.headers["content-security-policy"], csp)

    const script = /<script defer src="([^"]+)"/.exec(html)?.[1]
    const styles = /<link rel="stylesheet" href="([^"]+)"/.exec(html)?.[1]
    assert.match(script ?? "", /^\/assets\/dashboard\.js\?v=[\w-]+$/)
    assert.match(styles ?? "", /^\/assets\/dashboard\.css\?v=[\w-]+$/)
    const js = await rawGet(`${base}${script}`)
    assert.strictEqual(js.status, 200)
    assert.strictEqual(js.headers["content-type"], "text/javascript; charset=utf-8")
    assert.strictEqual(js.headers["cache-control"], "public, max-age=31536000, immutable")
    assert.include(js.body.toString("utf8"), "TradingView", "lightweight-charts' licence header stays with its code")
    const unversioned = await rawGet(`${base}/assets/dashboard.js`)
    assert.strictEqual(unversioned.headers["cache-control"], "no-cache")
    assert.strictEqual((await rawGet(`${base}/assets/dashboard.js`, { "if-none-match": String(js.headers.etag) })).status, 304)
    const gzipped = await rawGet(`${base}${script}`, { "accept-encoding": "gzip, deflate" })
    assert.strictEqual(gzipped.headers["content-encoding"], "gzip")
    assert.notStrictEqual(gzipped.headers.etag, js.headers.etag)
    assert.isTrue(gunzipSync(gzipped.body).equals(js.body))
    assert.isBelow(gzipped.body.length, js.body.length / 2)
    const css = await rawGet(`${base}${styles}`)
    assert.strictEqual(css.status, 200)
    assert.strictEqual(css.headers["content-type"], "text/css; charset=utf-8")
    // the API's answers keep their own CSP
    assert.strictEqual((await rawGet(`${base}/symbols`)).headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'")
  })

  it("shows prices changing and a new candle without a reload, switches symbol and interval, saves a screenshot", async () => {
    const { page, problems } = await open(browser!, `${server!.base}/`)
    // a mark that a reload would wipe
    await page.evaluate(() => (window["dashboardTest"] = 42))

    await seePriceChange(page, "BTCUSDT")
    await seePriceChange(page, "ETHUSDT")
    await chartIs(page, "BTCUSDT", "1m")
    assert.isAbove(await page.locator("#chart canvas").count(), 0)
    assert.include((await page.locator("#chart a#tv-attr-logo").getAttribute("href")) ?? "", "https://www.tradingview.com/")
    assert.match(await text(page, "#live-mode"), /^live: (stream|polling)$/)

    // trades per minute, freshness, coverage and the pipeline fill in
    await page.waitForFunction(() => Number((document.querySelector('#prices tr[data-symbol="BTCUSDT"] td.rate')?.textContent ?? "").replace(/,/g, "")) > 0, undefined, {
      timeout: 20_000
    })
    assert.strictEqual(await page.locator('#prices tr[data-symbol="BTCUSDT"] td.age').getAttribute("data-state"), "fresh")
    await page.waitForSelector('#coverage .cov[data-symbol="BTCUSDT"] .strip', { timeout: 20_000 })
    assert.match(await text(page, '#coverage .cov[data-symbol="BTCUSDT"]'), /trades stored/)
    await page.waitForSelector('#pipeline [data-component="source / producer"]', { timeout: 20_000 })
    assert.include(await text(page, '#pipeline [data-component="source / producer"]'), "up")
    assert.include(await text(page, '#pipeline [data-component="store"]'), "sqlite")
    assert.strictEqual(await text(page, "#overall"), "health: ok")

    // switch interval, then symbol (the select), then back by clicking the table row
    await page.click('#intervals button[data-interval="5m"]')
    await chartIs(page, "BTCUSDT", "5m")
    assert.strictEqual(await page.locator('#intervals button[data-interval="5m"]').getAttribute("aria-pressed"), "true")
    await page.selectOption("#symbol", "ETHUSDT")
    await chartIs(page, "ETHUSDT", "5m")
    await page.click('#intervals button[data-interval="1h"]')
    await chartIs(page, "ETHUSDT", "1h")
    await page.click('#intervals button[data-interval="1d"]')
    await chartIs(page, "ETHUSDT", "1d")
    await page.click('#prices tr[data-symbol="BTCUSDT"]')
    await chartIs(page, "BTCUSDT", "1d")
    await page.click('#intervals button[data-interval="1m"]')
    await chartIs(page, "BTCUSDT", "1m")
    assert.match(page.url(), /#BTCUSDT\/1m$/)

    // a new 1m candle appears as the live events cross into the next minute (at most a minute away)
    const bars = Number(await page.locator("#chart").getAttribute("data-bars"))
    const lastTime = (await page.locator("#chart").getAttribute("data-last-time")) ?? ""
    await page.waitForFunction(
      ([n, t]) => {
        const chart = document.getElementById("chart")!
        return chart.dataset["interval"] === "1m" && Number(chart.dataset["bars"]) > n && (chart.dataset["lastTime"] ?? "") > t
      },
      [bars, lastTime] as const,
      { timeout: 75_000, polling: 250 }
    )
    assert.strictEqual(await page.evaluate(() => window["dashboardTest"]), 42, "the page was not reloaded")
    await seePriceChange(page, "BTCUSDT")

    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    assert.isAbove(fs.statSync(SCREENSHOT).size, 10_000)
    assert.deepStrictEqual(problems(), [])
    await page.close()
  })

  it("falls back to polling when the server has no /stream (404), and still updates; a symbol without trades says so", async () => {
    const { page, problems } = await open(browser!, `${server!.base}/`, [/status of 404/], async (p) => {
      await p.route(/\/stream\?/, (route) => route.fulfill({ status: 404, contentType: "application/json", body: '{"error":"NotFound","message":"no endpoint"}' }))
      // as /coverage answers for a configured symbol that has no stored trade yet
      await p.route(/\/coverage\?symbol=ETHUSDT/, (route) =>
        route.fulfill({ status: 404, contentType: "application/json", body: '{"_tag":"NoTrades","symbol":"ETHUSDT","message":"no trades stored for ETHUSDT yet"}' })
      )
    })
    await page.waitForFunction(() => document.getElementById("live-mode")?.textContent === "live: polling", undefined, { timeout: 20_000 })
    await seePriceChange(page, "BTCUSDT")
    await chartIs(page, "BTCUSDT", "1m")
    const close = await page.locator("#chart").getAttribute("data-last-close")
    await page.waitForFunction((was) => document.getElementById("chart")!.dataset["lastClose"] !== was, close, { timeout: 20_000 })
    assert.strictEqual(await text(page, "#live-mode"), "live: polling")
    await page.waitForSelector('#coverage .cov[data-symbol="ETHUSDT"]', { timeout: 20_000 })
    assert.include(await text(page, '#coverage .cov[data-symbol="ETHUSDT"]'), "no trades yet")
    assert.match(await text(page, '#coverage .cov[data-symbol="BTCUSDT"]'), /trades stored/)
    assert.deepStrictEqual(problems(), [])
    await page.close()
  })
})

describe("the dashboard, API keys on", { timeout: 120_000 }, () => {
  let server: Server | undefined
  let browser: Browser | undefined

  beforeAll(async () => {
    ;[server, browser] = await Promise.all([startSim("keys", { API_KEYS: KEY }), launch()])
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await stop(server)
  })

  it("serves the page and its assets without a key, and no data without one", async () => {
    const { base } = server!
    const page = await rawGet(`${base}/`)
    assert.strictEqual(page.status, 200)
    assert.include(String(page.headers["content-security-policy"]), "script-src 'self'")
    const script = /<script defer src="([^"]+)"/.exec(page.body.toString("utf8"))![1]!
    const js = await rawGet(`${base}${script}`)
    assert.strictEqual(js.status, 200)
    // the assets carry no data: a shared cache may keep them, keys or not
    assert.strictEqual(js.headers["cache-control"], "public, max-age=31536000, immutable")
    assert.strictEqual((await rawGet(`${base}/assets/dashboard.css`)).status, 200)
    assert.strictEqual((await rawGet(`${base}/symbols`)).status, 401)
    assert.strictEqual((await rawGet(`${base}/assets/other.js`)).status, 401)
    assert.strictEqual((await rawGet(`${base}/symbols`, { "x-api-key": KEY })).status, 200)
  })

  it("asks for the key, says when it is refused, shows data once given one, and keeps it", async () => {
    const { page, problems } = await open(browser!, `${server!.base}/`, [/status of 401/])
    await page.waitForSelector("#key-panel:not([hidden])", { timeout: 20_000 })
    await page.waitForFunction(() => document.getElementById("live-mode")?.textContent === "key needed", undefined, { timeout: 20_000 })
    assert.strictEqual(await text(page, priceCell("BTCUSDT")), "—")
    // the pipeline needs no key (/health is public)
    await page.waitForSelector('#pipeline [data-component="source / producer"]', { timeout: 20_000 })

    await page.fill("#api-key", "not-the-key-0123456789")
    await page.click('#key-form button[type="submit"]')
    await page.waitForFunction(() => /refused/.test(document.getElementById("key-message")?.textContent ?? ""), undefined, { timeout: 20_000 })
    assert.isFalse(await page.locator("#key-panel").isHidden())

    await page.fill("#api-key", KEY)
    await page.click('#key-form button[type="submit"]')
    await seePriceChange(page, "BTCUSDT")
    await chartIs(page, "BTCUSDT", "1m")
    assert.isTrue(await page.locator("#key-panel").isHidden())
    assert.match(await text(page, "#live-mode"), /^live: (stream|polling)$/)
    await page.waitForSelector('#coverage .cov[data-symbol="BTCUSDT"] .strip', { timeout: 20_000 })
    assert.strictEqual(await page.evaluate(() => localStorage.getItem("crypto-streaming-platform.api-key")), KEY)

    // kept: a reload needs no prompt
    await page.reload()
    await seePriceChange(page, "ETHUSDT")
    assert.isTrue(await page.locator("#key-panel").isHidden())
    assert.deepStrictEqual(problems(), [])
    await page.close()
  })

  it("reads /stream with the key, and resumes a cut stream with Last-Event-ID", async () => {
    const requests: Array<Record<string, string>> = []
    const event = (id: number) =>
      `id: ${id}\nevent: ticker\ndata: ${JSON.stringify({
        timestamp_utc: "2026-01-15T14:03:22.913852+00:00",
        symbol: "BTCUSDT",
        lastPrice: "68001.2",
        priceChangePercent: "1.5",
        volume: "100",
        source: "simulated",
        event_time: "2026-01-15T14:03:22.913852+00:00"
      })}\n\n`
    const { page, problems } = await open(browser!, `${server!.base}/`, [], async (p) => {
      await p.addInitScript((key) => localStorage.setItem("crypto-streaming-platform.api-key", key), KEY)
      // each connection gets one event, then the stream ends (as a cut connection does)
      await p.route(/\/stream\?/, (route) => {
        requests.push(route.request().headers())
        return route.fulfill({ status: 200, headers: { "content-type": "text/event-stream", "cache-control": "no-cache" }, body: `retry: 200\n\n${event(40 + requests.length)}` })
      })
    })
    await page.waitForFunction(() => /\d/.test(document.querySelector('#prices tr[data-symbol="BTCUSDT"] td.price')?.textContent ?? ""), undefined, { timeout: 20_000 })
    const deadline = Date.now() + 20_000
    while (requests.length < 3 && Date.now() < deadline) await page.waitForTimeout(100)
    assert.isAtLeast(requests.length, 3)
    assert.strictEqual(requests[0]!["x-api-key"], KEY)
    assert.strictEqual(requests[0]!["accept"], "text/event-stream")
    assert.isUndefined(requests[0]!["last-event-id"])
    assert.strictEqual(requests[1]!["last-event-id"], "41")
    assert.strictEqual(requests[2]!["last-event-id"], "42")
    assert.deepStrictEqual(problems(), [])
    await page.close()
  })
})

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

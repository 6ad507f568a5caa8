import { HttpServer } from "@effect/platform"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Layer, ManagedRuntime, Schema } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { BiParams, LatestParams, RangeParams } from "../src/api/Api.js"
import { BI_MAX_DAYS } from "../src/bi/BiReports.js"
import { healthListeningServer, listeningServer } from "../src/api/NodeServer.js"
import { parseInstantMicros } from "../src/domain/Ticker.js"
import { Health } from "../src/status/Health.js"
import { sqliteStore } from "../src/store/Store.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { makeTick, us } from "./support/events.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "api-strict-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
let databases = 0

/**
 * The server exactly as the roles run it (NodeServer: Node's http server with its clientError hook,
 * the hot path, the Effect pipeline and its middleware) on a free loopback port, with `env` as its
 * whole configuration besides SYMBOLS.
 */
const serving = (env: Record<string, string> = {}) => {
  const dbFile = path.join(dir, `app-${databases++}.db`)
  const runtime = ManagedRuntime.make(
    listeningServer({ port: 0, host: "127.0.0.1" }).pipe(
      Layer.provideMerge(Health.Default),
      Layer.provideMerge(sqliteStore(dbFile)),
      Layer.provide(
        Layer.setConfigProvider(
          ConfigProvider.fromMap(new Map(Object.entries({ SYMBOLS: "BTCUSDT", STORAGE_PATH: dbFile, ...env })))
        )
      )
    )
  )
  let port = 0
  beforeAll(async () => {
    port = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (s) => (s.address as HttpServer.TcpAddress).port))
    await runtime.runPromise(
      Effect.flatMap(TickWriter, (r) => r.insertMany([makeTick("BTCUSDT", us("2026-02-27T12:00:00Z"), "1.00")]))
    )
  }, 60_000)
  afterAll(() => runtime.dispose())
  return {
    port: () => port,
    request: async (url: string, init: RequestInit = {}) => {
      const res = await fetch(`http://127.0.0.1:${port}${url}`, init)
      const text = await res.text()
      return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) }
    }
  }
}

type Reply = Awaited<ReturnType<ReturnType<typeof serving>["request"]>>

const API_CSP = "default-src 'none'; frame-ancestors 'none'"
const assertSecurityHeaders = (headers: { get: (name: string) => string | null | undefined }) => {
  assert.strictEqual(headers.get("x-content-type-options"), "nosniff")
  assert.strictEqual(headers.get("x-frame-options"), "DENY")
  assert.strictEqual(headers.get("referrer-policy"), "no-referrer")
  assert.strictEqual(headers.get("cross-origin-resource-policy"), "same-site")
  assert.strictEqual(headers.get("content-security-policy"), API_CSP)
}
const assertJsonError = (res: Reply, status: number, error: string) => {
  assert.strictEqual(res.status, status, res.text)
  assert.include(res.headers.get("content-type") ?? "", "application/json")
  const body = res.json()
  assert.strictEqual(body.error, error)
  assert.isString(body.message)
  assert.isAbove(body.message.length, 10)
  assertSecurityHeaders(res.headers)
  return body as { error: string; message: string }
}

/** One raw HTTP exchange: `bytes` written as they are, everything the server sends until it closes. */
const rawExchange = (port: number, bytes: string | Buffer) =>
  new Promise<{ status: number; headers: Map<string, string>; body: string }>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error("the server did not answer and close within 10 s"))
    }, 10_000)
    socket.on("data", (chunk) => chunks.push(chunk))
    socket.on("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    socket.on("close", () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString("latin1")
      const split = text.indexOf("\r\n\r\n")
      const head = split === -1 ? text : text.slice(0, split)
      const [statusLine = "", ...lines] = head.split("\r\n")
      const headers = new Map<string, string>()
      for (const line of lines) {
        const colon = line.indexOf(":")
        if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
      }
      const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1] ?? 0)
      resolve({ status, headers, body: split === -1 ? "" : text.slice(split + 4) })
    })
    socket.write(bytes)
  })

describe("requests no route answers", () => {
  const server = serving()

  it("an unknown path is a JSON 404 with the security headers", async () => {
    const missing = await server.request("/no-such-route?x=1")
    const body = assertJsonError(missing, 404, "NotFound")
    assert.include(body.message, "/no-such-route")
    assert.notInclude(body.message, "x=1")
    // HEAD gets the same status and headers, without a body
    const head = await server.request("/no-such-route", { method: "HEAD" })
    assert.strictEqual(head.status, 404)
    assert.strictEqual(head.text, "")
    assertSecurityHeaders(head.headers)
  })

  it("a known path with a method it does not serve is a JSON 405 naming the allowed methods", async () => {
    for (const [method, url] of [
      ["POST", "/symbols"],
      ["DELETE", "/trades/latest?symbol=BTCUSDT"],
      ["PUT", "/openapi.json"],
      ["PATCH", "/health"]
    ] as const) {
      const res = await server.request(url, { method })
      const body = assertJsonError(res, 405, "MethodNotAllowed")
      assert.strictEqual(res.headers.get("allow"), "GET, HEAD, OPTIONS", `${method} ${url}`)
      assert.include(body.message, method)
      assert.include(body.message, "GET, HEAD, OPTIONS")
    }
    // An unknown path stays a 404 whatever the method.
    assertJsonError(await server.request("/no-such-route", { method: "POST" }), 404, "NotFound")
  })

  it("OPTIONS on a known path (not a CORS preflight) says what is allowed", async () => {
    const res = await server.request("/symbols", { method: "OPTIONS" })
    assert.strictEqual(res.status, 204)
    assert.strictEqual(res.headers.get("allow"), "GET, HEAD, OPTIONS")
    assertSecurityHeaders(res.headers)
    // HEAD is served where GET is.
    assert.strictEqual((await server.request("/symbols", { method: "HEAD" })).status, 200)
  })
})

describe("requests no route answers, with CORS", () => {
  const origin = "https://app.example.com"
  const server = serving({ CORS_ORIGINS: origin })

  it("404 and 405 carry the CORS headers for an allowed origin", async () => {
    const missing = await server.request("/no-such-route", { headers: { origin } })
    assertJsonError(missing, 404, "NotFound")
    assert.strictEqual(missing.headers.get("access-control-allow-origin"), origin)
    assert.include(missing.headers.get("vary") ?? "", "Origin")
    const wrong = await server.request("/symbols", { method: "POST", headers: { origin } })
    assertJsonError(wrong, 405, "MethodNotAllowed")
    assert.strictEqual(wrong.headers.get("access-control-allow-origin"), origin)
    assert.strictEqual(wrong.headers.get("allow"), "GET, HEAD, OPTIONS")
  })
})

describe("requests Node's HTTP parser rejects", () => {
  const server = serving({ HSTS: "true" })

  const assertClientError = (res: Awaited<ReturnType<typeof rawExchange>>, status: number, error: string) => {
    assert.strictEqual(res.status, status, JSON.stringify([...res.headers]) + res.body)
    assert.strictEqual(res.headers.get("content-type"), "application/json")
    assert.strictEqual(res.headers.get("connection"), "close")
    assert.strictEqual(Number(res.headers.get("content-length")), Buffer.byteLength(res.body))
    assertSecurityHeaders({ get: (name) => res.headers.get(name) })
    assert.strictEqual(res.headers.get("strict-transport-security"), "max-age=31536000; includeSubDomains")
    const body = JSON.parse(res.body)
    assert.strictEqual(body.error, error)
    assert.isString(body.message)
    return body as { error: string; message: string }
  }

  it("bad bytes in the request line are a JSON 400", async () => {
    const res = await rawExchange(server.port(), "GET /sym\x01bols HTTP/1.1\r\nHost: x\r\n\r\n")
    const body = assertClientError(res, 400, "BadRequest")
    assert.notInclude(body.message, "\x01")
  })

  it("bad bytes in a header are a JSON 400", async () => {
    const res = await rawExchange(server.port(), "GET /symbols HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n")
    assertClientError(res, 400, "BadRequest")
  })

  it("conflicting Content-Length headers are a JSON 400", async () => {
    const res = await rawExchange(
      server.port(),
      "POST /symbols HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    )
    assertClientError(res, 400, "BadRequest")
  })

  it("headers over 16 KB are a JSON 431", async () => {
    const res = await rawExchange(
      server.port(),
      `GET /symbols HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20 * 1024)}\r\n\r\n`
    )
    const body = assertClientError(res, 431, "RequestHeaderFieldsTooLarge")
    assert.include(body.message, "16 KB")
  })

  it("the server keeps serving after rejecting a request", async () => {
    await rawExchange(server.port(), "GARBAGE\r\n\r\n")
    assert.strictEqual((await server.request("/symbols")).status, 200)
  })
})

describe("400 answers", () => {
  const server = serving()

  it("say in one sentence what is wrong with the query, keeping _tag and issues", async () => {
    const cases: Array<[string, ReadonlyArray<string | number>, string]> = [
      ["/trades/latest?symbol=BTCUSDT&limit=0", ["limit"], "invalid query: limit must be a whole number from 1 to 1000"],
      ["/trades/latest?symbol=BTCUSDT&limit=ten", ["limit"], "invalid query: limit must be a whole number from 1 to 1000"],
      ["/trades/latest", ["symbol"], "invalid query: symbol is missing"],
      [
        "/trades/latest?symbol=btc",
        ["symbol"],
        'invalid query: symbol: expected a Binance symbol in upper case letters and digits (e.g. BTCUSDT), got "btc"'
      ],
      ["/trades/range?symbol=BTCUSDT&start=2026-01-02&end=2026-01-01", [], "invalid query: start must be before end"],
      [
        "/trades/range?symbol=BTCUSDT&start=2026-01-01&end=2026-01-02&cursor=zz",
        ["cursor"],
        "invalid query: cursor must be the x-next-cursor value of a previous answer"
      ],
      ["/bi/daily_ohlc.csv?symbol=BTCUSDT&days=abc", ["days"], `invalid query: days must be a whole number from 1 to ${BI_MAX_DAYS}`],
      [
        "/candles?symbol=BTCUSDT&interval=2m&start=2026-01-01&end=2026-01-02",
        ["interval"],
        'invalid query: interval: expected one of "1m", "5m", "1h", "1d", got "2m"'
      ],
      [
        "/bi/latest_prices.csv?symbols=BTCUSDT,,x",
        ["symbols", 1],
        'invalid query: symbols[1]: expected a Binance symbol in upper case letters and digits (e.g. BTCUSDT), got ""'
      ]
    ]
    for (const [url, field, sentence] of cases) {
      const res = await server.request(url)
      assert.strictEqual(res.status, 400, url)
      assertSecurityHeaders(res.headers)
      const body = res.json()
      assert.strictEqual(body._tag, "HttpApiDecodeError")
      assert.notInclude(body.message, "Encoded side", url)
      assert.notInclude(body.message, "<->", url)
      assert.strictEqual(body.message, sentence, url)
      // the issues are HttpApi's own, unchanged: clients may read them
      assert.isArray(body.issues)
      assert.isAbove(body.issues.length, 0)
      const issue = body.issues[0]
      assert.deepStrictEqual(issue.path, field, url)
      assert.isString(issue.message)
      assert.isString(issue._tag)
    }
  })

  it("leave the OpenAPI document intact", async () => {
    const doc = (await server.request("/openapi.json")).json()
    assert.property(doc.paths["/trades/latest"], "get")
    const schemas = JSON.stringify(doc.components.schemas)
    assert.include(schemas, "HttpApiDecodeError")
  })
})

describe("strict query parsing", () => {
  const server = serving()

  it("accepts only plain decimal digits for limit and days", async () => {
    for (const limit of ["0x10", "1e3", "%201", "1%20", "+5", "-0", "5.0", "", "1_000", "%E2%80%8B1"]) {
      const res = await server.request(`/trades/latest?symbol=BTCUSDT&limit=${limit}`)
      assert.strictEqual(res.status, 400, `limit=${limit}`)
      assert.strictEqual(res.json().issues[0].message, "limit must be a whole number from 1 to 1000", `limit=${limit}`)
    }
    for (const days of ["0x10", "1e1", "%207"]) {
      assert.strictEqual((await server.request(`/features/daily?symbol=BTCUSDT&days=${days}`)).status, 400, `days=${days}`)
    }
    assert.strictEqual((await server.request("/trades/latest?symbol=BTCUSDT&limit=16")).status, 200)
    assert.strictEqual((await server.request("/trades/latest?symbol=BTCUSDT&limit=007")).status, 200)
    assert.strictEqual((await server.request("/features/daily?symbol=BTCUSDT&days=7")).status, 200)
  })

  it("reports an impossible start or end date as that field's error, not as an ordering error", async () => {
    for (const [start, end] of [
      ["2026-02-30", "2026-03-05"],
      ["2026-02-31T00:00:00Z", "2026-03-05"],
      ["2026-02-28T24:00:00Z", "2026-03-05"],
      ["2026-13-01", "2027-01-01"],
      ["2026-02-28T10:60:00Z", "2026-03-05"],
      ["2026-02-28T10:00:60Z", "2026-03-05"],
      ["2026-02-28T10:00:00%2B24:00", "2026-03-05"]
    ]) {
      const url = `/trades/range?symbol=BTCUSDT&start=${start}&end=${end}`
      const res = await server.request(url)
      assert.strictEqual(res.status, 400, url)
      const body = res.json()
      assert.deepStrictEqual(body.issues.map((i: { path: Array<string> }) => i.path), [["start"]], url)
      assert.notInclude(body.message, "before end", url)
      assert.match(body.message, /^invalid query: start: /, url)
    }
    const badEnd = (await server.request("/trades/range?symbol=BTCUSDT&start=2026-02-01&end=2026-02-29")).json()
    assert.deepStrictEqual(badEnd.issues.map((i: { path: Array<string> }) => i.path), [["end"]])
    const candles = (await server.request("/candles?symbol=BTCUSDT&interval=1h&start=2026-02-30&end=2026-03-02")).json()
    assert.deepStrictEqual(candles.issues.map((i: { path: Array<string> }) => i.path), [["start"]])
    // real dates, leap days included, still work
    const ok = await server.request("/trades/range?symbol=BTCUSDT&start=2026-02-27&end=2026-02-28T23:59:59.999999Z")
    assert.strictEqual(ok.status, 200)
    assert.strictEqual(ok.json().length, 1)
    assert.strictEqual((await server.request("/trades/range?symbol=BTCUSDT&start=2024-02-29&end=2024-03-01")).status, 200)
  })
})

describe("parsing instants and query schemas", () => {
  it("parseInstantMicros rejects dates and times that do not exist", () => {
    for (const text of [
      "2026-02-29T00:00:00Z",
      "2026-02-30T00:00:00Z",
      "2026-02-31T00:00:00Z",
      "2026-04-31T00:00:00Z",
      "2026-00-10T00:00:00Z",
      "2026-13-01T00:00:00Z",
      "2026-01-00T00:00:00Z",
      "2026-01-32T00:00:00Z",
      "2026-01-15T24:00:00Z",
      "2026-01-15T23:60:00Z",
      "2026-01-15T23:59:60Z",
      "2026-01-15T23:59:59+24:00",
      "2026-01-15T23:59:59-23:60",
      "2100-02-29T00:00:00Z"
    ]) {
      assert.isUndefined(parseInstantMicros(text), text)
    }
  })

  it("parseInstantMicros keeps accepting every real instant", () => {
    assert.strictEqual(parseInstantMicros("2024-02-29T00:00:00Z"), Date.UTC(2024, 1, 29) * 1000)
    assert.strictEqual(parseInstantMicros("2000-02-29T23:59:59.999999Z"), Date.UTC(2000, 1, 29, 23, 59, 59, 999) * 1000 + 999)
    assert.strictEqual(parseInstantMicros("2026-12-31T23:59:59+23:59"), Date.UTC(2026, 11, 31, 0, 0, 59) * 1000)
    assert.strictEqual(parseInstantMicros("2026-01-01T00:00:00-23:59"), Date.UTC(2026, 0, 1, 23, 59) * 1000)
    assert.strictEqual(parseInstantMicros("0099-01-01T00:00:00Z"), Date.parse("0099-01-01T00:00:00Z") * 1000)
    assert.strictEqual(parseInstantMicros("2026-01-15T14:03:22.913852+00:00"), Date.UTC(2026, 0, 15, 14, 3, 22, 913) * 1000 + 852)
  })

  it("query schemas decode plain digits only", () => {
    const latest = Schema.decodeUnknownEither(LatestParams)
    assert.deepStrictEqual(latest({ symbol: "BTCUSDT", limit: "10" }), Either.right({ symbol: "BTCUSDT" as never, limit: 10 }))
    for (const limit of ["0x10", "1e3", " 1", "1 ", "\t1", "Infinity", "1.", "٣"]) {
      assert.isTrue(Either.isLeft(latest({ symbol: "BTCUSDT", limit })), JSON.stringify(limit))
    }
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(BiParams)({ symbol: "BTCUSDT", days: "1e1" })))
    const range = Schema.decodeUnknownEither(RangeParams)
    assert.isTrue(Either.isRight(range({ symbol: "BTCUSDT", start: "2026-01-01", end: "2026-01-02", limit: "5000" })))
    assert.isTrue(Either.isLeft(range({ symbol: "BTCUSDT", start: "2026-01-01", end: "2026-01-02", limit: "5e3" })))
  })
})

describe("the producer's and consumer's /health server (HEALTH_PORT)", () => {
  const runtime = ManagedRuntime.make(
    healthListeningServer({ port: 0, host: "127.0.0.1" }).pipe(
      Layer.provideMerge(Health.Default),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["STORAGE_PATH", path.join(dir, "health-only.db")]]))))
    )
  )
  afterAll(() => runtime.dispose())

  it("serves /health and answers any other path or method with a JSON 404 or 405", async () => {
    const port = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (s) => (s.address as HttpServer.TcpAddress).port))
    const health = await fetch(`http://127.0.0.1:${port}/health`)
    assert.strictEqual(health.status, 200)
    assert.strictEqual(((await health.json()) as any).components.store.state, "not_running")
    const missing = await fetch(`http://127.0.0.1:${port}/trades/latest`)
    assert.strictEqual(missing.status, 404)
    assert.match(missing.headers.get("content-type") ?? "", /application\/json/)
    assert.deepStrictEqual(await missing.json(), {
      error: "NotFound",
      message: "no endpoint at /trades/latest: this port (HEALTH_PORT) serves GET /health and GET /metrics only"
    })
    assertSecurityHeaders(health.headers)
    assertSecurityHeaders(missing.headers)
    const head = await fetch(`http://127.0.0.1:${port}/health`, { method: "HEAD" })
    assert.strictEqual(head.status, 200)
    const wrong = await fetch(`http://127.0.0.1:${port}/health`, { method: "DELETE" })
    assertSecurityHeaders(wrong.headers)
    assert.strictEqual(wrong.status, 405)
    assert.strictEqual(wrong.headers.get("allow"), "GET, HEAD, OPTIONS")
    assert.strictEqual(((await wrong.json()) as any).error, "MethodNotAllowed")
  })
})

import { HttpApi, HttpClient } from "@effect/platform"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, assert, beforeAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import { Api, RANGE_MAX_ROWS } from "../src/api/Api.js"
import { httpServer } from "../src/api/Http.js"
import { Health } from "../src/status/Health.js"
import { sqliteStore } from "../src/store/Store.js"
import { TickRepo } from "../src/store/TickRepo.js"
import { TickWriter } from "../src/store/TickWriter.js"
import { toTick } from "../src/domain/Ticker.js"
import { makeEvent, us } from "./support/events.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "api-test-"))
const dbFile = path.join(dir, "app.db")

/** The real server on a real loopback socket, over a temporary database; SYMBOLS=BTCUSDT,ETHUSDT,SOLUSDT. */
const TestLive = httpServer(NodeHttpServer.layerTest).pipe(
  Layer.provideMerge(Health.Default),
  Layer.provideMerge(sqliteStore(dbFile)),
  Layer.provide(
    Layer.setConfigProvider(
      ConfigProvider.fromMap(new Map([["SYMBOLS", "BTCUSDT,ETHUSDT,SOLUSDT"], ["STORAGE_PATH", dbFile]]))
    )
  )
)

const runtime = ManagedRuntime.make(TestLive)
const run = <A, E>(effect: Effect.Effect<A, E, HttpClient.HttpClient | TickRepo | TickWriter | Health>) => runtime.runPromise(effect)

const get = (url: string) =>
  Effect.gen(function* () {
    const client = yield* HttpClient.HttpClient
    const res = yield* client.get(url)
    const text = yield* res.text
    return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) }
  }).pipe(Effect.scoped)

const t0 = us("2026-01-15T00:00:00Z")
const minute = 60_000_000
const btc = Array.from({ length: 300 }, (_, i) => makeEvent("BTCUSDT", t0 + i * minute, `${100 + i}.00`))

beforeAll(async () => {
  await run(Effect.flatMap(TickWriter, (repo) => repo.insertMany([...btc, makeEvent("ETHUSDT", t0, "2000.00")].map(toTick))))
}, 60_000)
afterAll(async () => {
  await runtime.dispose()
  fs.rmSync(dir, { recursive: true, force: true })
})

const expect400 = async (url: string, mentions: string) => {
  const res = await run(get(url))
  expect(res.status, url).toBe(400)
  expect(res.headers["content-type"]).toContain("application/json")
  expect(res.text, url).toContain(mentions)
}

describe("HTTP API over a real socket", () => {
  it("GET /health is 200 with per-component state while everything is up", async () => {
    const res = await run(get("/health"))
    assert.strictEqual(res.status, 200)
    const body = res.json()
    assert.strictEqual(body.status, "ok")
    assert.strictEqual(body.components.store.state, "up")
    assert.deepStrictEqual(Object.keys(body.components).sort(), ["broker", "producer", "store", "stream"])
    // No stream source runs in this process: the component says so rather than guessing.
    assert.deepStrictEqual(body.components.stream, { state: "not_running", detail: null, connections: [] })
  })

  it("GET /health/live is 200 whatever the components say", async () => {
    await run(Effect.flatMap(Health, (h) => h.producerFailed("down for the test")))
    const res = await run(get("/health/live"))
    assert.strictEqual(res.status, 200)
    assert.deepStrictEqual(res.json(), { status: "ok" })
    await run(Effect.flatMap(Health, (h) => h.producerSucceeded(2)))
  })

  it("GET /health is 503 and says why when the producer cannot reach Binance", async () => {
    await run(Effect.flatMap(Health, (h) => h.producerFailed("Binance is unreachable (network: ECONNREFUSED)")))
    const res = await run(get("/health"))
    assert.strictEqual(res.status, 503)
    const body = res.json()
    assert.strictEqual(body.status, "down")
    assert.strictEqual(body.components.producer.state, "down")
    assert.include(body.components.producer.last_error, "unreachable")
    await run(Effect.flatMap(Health, (h) => h.producerSucceeded(2)))
    assert.strictEqual((await run(get("/health"))).status, 200)
  })

  it("GET /symbols lists symbols with data and their latest timestamp", async () => {
    const res = await run(get("/symbols"))
    assert.strictEqual(res.status, 200)
    assert.deepStrictEqual(res.json(), [
      { symbol: "BTCUSDT", latest_timestamp_utc: btc[299]!.timestamp_utc, events: 300 },
      { symbol: "ETHUSDT", latest_timestamp_utc: makeEvent("ETHUSDT", t0).timestamp_utc, events: 1 }
    ])
  })

  it("GET /trades/latest is newest first, 200 rows by default, in the exact contract", async () => {
    const all = await run(get("/trades/latest?symbol=BTCUSDT"))
    assert.strictEqual(all.status, 200)
    const rows = all.json()
    assert.strictEqual(rows.length, 200)
    assert.deepStrictEqual(rows[0], btc[299])
    assert.deepStrictEqual(rows[199], btc[100])
    assert.strictEqual(JSON.stringify(rows[0]), JSON.stringify(btc[299]))
    const few = (await run(get("/trades/latest?symbol=BTCUSDT&limit=3"))).json()
    assert.deepStrictEqual(few, [btc[299], btc[298], btc[297]])
    assert.strictEqual((await run(get("/trades/latest?symbol=BTCUSDT&limit=1000"))).json().length, 300)
  })

  it("GET /trades/latest answers [] for a configured symbol without data yet", async () => {
    const res = await run(get("/trades/latest?symbol=SOLUSDT"))
    assert.strictEqual(res.status, 200)
    assert.deepStrictEqual(res.json(), [])
  })

  it("GET /trades/range is oldest first within [start, end)", async () => {
    const res = await run(get("/trades/range?symbol=BTCUSDT&start=2026-01-15T01:00:00Z&end=2026-01-15T01:03:00Z"))
    assert.strictEqual(res.status, 200)
    assert.deepStrictEqual(res.json(), [btc[60], btc[61], btc[62]])
    const byDate = await run(get("/trades/range?symbol=BTCUSDT&start=2026-01-15&end=2026-01-16"))
    assert.strictEqual(byDate.json().length, 300)
    const offset = await run(get("/trades/range?symbol=BTCUSDT&start=2026-01-15T02:00:00%2B01:00&end=2026-01-15T01:01:00Z"))
    assert.deepStrictEqual(offset.json(), [btc[60]])
  })

  it(`GET /trades/range returns at most ${RANGE_MAX_ROWS} rows, or fewer with limit`, async () => {
    const res = await run(get("/trades/range?symbol=BTCUSDT&start=2026-01-15&end=2026-01-16&limit=7"))
    assert.deepStrictEqual(res.json(), btc.slice(0, 7))
    await expect400(`/trades/range?symbol=BTCUSDT&start=2026-01-15&end=2026-01-16&limit=${RANGE_MAX_ROWS + 1}`, "limit")
  })

  it("pages a range larger than one answer with a cursor", async () => {
    const base = "/trades/range?symbol=BTCUSDT&start=2026-01-15&end=2026-01-16&limit=120"
    const pages: Array<Array<unknown>> = []
    let cursor: string | undefined = ""
    while (cursor !== undefined) {
      const url: string = cursor === "" ? base : `${base}&cursor=${cursor}`
      const res = await run(get(url))
      assert.strictEqual(res.status, 200)
      pages.push(res.json())
      const next: string | undefined = res.headers["x-next-cursor"]
      if (next !== undefined) assert.include(res.headers["link"], `cursor=${next}`)
      cursor = next
    }
    assert.deepStrictEqual(pages.map((p) => p.length), [120, 120, 60])
    assert.deepStrictEqual(pages.flat(), btc)
    // an exact multiple of the page size ends without a cursor
    const exact = await run(get("/trades/range?symbol=BTCUSDT&start=2026-01-15&end=2026-01-16&limit=300"))
    assert.isUndefined(exact.headers["x-next-cursor"])
    await expect400(`${base}&cursor=banana`, "cursor must be the x-next-cursor value of a previous answer")
  })

  it("answers every bad input with a 400 and a JSON body saying what is wrong", async () => {
    await expect400("/trades/latest", "symbol")
    await expect400("/trades/latest?symbol=btc-usdt", "upper case")
    await expect400("/trades/latest?symbol=DOGEUSDT", "no data for symbol DOGEUSDT")
    await expect400("/trades/latest?symbol=BTCUSDT&limit=0", "limit must be a whole number from 1 to 1000")
    await expect400("/trades/latest?symbol=BTCUSDT&limit=1001", "limit must be a whole number from 1 to 1000")
    await expect400("/trades/latest?symbol=BTCUSDT&limit=ten", "limit")
    await expect400("/trades/latest?symbol=BTCUSDT&limit=2.5", "limit must be a whole number")
    await expect400("/trades/range?symbol=BTCUSDT&start=2026-01-02&end=2026-01-01", "start must be before end")
    await expect400("/trades/range?symbol=BTCUSDT&start=2026-01-01&end=2026-01-01", "start must be before end")
    await expect400("/trades/range?symbol=BTCUSDT&start=yesterday&end=2026-01-01", "expected an ISO-8601 date or instant")
    await expect400("/trades/range?symbol=BTCUSDT&start=2026-01-01T00:00:00&end=2026-01-02", "with a zone")
    await expect400("/trades/range?symbol=BTCUSDT&start=2026-01-01", "end")
    await expect400("/trades/range?symbol=NOPEUSDT&start=2026-01-01&end=2026-01-02", "known symbols: BTCUSDT, ETHUSDT, SOLUSDT")
  })

  it("serves an OpenAPI document listing every endpoint, and interactive docs", async () => {
    const doc = (await run(get("/openapi.json"))).json()
    const declared: Array<string> = []
    HttpApi.reflect(Api, {
      onGroup: () => {},
      onEndpoint: ({ endpoint }) => void declared.push(`${endpoint.method.toLowerCase()} ${endpoint.path}`)
    })
    assert.strictEqual(declared.length, 17)
    for (const entry of declared) {
      const [method, route] = entry.split(" ") as [string, string]
      assert.property(doc.paths[route] ?? {}, method, `${entry} is missing from /openapi.json`)
    }
    assert.includeMembers(Object.keys(doc.paths), ["/health", "/symbols", "/trades/latest", "/trades/range"])
    assert.deepStrictEqual(doc.components.securitySchemes.apiKey, { type: "apiKey", in: "header", name: "x-api-key" })
    const docs = await run(get("/docs"))
    assert.strictEqual(docs.status, 200)
    assert.include(docs.text.toLowerCase(), "<html")
  })
})

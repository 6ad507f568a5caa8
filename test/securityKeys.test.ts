import { HttpApiBuilder, HttpClient, HttpClientRequest, OpenApi } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Api } from "../src/api/Api.js"
import { ApiLive, httpServer } from "../src/api/Http.js"
import { makeKeyMatcher } from "../src/api/security/keys.js"
import { Health } from "../src/status/Health.js"
import { sqliteStore } from "../src/store/Store.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "security-keys-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
let databases = 0

const KEY = "plain-key-0123456789abcdef"

/** `http` (a server on NodeHttpServer.layerTest) over a fresh database, with `env` as its whole configuration. */
const serving = <A, E, R>(http: Layer.Layer<A, E, R>, env: Record<string, string>) => {
  const dbFile = path.join(dir, `app-${databases++}.db`)
  const runtime = ManagedRuntime.make(
    http.pipe(
      Layer.provideMerge(Health.Default),
      Layer.provideMerge(sqliteStore(dbFile)),
      Layer.provide(
        Layer.setConfigProvider(
          ConfigProvider.fromMap(new Map(Object.entries({ SYMBOLS: "BTCUSDT", STORAGE_PATH: dbFile, ...env })))
        )
      )
    ) as Layer.Layer<HttpClient.HttpClient, unknown>
  )
  beforeAll(() => runtime.runPromise(Effect.void), 60_000)
  afterAll(() => runtime.dispose())
  return (url: string, headers: Record<string, string> = {}, method: "GET" | "HEAD" = "GET") =>
    runtime.runPromise(
      Effect.gen(function* () {
        const client = yield* HttpClient.HttpClient
        const res = yield* client.execute(HttpClientRequest.make(method)(url).pipe(HttpClientRequest.setHeaders(headers)))
        const text = yield* res.text
        return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) }
      }).pipe(Effect.scoped)
    )
}

describe("the OpenAPI document declares the apiKey scheme itself", () => {
  const spec = OpenApi.fromApi(Api)
  const operations = Object.entries(spec.paths).flatMap(([route, item]) =>
    Object.entries(item as Record<string, { security?: unknown; responses?: Record<string, unknown> }>).map(
      ([method, op]) => ({ route, method, op })
    )
  )

  it("as a header scheme named apiKey, with no document-wide requirement", () => {
    assert.deepStrictEqual(spec.components.securitySchemes, { apiKey: { type: "apiKey", name: "x-api-key", in: "header" } })
    assert.deepStrictEqual(spec.security, [])
  })

  it("on every endpoint but the health checks and /metrics (scraped like /health), each with its 401", () => {
    assert.isAbove(operations.length, 10)
    for (const { method, op, route } of operations) {
      if (route.startsWith("/health") || route === "/metrics") {
        assert.deepStrictEqual(op.security, [], `${method} ${route}`)
        assert.notProperty(op.responses, "401", `${method} ${route}`)
      } else {
        assert.deepStrictEqual(op.security, [{ apiKey: [] }], `${method} ${route}`)
        assert.property(op.responses, "401", `${method} ${route}`)
      }
    }
  })
})

describe("ApiKeyAuth alone (the endpoints, without the API-level middleware)", () => {
  const request = serving(
    HttpApiBuilder.serve().pipe(Layer.provide(ApiLive), Layer.provideMerge(NodeHttpServer.layerTest)),
    { API_KEYS: KEY }
  )

  it("refuses a missing or wrong key on an endpoint and serves a valid one; /health stays public", async () => {
    const none = await request("/symbols")
    assert.strictEqual(none.status, 401)
    assert.deepStrictEqual(none.json(), { error: "Unauthorized", message: "an API key is required: send it in the x-api-key header" })
    const wrong = await request("/trades/latest?symbol=BTCUSDT", { "x-api-key": "not-the-key-0123456789" })
    assert.strictEqual(wrong.status, 401)
    assert.strictEqual(wrong.json().message, "the API key in the x-api-key header is not valid")
    // the key is checked before the query is decoded: no 400 tells a guesser about the parameters
    assert.strictEqual((await request("/trades/latest?limit=zero")).status, 401)
    assert.strictEqual((await request("/symbols", { "x-api-key": KEY })).status, 200)
    assert.strictEqual((await request("/health")).status, 200)
  })
})

describe("API keys on the full server", () => {
  const request = serving(httpServer(NodeHttpServer.layerTest), { API_KEYS: KEY })

  it("an endpoint's 401 and the gate's 401 (unknown path, docs) read the same", async () => {
    const answers = [await request("/symbols"), await request("/no-such-route"), await request("/docs")]
    for (const res of answers) {
      assert.strictEqual(res.status, 401)
      assert.deepStrictEqual(res.json(), { error: "Unauthorized", message: "an API key is required: send it in the x-api-key header" })
      assert.strictEqual(res.headers["www-authenticate"], 'ApiKey realm="api", header="x-api-key"')
      assert.strictEqual(res.headers["cache-control"], "no-store")
      assert.strictEqual(res.headers["x-content-type-options"], "nosniff")
    }
  })

  it("keeps every spelling of a path the router accepts behind the key", async () => {
    // The router ignores case, trailing slashes and percent-encoding of plain letters.
    for (const url of ["/DOCS", "/docs/", "/%64ocs", "/OpenAPI.json", "/SYMBOLS", "/symbols/", "/Trades/Latest?symbol=BTCUSDT"]) {
      assert.strictEqual((await request(url)).status, 401, url)
    }
    assert.strictEqual((await request("/symbols", {}, "HEAD")).status, 401)
    assert.strictEqual((await request("/SYMBOLS", { "x-api-key": KEY })).status, 200)
    assert.strictEqual((await request("/docs/", { "x-api-key": KEY })).status, 200)
    assert.strictEqual((await request("/symbols", { "x-api-key": KEY }, "HEAD")).status, 200)
  })
})

describe("key matching", () => {
  const digest = (text: string) => createHash("sha256").update(text).digest()

  it("finds the accepted key by its digest, and never matches an empty or absent key", () => {
    const match = makeKeyMatcher([digest("first-key-0123456789"), digest("second-key-0123456789"), digest("")])
    assert.strictEqual(match("second-key-0123456789"), 1)
    assert.strictEqual(match("first-key-0123456789"), 0)
    assert.strictEqual(match("second-key-012345678"), -1)
    assert.strictEqual(match(""), -1)
    assert.strictEqual(match(undefined), -1)
    assert.strictEqual(makeKeyMatcher([])("anything-at-all-here"), -1)
  })
})

import { HttpClient, HttpClientRequest, HttpServerRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Layer, ManagedRuntime, Option, TestClock, TestContext } from "effect"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { httpServer } from "../src/api/Http.js"
import {
  clientAddress,
  makeRateLimiter,
  SecurityConfig,
  type SecuritySettings
} from "../src/api/Security.js"
import { describeConfigError } from "../src/Config.js"
import { Health } from "../src/status/Health.js"
import { sqliteStore } from "../src/store/Store.js"
import { withEnv } from "./support/effect.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "security-test-"))
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
let databases = 0

/**
 * The real API server (httpServer over ApiLive, Swagger and OpenAPI, with the security middleware it
 * installs) on a loopback socket, over a fresh database, with `env` as its whole configuration.
 */
const server = (env: Record<string, string>) => {
  const dbFile = path.join(dir, `app-${databases++}.db`)
  return httpServer(NodeHttpServer.layerTest).pipe(
    Layer.provideMerge(Health.Default),
    Layer.provideMerge(sqliteStore(dbFile)),
    Layer.provide(
      Layer.setConfigProvider(
        ConfigProvider.fromMap(new Map(Object.entries({ SYMBOLS: "BTCUSDT,ETHUSDT", STORAGE_PATH: dbFile, ...env })))
      )
    )
  )
}

/**
 * Starts `server(env)` for the enclosing describe block, on the TestClock (so rate-limit refills are
 * driven by TestClock.adjust), and returns a runner for test effects. (Not `it.layer`: in
 * @effect/vitest 0.30 it rebinds the shared `it`, so a second block would rebuild the first server.)
 */
const serving = (env: Record<string, string>) => {
  const runtime = ManagedRuntime.make(server(env).pipe(Layer.provideMerge(TestContext.TestContext)))
  beforeAll(() => runtime.runPromise(Effect.void), 60_000)
  afterAll(() => runtime.dispose())
  return <A>(effect: Effect.Effect<A, never, HttpClient.HttpClient>) => runtime.runPromise(effect)
}

const call = (url: string, headers: Record<string, string> = {}, method: "GET" | "OPTIONS" | "POST" = "GET") =>
  Effect.gen(function* () {
    const client = yield* HttpClient.HttpClient
    const res = yield* client.execute(HttpClientRequest.make(method)(url).pipe(HttpClientRequest.setHeaders(headers)))
    const text = yield* res.text
    return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) }
  }).pipe(Effect.scoped, Effect.orDie)

type Reply = Effect.Effect.Success<ReturnType<typeof call>>

const API_CSP = "default-src 'none'; frame-ancestors 'none'"
const assertSecurityHeaders = (res: Reply, csp: string | null = API_CSP) => {
  assert.strictEqual(res.headers["x-content-type-options"], "nosniff")
  assert.strictEqual(res.headers["x-frame-options"], "DENY")
  assert.strictEqual(res.headers["referrer-policy"], "no-referrer")
  assert.strictEqual(res.headers["cross-origin-resource-policy"], "same-site")
  if (csp !== null) assert.strictEqual(res.headers["content-security-policy"], csp)
}
const corsHeaderNames = (res: Reply) => Object.keys(res.headers).filter((h) => h.startsWith("access-control-"))

const sha256Hex = (text: string) => createHash("sha256").update(text).digest("hex")
const PLAIN_KEY = "plain-key-0123456789abcdef"
const HASHED_KEY = "hashed-key-fedcba9876543210"
const OTHER_KEY = "other-key-00112233445566778899"

describe("security, everything off (the default)", () => {
  describe("server defaults", () => {
    const run = serving({})
    it("serves data without a key, with security headers and no CORS or rate-limit headers", () =>
      run(Effect.gen(function* () {
        const res = yield* call("/symbols", { origin: "https://app.example.com" })
        assert.strictEqual(res.status, 200)
        assertSecurityHeaders(res)
        assert.deepStrictEqual(corsHeaderNames(res), [])
        assert.isUndefined(res.headers["x-ratelimit-limit"])
        assert.isUndefined(res.headers["strict-transport-security"])
        assert.strictEqual((yield* call("/health")).status, 200)
        const csv = yield* call("/bi/latest_prices.csv")
        assert.strictEqual(csv.status, 200)
        assert.match(csv.headers["cache-control"]!, /^public, max-age=\d+$/)
      }))
    )

    it("puts the security headers on 404s and on decode failures too", () =>
      run(Effect.gen(function* () {
        const missing = yield* call("/no-such-route")
        assert.strictEqual(missing.status, 404)
        assert.include(missing.headers["content-type"]!, "application/json")
        assert.strictEqual(missing.json().error, "NotFound")
        assertSecurityHeaders(missing)
        const wrongMethod = yield* call("/trades/latest?symbol=BTCUSDT", {}, "POST")
        assert.strictEqual(wrongMethod.status, 405)
        assert.strictEqual(wrongMethod.headers["allow"], "GET, HEAD, OPTIONS")
        assertSecurityHeaders(wrongMethod)
        const bad = yield* call("/trades/latest?symbol=BTCUSDT&limit=zero")
        assert.strictEqual(bad.status, 400)
        assert.strictEqual(bad.json().message, "invalid query: limit must be a whole number from 1 to 1000")
        assertSecurityHeaders(bad)
      }))
    )

    it("gives /docs a CSP that allows exactly its inline script, by hash", () =>
      run(Effect.gen(function* () {
        const docs = yield* call("/docs")
        assert.strictEqual(docs.status, 200)
        assertSecurityHeaders(docs, null)
        const csp = docs.headers["content-security-policy"]!
        const scripts = [...docs.text.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)].filter(
          (m) => !m[1]!.includes("application/json")
        )
        assert.strictEqual(scripts.length, 1)
        const hash = createHash("sha256").update(scripts[0]![2]!).digest("base64")
        assert.include(csp, `script-src 'sha256-${hash}';`)
        assert.notInclude(csp, "unsafe-eval")
        assert.include(csp, "default-src 'none'")
        assert.include(csp, "connect-src 'self'")
        assert.include(csp, "frame-ancestors 'none'")
        // The spec document is an API response like any other.
        assertSecurityHeaders(yield* call("/openapi.json"))
      }))
    )
  })
})

describe("security, API keys", () => {
  describe("keys, docs private", () => {
    const run = serving({ API_KEYS: `${PLAIN_KEY}, sha256:${sha256Hex(HASHED_KEY).toUpperCase()}` })
    it("answers 401 without a key or with a wrong one, in JSON with security headers", () =>
      run(Effect.gen(function* () {
        const none = yield* call("/symbols")
        assert.strictEqual(none.status, 401)
        assert.strictEqual(none.json().error, "Unauthorized")
        assert.include(none.json().message, "x-api-key")
        assert.include(none.headers["content-type"]!, "application/json")
        assert.include(none.headers["www-authenticate"]!, 'header="x-api-key"')
        assert.strictEqual(none.headers["cache-control"], "no-store")
        assertSecurityHeaders(none)
        const wrong = yield* call("/symbols", { "x-api-key": "not-the-key-0123456789" })
        assert.strictEqual(wrong.status, 401)
        assert.include(wrong.json().message, "not valid")
        // The hash itself is not a key.
        const hash = yield* call("/symbols", { "x-api-key": `sha256:${sha256Hex(HASHED_KEY)}` })
        assert.strictEqual(hash.status, 401)
        // Unknown routes and methods do not reveal themselves without a key.
        assert.strictEqual((yield* call("/no-such-route")).status, 401)
        assert.strictEqual((yield* call("/symbols", {}, "POST")).status, 401)
        assert.strictEqual((yield* call("/symbols", {}, "OPTIONS")).status, 401)
      }))
    )

    it("serves a plain key and a key configured by its sha256", () =>
      run(Effect.gen(function* () {
        const plain = yield* call("/symbols", { "x-api-key": PLAIN_KEY })
        assert.strictEqual(plain.status, 200)
        assertSecurityHeaders(plain)
        assert.strictEqual((yield* call("/trades/latest?symbol=BTCUSDT", { "x-api-key": HASHED_KEY })).status, 200)
        const missing = yield* call("/no-such-route", { "x-api-key": PLAIN_KEY })
        assert.strictEqual(missing.status, 404)
        assert.strictEqual(missing.json().error, "NotFound")
        assertSecurityHeaders(missing)
        const wrongMethod = yield* call("/symbols", { "x-api-key": PLAIN_KEY }, "POST")
        assert.strictEqual(wrongMethod.status, 405)
        assert.strictEqual(wrongMethod.headers["allow"], "GET, HEAD, OPTIONS")
        assert.strictEqual(wrongMethod.json().error, "MethodNotAllowed")
        assertSecurityHeaders(wrongMethod)
        // Keyed data must not sit in a shared cache: the BI CSVs' "public" becomes "private".
        const csv = yield* call("/bi/latest_prices.csv", { "x-api-key": PLAIN_KEY })
        assert.strictEqual(csv.status, 200)
        assert.match(csv.headers["cache-control"]!, /^private, max-age=\d+$/)
        const notModified = yield* call("/bi/latest_prices.csv", { "x-api-key": PLAIN_KEY, "if-none-match": csv.headers["etag"]! })
        assert.strictEqual(notModified.status, 304)
        assert.match(notModified.headers["cache-control"]!, /^private/)
        assertSecurityHeaders(notModified)
      }))
    )

    it("keeps /health public and puts the docs behind the key", () =>
      run(Effect.gen(function* () {
        assert.strictEqual((yield* call("/health")).status, 200)
        assert.strictEqual((yield* call("/health?verbose=1")).status, 200)
        assert.strictEqual((yield* call("/docs")).status, 401)
        assert.strictEqual((yield* call("/openapi.json")).status, 401)
        assert.strictEqual((yield* call("/docs", { "x-api-key": PLAIN_KEY })).status, 200)
        assert.strictEqual((yield* call("/openapi.json", { "x-api-key": HASHED_KEY })).status, 200)
      }))
    )
  })

  describe("keys, public docs, HSTS", () => {
    const run = serving({ API_KEYS: PLAIN_KEY, API_PUBLIC_DOCS: "true", HSTS: "true" })
    it("API_PUBLIC_DOCS opens the docs only; HSTS adds strict-transport-security", () =>
      run(Effect.gen(function* () {
        const docs = yield* call("/docs")
        assert.strictEqual(docs.status, 200)
        assert.strictEqual((yield* call("/openapi.json")).status, 200)
        const data = yield* call("/symbols")
        assert.strictEqual(data.status, 401)
        for (const res of [docs, data]) assert.strictEqual(res.headers["strict-transport-security"], "max-age=31536000; includeSubDomains")
      }))
    )
  })
})

describe("security, rate limiting", () => {
  const from = (address: string, headers: Record<string, string> = {}) => ({ "x-forwarded-for": address, ...headers })

  describe("addresses behind one proxy", () => {
    const run = serving({ RATE_LIMIT_PER_MINUTE: "60", RATE_LIMIT_BURST: "3", TRUST_PROXY: "true" })
    it("answers 429 with Retry-After once a client's burst is spent", () =>
      run(Effect.gen(function* () {
        for (const remaining of ["2", "1", "0"]) {
          const ok = yield* call("/symbols", from("203.0.113.1"))
          assert.strictEqual(ok.status, 200)
          assert.strictEqual(ok.headers["x-ratelimit-limit"], "3")
          assert.strictEqual(ok.headers["x-ratelimit-remaining"], remaining)
        }
        const limited = yield* call("/symbols", from("203.0.113.1"))
        assert.strictEqual(limited.status, 429)
        assert.strictEqual(limited.headers["retry-after"], "1")
        assert.strictEqual(limited.headers["x-ratelimit-limit"], "3")
        assert.strictEqual(limited.headers["x-ratelimit-remaining"], "0")
        assert.strictEqual(limited.json().error, "TooManyRequests")
        assertSecurityHeaders(limited)
        // Unknown routes and methods count too, and their 404s and 405s carry the headers.
        const other = yield* call("/no-such-route", from("203.0.113.5"))
        assert.strictEqual(other.status, 404)
        assert.strictEqual(other.headers["x-ratelimit-remaining"], "2")
        const wrongMethod = yield* call("/symbols", from("203.0.113.5"), "POST")
        assert.strictEqual(wrongMethod.status, 405)
        assert.strictEqual(wrongMethod.headers["x-ratelimit-remaining"], "1")
      }))
    )

    it("keeps a bucket per client, and ignores x-forwarded-for entries the client wrote itself", () =>
      run(Effect.gen(function* () {
        for (let i = 0; i < 3; i++) yield* call("/symbols", from("203.0.113.2"))
        assert.strictEqual((yield* call("/symbols", from("203.0.113.2"))).status, 429)
        assert.strictEqual((yield* call("/symbols", from("203.0.113.3"))).status, 200)
        // A client prepending a made-up address is still the address the proxy saw.
        assert.strictEqual((yield* call("/symbols", from("198.51.100.7, 203.0.113.2"))).status, 429)
        // Without keys configured, an x-api-key header does not buy a fresh bucket.
        assert.strictEqual((yield* call("/symbols", from("203.0.113.2", { "x-api-key": OTHER_KEY }))).status, 429)
      }))
    )

    it("never limits /health", () =>
      run(Effect.gen(function* () {
        for (let i = 0; i < 8; i++) {
          const res = yield* call("/health", from("203.0.113.4"))
          assert.strictEqual(res.status, 200)
          assert.isUndefined(res.headers["x-ratelimit-limit"])
        }
        assert.strictEqual((yield* call("/symbols", from("203.0.113.4"))).status, 200)
      }))
    )

    it("refills over time by the Effect Clock", () =>
      run(Effect.gen(function* () {
        for (let i = 0; i < 3; i++) yield* call("/symbols", from("203.0.113.6"))
        const limited = yield* call("/symbols", from("203.0.113.6"))
        assert.strictEqual(limited.status, 429)
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* call("/symbols", from("203.0.113.6"))).status, 200)
        assert.strictEqual((yield* call("/symbols", from("203.0.113.6"))).status, 429)
        yield* TestClock.adjust("3 seconds")
        for (let i = 0; i < 3; i++) assert.strictEqual((yield* call("/symbols", from("203.0.113.6"))).status, 200)
      }))
    )
  })

  describe("keys and addresses", () => {
    const run = serving({ RATE_LIMIT_PER_MINUTE: "60", RATE_LIMIT_BURST: "3", TRUST_PROXY: "1", API_KEYS: `${PLAIN_KEY},${OTHER_KEY}` })
      it("throttles key guessing by address; each valid key has its own bucket", () =>
        run(Effect.gen(function* () {
          for (let i = 0; i < 3; i++) {
            const guess = yield* call("/symbols", from("192.0.2.1", { "x-api-key": `guess-${i}-0123456789abcdef` }))
            assert.strictEqual(guess.status, 401)
            assert.strictEqual(guess.headers["x-ratelimit-remaining"], String(2 - i))
          }
          const throttled = yield* call("/symbols", from("192.0.2.1", { "x-api-key": "guess-3-0123456789abcdef" }))
          assert.strictEqual(throttled.status, 429)
          assertSecurityHeaders(throttled)
          // The same address with a valid key is a different client.
          for (let i = 0; i < 3; i++) assert.strictEqual((yield* call("/symbols", from("192.0.2.1", { "x-api-key": PLAIN_KEY }))).status, 200)
          assert.strictEqual((yield* call("/symbols", from("192.0.2.9", { "x-api-key": PLAIN_KEY }))).status, 429)
          assert.strictEqual((yield* call("/symbols", from("192.0.2.1", { "x-api-key": OTHER_KEY }))).status, 200)
        }))
      )
    }
  )
})

describe("security, CORS", () => {
  const allowed = "https://app.example.com"
  describe("two origins and keys", () => {
    const run = serving({ CORS_ORIGINS: `${allowed}, http://localhost:3000`, API_KEYS: PLAIN_KEY })
    it("an allowed origin gets CORS headers, on refusals too", () =>
      run(Effect.gen(function* () {
        const res = yield* call("/symbols", { origin: allowed, "x-api-key": PLAIN_KEY })
        assert.strictEqual(res.status, 200)
        assert.strictEqual(res.headers["access-control-allow-origin"], allowed)
        assert.strictEqual(res.headers["access-control-expose-headers"], "ETag, Link, x-next-cursor, Retry-After, x-ratelimit-limit, x-ratelimit-remaining")
        assert.include(res.headers["vary"]!, "Origin")
        assert.isUndefined(res.headers["access-control-allow-credentials"])
        assertSecurityHeaders(res)
        const refused = yield* call("/symbols", { origin: "http://localhost:3000" })
        assert.strictEqual(refused.status, 401)
        assert.strictEqual(refused.headers["access-control-allow-origin"], "http://localhost:3000")
      }))
    )

    it("answers an allowed preflight with 204, without asking for the key", () =>
      run(Effect.gen(function* () {
        const res = yield* call(
          "/trades/latest?symbol=BTCUSDT",
          { origin: allowed, "access-control-request-method": "GET", "access-control-request-headers": "x-api-key" },
          "OPTIONS"
        )
        assert.strictEqual(res.status, 204)
        assert.strictEqual(res.headers["access-control-allow-origin"], allowed)
        assert.strictEqual(res.headers["access-control-allow-methods"], "GET, HEAD, OPTIONS")
        assert.strictEqual(res.headers["access-control-allow-headers"], "x-api-key, content-type, if-none-match, last-event-id")
        assert.include(res.headers["vary"]!, "Origin")
        assertSecurityHeaders(res)
      }))
    )

    it("a disallowed origin gets no CORS headers but is otherwise served as usual", () =>
      run(Effect.gen(function* () {
        const res = yield* call("/symbols", { origin: "https://evil.example", "x-api-key": PLAIN_KEY })
        assert.strictEqual(res.status, 200)
        assert.deepStrictEqual(corsHeaderNames(res), [])
        assert.include(res.headers["vary"]!, "Origin")
        const preflight = yield* call(
          "/symbols",
          { origin: "https://evil.example", "access-control-request-method": "GET" },
          "OPTIONS"
        )
        assert.notStrictEqual(preflight.status, 204)
        assert.deepStrictEqual(corsHeaderNames(preflight), [])
        // Near misses are not the allowed origin.
        for (const origin of [`${allowed}.evil.example`, "http://app.example.com", `${allowed}:8443`]) {
          assert.deepStrictEqual(corsHeaderNames(yield* call("/health", { origin })), [], origin)
        }
      }))
    )
  })
})

describe("security settings", () => {
  const settingsFrom = (env: Record<string, string>) =>
    Effect.either(SecurityConfig).pipe(withEnv(env))
  const failureOf = (env: Record<string, string>) =>
    Effect.map(settingsFrom(env), (e) => (Either.isLeft(e) ? describeConfigError(e.left) : "no error"))
  const settingsOf = (env: Record<string, string>) =>
    Effect.flatMap(settingsFrom(env), (e): Effect.Effect<SecuritySettings> => (Either.isRight(e) ? Effect.succeed(e.right) : Effect.die(e.left)))

  it.effect("all off when nothing is set", () =>
    Effect.gen(function* () {
      const s = yield* settingsOf({})
      assert.isTrue(Option.isNone(s.apiKeys))
      assert.isTrue(Option.isNone(s.rateLimit))
      assert.isTrue(Option.isNone(s.corsOrigins))
      assert.strictEqual(s.trustProxy, 0)
      assert.isFalse(s.publicDocs)
      assert.isFalse(s.hsts)
      assert.isTrue(Option.isNone((yield* settingsOf({ RATE_LIMIT_PER_MINUTE: "0" })).rateLimit))
    })
  )

  it.effect("reads valid values", () =>
    Effect.gen(function* () {
      const s = yield* settingsOf({
        API_KEYS: `${PLAIN_KEY},,sha256:${sha256Hex(HASHED_KEY)}, ${PLAIN_KEY}`,
        RATE_LIMIT_PER_MINUTE: "120",
        TRUST_PROXY: "2",
        CORS_ORIGINS: "https://App.Example.com, http://localhost:3000",
        HSTS: "yes"
      })
      assert.strictEqual(Option.getOrThrow(s.apiKeys).length, 2)
      assert.deepStrictEqual(Option.getOrThrow(s.rateLimit), { perMinute: 120, burst: 120 })
      assert.strictEqual(s.trustProxy, 2)
      assert.deepStrictEqual(Option.getOrThrow(s.corsOrigins), ["https://app.example.com", "http://localhost:3000"])
      assert.isTrue(s.hsts)
      assert.strictEqual(Option.getOrThrow((yield* settingsOf({ CORS_ORIGINS: "*" })).corsOrigins), "*")
      assert.strictEqual((yield* settingsOf({ TRUST_PROXY: "true" })).trustProxy, 1)
    })
  )

  it.effect("names the variable, the value and what is accepted for a bad value", () =>
    Effect.gen(function* () {
      const rate = yield* failureOf({ RATE_LIMIT_PER_MINUTE: "abc" })
      assert.include(rate, 'RATE_LIMIT_PER_MINUTE="abc" is not valid: expected a whole number of requests per minute')
      const hash = yield* failureOf({ API_KEYS: "sha256:xyz" })
      assert.include(hash, 'API_KEYS entry 1 ("sha256:xyz") is not valid')
      assert.include(hash, "64 hex digits")
      const burst = yield* failureOf({ RATE_LIMIT_PER_MINUTE: "60", RATE_LIMIT_BURST: "-1" })
      assert.include(burst, 'RATE_LIMIT_BURST="-1" is not valid')
      assert.include(yield* failureOf({ TRUST_PROXY: "maybe" }), 'TRUST_PROXY="maybe" is not valid')
      assert.include(yield* failureOf({ HSTS: "sure" }), 'HSTS="sure" is not valid: expected true or false')
      assert.include(yield* failureOf({ API_PUBLIC_DOCS: "2" }), 'API_PUBLIC_DOCS="2" is not valid')
      const origin = yield* failureOf({ CORS_ORIGINS: "https://app.example.com/" })
      assert.include(origin, 'CORS_ORIGINS="https://app.example.com/" is not valid')
      assert.include(origin, "no trailing slash")
      assert.include(yield* failureOf({ CORS_ORIGINS: "*,https://app.example.com" }), "CORS_ORIGINS=")
      assert.include(yield* failureOf({ API_KEYS: " , " }), "API_KEYS=")
    })
  )

  it.effect("does not echo a malformed plain key, which is a secret", () =>
    Effect.gen(function* () {
      const short = yield* failureOf({ API_KEYS: `${PLAIN_KEY},hunter2` })
      assert.include(short, "API_KEYS entry 2 (a 7-character key, not shown) is not valid")
      assert.include(short, "at least 16 characters")
      assert.notInclude(short, "hunter2")
    })
  )

  it.effect("rejects RATE_LIMIT_BURST without RATE_LIMIT_PER_MINUTE", () =>
    Effect.gen(function* () {
      assert.include(yield* failureOf({ RATE_LIMIT_BURST: "10" }), "RATE_LIMIT_BURST=10 is set but RATE_LIMIT_PER_MINUTE is unset or 0")
    })
  )

  it.effect("stops the server from starting on a bad value", () =>
    Effect.gen(function* () {
      const started = yield* Effect.either(Layer.build(server({ RATE_LIMIT_PER_MINUTE: "abc" }))).pipe(Effect.scoped)
      assert.isTrue(Either.isLeft(started))
      if (Either.isLeft(started)) assert.include(describeConfigError(started.left as never), "RATE_LIMIT_PER_MINUTE")
    })
  )
})

describe("rate limiter", () => {
  it.effect("refuses past the burst, says when to retry, refills by the clock", () =>
    Effect.gen(function* () {
      const limiter = yield* makeRateLimiter({ perMinute: 1, burst: 2 })
      assert.isTrue((yield* limiter.take("a")).allowed)
      assert.isTrue((yield* limiter.take("a")).allowed)
      const refused = yield* limiter.take("a")
      assert.deepStrictEqual(refused, { allowed: false, limit: 2, remaining: 0, retryAfterSeconds: 60 })
      yield* TestClock.adjust("30 seconds")
      assert.strictEqual((yield* limiter.take("a")).retryAfterSeconds, 30)
      yield* TestClock.adjust("30 seconds")
      assert.isTrue((yield* limiter.take("a")).allowed)
      assert.isTrue((yield* limiter.take("b")).allowed)
    })
  )

  it.effect("holds a bounded number of buckets and drops idle ones", () =>
    Effect.gen(function* () {
      const limiter = yield* makeRateLimiter({ perMinute: 60, burst: 5 }, 100)
      for (let i = 0; i < 1_000; i++) yield* limiter.take(`client-${i}`)
      assert.strictEqual(yield* limiter.tracked, 100)
      yield* TestClock.adjust("5 seconds")
      yield* limiter.take("late")
      assert.strictEqual(yield* limiter.tracked, 1)
    })
  )

  it("finds the client address behind the configured number of proxies", () => {
    const request = (forwarded: string | undefined, remote = "10.0.0.2") =>
      HttpServerRequest.fromWeb(
        new Request("http://localhost/symbols", { headers: forwarded === undefined ? {} : { "x-forwarded-for": forwarded } })
      ).modify({ remoteAddress: remote })
    assert.strictEqual(clientAddress(request("203.0.113.1"), 0), "10.0.0.2")
    assert.strictEqual(clientAddress(request(undefined), 1), "10.0.0.2")
    assert.strictEqual(clientAddress(request("203.0.113.1"), 1), "203.0.113.1")
    assert.strictEqual(clientAddress(request("6.6.6.6, 203.0.113.1"), 1), "203.0.113.1")
    assert.strictEqual(clientAddress(request("6.6.6.6, 203.0.113.1, 10.0.0.1"), 2), "203.0.113.1")
    assert.strictEqual(clientAddress(request("203.0.113.1"), 5), "203.0.113.1")
    assert.strictEqual(clientAddress(request(undefined, "::ffff:127.0.0.1"), 0), "127.0.0.1")
    assert.strictEqual(clientAddress(request("2001:db8:1:2::7"), 1), "2001:db8:1:2::/64")
    assert.strictEqual(clientAddress(request("2001:db8:1:2:aaaa::9"), 1), "2001:db8:1:2::/64")
  })
})

import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Clock, Effect, Either, Option, TestClock } from "effect"
import { BinanceClient } from "../src/binance/BinanceClient.js"
import { isRetryable, retryPolicy } from "../src/binance/retry.js"
import type { TickerSymbol } from "../src/domain/Ticker.js"
import { driveClock, eventually, realDelay, withEnv } from "./support/effect.js"
import { type FakeBinance, startFakeBinance } from "./support/fakeBinance.js"

const BTC = "BTCUSDT" as TickerSymbol
const ETH = "ETHUSDT" as TickerSymbol

let fake: FakeBinance
beforeAll(async () => {
  fake = await startFakeBinance()
})
afterAll(() => fake.close())

const tickerRequests = () => fake.requests.filter((r) => r.path === "/api/v3/ticker/24hr").length

/** The client against the fake, as production builds it (undici, config from the environment). */
const withClient = <A, E>(
  f: (client: BinanceClient) => Effect.Effect<A, E>,
  env: Record<string, string> = {}
) =>
  Effect.flatMap(BinanceClient, f).pipe(
    Effect.provide(BinanceClient.Default),
    withEnv({ BINANCE_BASE_URL: fake.url, ...env })
  )

const fetchWithRetry = (client: BinanceClient, symbols: ReadonlyArray<TickerSymbol>) =>
  client.ticker24h(symbols).pipe(Effect.retry({ schedule: retryPolicy, while: isRetryable }))

describe("BinanceClient against a fake Binance", () => {
  it.live("fetches all symbols in one weight-2 request and records the used weight", () =>
    withClient((client) =>
      Effect.gen(function* () {
        const before = fake.requests.length
        const batch = yield* client.ticker24h([BTC, ETH])
        assert.strictEqual(fake.requests.length - before, 1)
        const request = fake.requests.at(-1)!
        assert.deepStrictEqual(JSON.parse(request.query.get("symbols")!), ["BTCUSDT", "ETHUSDT"])
        assert.deepStrictEqual(batch.tickers.map((t) => t.symbol), ["BTCUSDT", "ETHUSDT"])
        assert.match(batch.tickers[0]!.lastPrice, /^\d+\.\d+$/)
        const weight = yield* client.usedWeight
        assert.isTrue(Option.isSome(weight) && weight.value.usedWeight1m >= 2)
      })
    )
  )

  it.effect("on 429 waits the Retry-After seconds before the next request", () =>
    withClient((client) =>
      Effect.gen(function* () {
        fake.enqueueFaults({ kind: "status", status: 429, retryAfterSeconds: 30 })
        const before = tickerRequests()
        const fiber = yield* Effect.fork(fetchWithRetry(client, [BTC]))
        yield* eventually(() => tickerRequests() === before + 1, 5_000, "the first request")
        yield* TestClock.adjust("29 seconds")
        yield* realDelay(100)
        assert.strictEqual(tickerRequests(), before + 1, "no request may leave before Retry-After")
        yield* TestClock.adjust("1 second")
        const batch = yield* driveClock(fiber, "100 millis")
        assert.strictEqual(tickerRequests(), before + 2)
        assert.strictEqual(batch.tickers.length, 1)
      })
    )
  )

  it.effect("on 418 does not retry, and holds every request until the ban is over", () =>
    withClient((client) =>
      Effect.gen(function* () {
        fake.enqueueFaults({ kind: "status", status: 418, retryAfterSeconds: 120 })
        const before = tickerRequests()
        const failure = yield* Effect.flip(fetchWithRetry(client, [BTC]))
        assert.strictEqual(failure._tag, "RateLimited")
        assert.include(failure.message, "banned")
        assert.strictEqual(tickerRequests(), before + 1)
        const next = yield* Effect.fork(client.ticker24h([BTC]))
        yield* TestClock.adjust("119 seconds")
        yield* realDelay(100)
        assert.strictEqual(tickerRequests(), before + 1, "the poller must sit out the ban")
        yield* TestClock.adjust("1 second")
        yield* driveClock(next, "100 millis")
        assert.strictEqual(tickerRequests(), before + 2)
      })
    )
  )

  it.effect("retries 5xx answers with backoff and then succeeds", () =>
    withClient((client) =>
      Effect.gen(function* () {
        fake.enqueueFaults({ kind: "status", status: 500 }, { kind: "status", status: 502 }, { kind: "status", status: 503 })
        const before = tickerRequests()
        const fiber = yield* Effect.fork(fetchWithRetry(client, [BTC, ETH]))
        const batch = yield* driveClock(fiber, "100 millis")
        assert.strictEqual(tickerRequests() - before, 4)
        assert.strictEqual(batch.tickers.length, 2)
      })
    )
  )

  it.effect("gives up after the capped number of retries with BinanceUnavailable", () =>
    withClient((client) =>
      Effect.gen(function* () {
        fake.setPersistentFault({ kind: "status", status: 503 })
        const before = tickerRequests()
        const fiber = yield* Effect.fork(Effect.flip(fetchWithRetry(client, [BTC])))
        const failure = yield* driveClock(fiber, "1 second")
        fake.setPersistentFault(undefined)
        assert.strictEqual(failure._tag, "BinanceUnavailable")
        assert.strictEqual(tickerRequests() - before, 5, "one try and four retries")
      })
    )
  )

  it.live("times out a slow answer and retries it", () =>
    withClient(
      (client) =>
        Effect.gen(function* () {
          fake.enqueueFaults({ kind: "slow", delayMs: 2_000 })
          const before = tickerRequests()
          const attempt = yield* Effect.either(client.ticker24h([BTC]))
          assert.isTrue(Either.isLeft(attempt) && attempt.left._tag === "BinanceUnavailable" && attempt.left.reason === "timeout")
          const batch = yield* fetchWithRetry(client, [BTC])
          assert.strictEqual(batch.tickers.length, 1)
          assert.strictEqual(tickerRequests() - before, 2)
        }),
      { BINANCE_TIMEOUT_SECONDS: "0.3" }
    )
  )

  it.live("maps network failures (connection reset) to BinanceUnavailable", () =>
    withClient((client) =>
      Effect.gen(function* () {
        fake.enqueueFaults({ kind: "reset" })
        const failure = yield* Effect.flip(client.ticker24h([BTC]))
        assert.strictEqual(failure._tag, "BinanceUnavailable")
        assert.strictEqual((failure as { reason: string }).reason, "network")
      })
    )
  )

  it.live("turns 451 into RegionRestricted telling the user to set BINANCE_BASE_URL, without retrying", () =>
    withClient((client) =>
      Effect.gen(function* () {
        fake.enqueueFaults({ kind: "status", status: 451 })
        const before = tickerRequests()
        const failure = yield* Effect.flip(fetchWithRetry(client, [BTC]))
        assert.strictEqual(failure._tag, "RegionRestricted")
        assert.include(failure.message, "BINANCE_BASE_URL")
        assert.strictEqual(tickerRequests() - before, 1)
      })
    )
  )

  it.live("reports a malformed body as MalformedResponse and does not retry it", () =>
    withClient((client) =>
      Effect.gen(function* () {
        fake.enqueueFaults({ kind: "malformed" })
        const before = tickerRequests()
        const failure = yield* Effect.flip(fetchWithRetry(client, [BTC]))
        assert.strictEqual(failure._tag, "MalformedResponse")
        assert.strictEqual(tickerRequests() - before, 1)
        fake.enqueueFaults({ kind: "wrongShape" })
        assert.strictEqual((yield* Effect.flip(client.ticker24h([BTC])))._tag, "MalformedResponse")
      })
    )
  )

  it.live("names the invalid symbol on -1121", () =>
    withClient((client) =>
      Effect.gen(function* () {
        const failure = yield* Effect.flip(client.ticker24h(["NOPEUSDT" as TickerSymbol]))
        assert.strictEqual(failure._tag, "InvalidSymbols")
        assert.include(failure.message, "NOPEUSDT")
        assert.isFalse(yield* client.symbolExists("NOPEUSDT" as TickerSymbol))
        assert.isTrue(yield* client.symbolExists(BTC))
      })
    )
  )

  it.effect("backs off exponentially with jitter between attempts", () =>
    Effect.gen(function* () {
      const attempts: Array<number> = []
      const fiber = yield* Effect.fork(
        Clock.currentTimeMillis.pipe(
          Effect.tap((now) => Effect.sync(() => attempts.push(now))),
          Effect.zipRight(Effect.fail("down")),
          Effect.retry(retryPolicy),
          Effect.either
        )
      )
      yield* driveClock(fiber, "50 millis")
      assert.strictEqual(attempts.length, 5)
      const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!)
      gaps.forEach((gap, i) => {
        const base = 500 * 2 ** i
        assert.isAtLeast(gap, base * 0.8 - 50)
        assert.isAtMost(gap, base * 1.2 + 50)
      })
    })
  )
})

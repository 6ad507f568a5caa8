import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, Layer, Option, Schema, TestClock } from "effect"
import { runProducer, pollOnce } from "../src/market/PollSource.js"
import { BinanceClient, type TickerBatch } from "../src/binance/BinanceClient.js"
import { BinanceUnavailable, RateLimited } from "../src/binance/BinanceError.js"
import { TickerEventJson, type TickerSymbol, toTick } from "../src/domain/Ticker.js"
import { Health } from "../src/status/Health.js"
import { advance, eventually, realDelay, withEnv } from "./support/effect.js"
import { type FakeBinance, startFakeBinance } from "./support/fakeBinance.js"
import { makeBrokerSpy } from "./support/spies.js"

let fake: FakeBinance
beforeAll(async () => {
  fake = await startFakeBinance()
})
afterAll(() => fake.close())

const ticker = (symbol: string) => ({
  symbol,
  lastPrice: "67450.12000000",
  priceChangePercent: "1.870",
  volume: "24567.12300000",
  openTime: 1_709_560_000_000,
  closeTime: 1_709_646_317_123
})

/** A scripted BinanceClient: each call runs the next step (the last one repeats), recording when it started. */
const scriptedClient = (steps: ReadonlyArray<(symbols: ReadonlyArray<TickerSymbol>) => Effect.Effect<TickerBatch, any>>) => {
  const calls: Array<number> = []
  const layer = Layer.succeed(
    BinanceClient,
    new BinanceClient({
      baseUrl: "http://scripted",
      ticker24h: (symbols) =>
        Effect.gen(function* () {
          calls.push(yield* Clock.currentTimeMillis)
          return yield* steps[Math.min(calls.length - 1, steps.length - 1)]!(symbols)
        }),
      klines: () => Effect.die("not used by the producer"),
      aggTrades: () => Effect.die("not used by the producer"),
      symbolExists: () => Effect.succeed(true),
      usedWeight: Effect.succeed(Option.none()),
      blockedUntil: Effect.succeed(0)
    })
  )
  return { calls, layer }
}
const ok = (symbols: ReadonlyArray<TickerSymbol>) => Effect.succeed<TickerBatch>({ tickers: symbols.map(ticker), skipped: [] })

describe("producer", () => {
  it.live("turns one request into one contract event per symbol, prices as strings", () =>
    Effect.gen(function* () {
      const spy = makeBrokerSpy()
      const ticks = yield* pollOnce(["BTCUSDT", "ETHUSDT"] as Array<TickerSymbol>).pipe(
        Effect.provide(Layer.mergeAll(BinanceClient.Default, spy.layer, Health.Default)),
        withEnv({ BINANCE_BASE_URL: fake.url })
      )
      assert.strictEqual(ticks.length, 2)
      assert.deepStrictEqual(spy.published, ticks)
      for (const tick of ticks) {
        const event = tick.event
        // The producer builds the Tick itself: the same identity and price as decoding the event gives.
        assert.deepStrictEqual(tick, toTick(event))
        assert.deepStrictEqual(Object.keys(event), [
          "timestamp_utc",
          "symbol",
          "lastPrice",
          "priceChangePercent",
          "volume",
          "source",
          "event_time"
        ])
        assert.match(event.timestamp_utc, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$/)
        assert.strictEqual(event.source, "binance_api_v3_ticker_24hr")
        assert.isString(event.lastPrice)
        // Every event survives the broker's wire format unchanged.
        assert.deepStrictEqual(Schema.decodeSync(TickerEventJson)(Schema.encodeSync(TickerEventJson)(event)), event)
      }
    })
  )

  it.effect("polls on a fixed cadence without drift or pile-up after a slow cycle", () =>
    Effect.gen(function* () {
      const slow = (symbols: ReadonlyArray<TickerSymbol>) => Effect.delay(ok(symbols), Duration.seconds(90))
      const client = scriptedClient([ok, slow, ok])
      const spy = makeBrokerSpy()
      const fiber = yield* runProducer.pipe(
        Effect.provide(Layer.mergeAll(client.layer, spy.layer, Health.Default)),
        withEnv({ POLL_INTERVAL_SECONDS: "60" }),
        Effect.fork
      )
      yield* advance("300 seconds", "10 seconds")
      yield* Fiber.interrupt(fiber)
      // 0 and 60 on the grid; the 60 s cycle takes 90 s, so the next runs at once (150), then back on the grid.
      assert.deepStrictEqual(client.calls.map((t) => t / 1000), [0, 60, 150, 180, 240, 300])
    })
  )

  it.effect("keeps polling after failures and reports them on /health", () =>
    Effect.gen(function* () {
      const down = () => Effect.fail(new BinanceUnavailable({ reason: "network", detail: "ECONNREFUSED" }))
      // one try and four retries fail, so the first cycle fails; the second succeeds
      const client = scriptedClient([down, down, down, down, down, ok])
      const spy = makeBrokerSpy()
      const fiber = yield* Effect.gen(function* () {
        const health = yield* Health
        const running = yield* Effect.fork(runProducer)
        // the first cycle retries with backoff before it gives up
        yield* advance("59 seconds")
        const failed = yield* health.producer
        assert.strictEqual(failed.state, "down")
        assert.include(failed.last_error ?? "", "ECONNREFUSED")
        // the fixed cadence is anchored where the first cycle ended (~7.5 s of retries)
        yield* advance("10 seconds")
        yield* eventually(() => spy.published.length === 2)
        yield* realDelay(5)
        const recovered = yield* health.producer
        assert.strictEqual(recovered.state, "up")
        assert.isNotNull(recovered.last_success_at)
        return running
      }).pipe(
        Effect.provide(Layer.mergeAll(client.layer, spy.layer, Health.Default)),
        withEnv({ POLL_INTERVAL_SECONDS: "60" })
      )
      yield* Fiber.interrupt(fiber)
    })
  )

  it.effect("a 418 ban fails the cycle without retrying and the next cycle still comes", () =>
    Effect.gen(function* () {
      const banned = () => Effect.fail(new RateLimited({ status: 418, retryAfter: Duration.seconds(120) }))
      const client = scriptedClient([banned, ok])
      const spy = makeBrokerSpy()
      yield* Effect.gen(function* () {
        const health = yield* Health
        const running = yield* Effect.fork(runProducer)
        yield* realDelay(5)
        assert.strictEqual(client.calls.length, 1, "a ban is never retried within the cycle")
        assert.include((yield* health.producer).last_error ?? "", "HTTP 418")
        yield* TestClock.adjust("60 seconds")
        yield* eventually(() => spy.published.length === 2)
        yield* Fiber.interrupt(running)
      }).pipe(Effect.provide(Layer.mergeAll(client.layer, spy.layer, Health.Default)), withEnv({ POLL_INTERVAL_SECONDS: "60" }))
    })
  )

  it.effect("after waiting out a ban, the request that ends it is not followed by a second one back to back", () =>
    Effect.gen(function* () {
      // the real client against the fake Binance: banned for 30 s at the first request
      const requests = () => fake.requests.filter((r) => r.path === "/api/v3/ticker/24hr").length
      const before = requests()
      fake.enqueueFaults({ kind: "status", status: 418, retryAfterSeconds: 30 })
      const spy = makeBrokerSpy()
      const fiber = yield* runProducer.pipe(
        Effect.provide(Layer.mergeAll(BinanceClient.Default, spy.layer, Health.Default)),
        withEnv({ BINANCE_BASE_URL: fake.url, POLL_INTERVAL_SECONDS: "5" }),
        Effect.fork
      )
      yield* eventually(() => requests() === before + 1, 5_000, "the banned request")
      yield* advance("29500 millis", "500 millis")
      assert.strictEqual(requests(), before + 1, "no request during the ban")
      yield* advance("500 millis", "500 millis")
      yield* eventually(() => spy.published.length === 2, 5_000, "the request that ends the ban")
      assert.strictEqual(requests(), before + 2)
      // the cadence restarts from the end of the wait: nothing more before 35 s
      yield* advance("4500 millis", "500 millis")
      yield* realDelay(50)
      assert.strictEqual(requests(), before + 2, "a second request followed the first back to back")
      yield* advance("500 millis", "500 millis")
      yield* eventually(() => requests() === before + 3, 5_000, "the next cycle at 35 s")
      yield* Fiber.interrupt(fiber)
    })
  )

  it.live("drops a symbol Binance does not know, names it, and keeps polling the others", () =>
    Effect.gen(function* () {
      const spy = makeBrokerSpy()
      yield* Effect.gen(function* () {
        const health = yield* Health
        const running = yield* Effect.fork(runProducer)
        yield* eventually(() => spy.published.length >= 2)
        assert.deepStrictEqual(
          spy.published.map((e) => e.symbol),
          ["BTCUSDT", "ETHUSDT"]
        )
        assert.deepStrictEqual((yield* health.producer).symbols, ["BTCUSDT", "ETHUSDT"])
        yield* Fiber.interrupt(running)
      }).pipe(
        Effect.provide(Layer.mergeAll(BinanceClient.Default, spy.layer, Health.Default)),
        withEnv({ BINANCE_BASE_URL: fake.url, SYMBOLS: "BTCUSDT,NOPEUSDT,ETHUSDT", POLL_INTERVAL_SECONDS: "3600" })
      )
    })
  )
})

import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer, Logger, Schema, TestClock } from "effect"
import * as AppConfig from "../src/Config.js"
import { Broker } from "../src/broker/Broker.js"
import { StopRequested } from "../src/app/Shutdown.js"
import {
  formatScaled,
  makeSimMarket,
  offsetMicros,
  profileOf,
  SIMULATED_SOURCE,
  type SimSettings
} from "../src/domain/SimMarket.js"
import {
  formatInstantMicros,
  parseInstantMicros,
  type Tick,
  TickerEvent,
  TickerEventJson,
  toTick
} from "../src/domain/Ticker.js"
import { MarketSource } from "../src/market/MarketSource.js"
import { makeSimSource, runSim, SIM_MAX_BATCH, SimSourceLive } from "../src/market/SimSource.js"
import { Health } from "../src/status/Health.js"
import { withEnv } from "./support/effect.js"
import { SIM_START, simSettings, sym } from "./support/sim.js"

const take = (s: SimSettings, n: number) => makeSimMarket(s).takeDue(Number.MAX_SAFE_INTEGER, n)

const isEvent = Schema.is(TickerEvent)
const decodeJson = Schema.decodeUnknownEither(TickerEventJson)

describe("simulated market (pure)", () => {
  it("is deterministic: the same seed, settings and start give the same events; another seed does not", () => {
    const a = take(simSettings(), 5_000)
    const b = take(simSettings(), 5_000)
    assert.deepStrictEqual(a, b)
    const c = take(simSettings({ seed: 43 }), 5_000)
    assert.deepStrictEqual(
      c.map((t) => t.event.timestamp_utc),
      a.map((t) => t.event.timestamp_utc)
    )
    assert.notDeepEqual(
      c.map((t) => t.event.lastPrice),
      a.map((t) => t.event.lastPrice)
    )
    // Taking the stream in other batch sizes changes nothing.
    const market = makeSimMarket(simSettings())
    const pieces: Array<Tick> = []
    while (pieces.length < 5_000) pieces.push(...market.takeDue(Number.MAX_SAFE_INTEGER, 333))
    assert.deepStrictEqual(pieces.slice(0, 5_000), a)
  })

  it("produces contract events exactly: every field valid, decimals as strings, source simulated, Tick consistent", () => {
    // 100/s over 4 symbols for 300 s: crosses seconds and minutes; includes a symbol with a hashed profile.
    const s = simSettings({ eventsPerSecond: 100, symbols: ["BTCUSDT", "ETHUSDT", "DOGEUSDT", "FOOBARUSDT"].map(sym) })
    const ticks = take(s, 30_000)
    assert.strictEqual(ticks.length, 30_000)
    const last = new Map<string, number>()
    ticks.forEach((tick, k) => {
      const e = tick.event
      assert.isTrue(isEvent(e), `event ${k} is not a contract event: ${JSON.stringify(e)}`)
      const wire = decodeJson(JSON.stringify(e))
      assert.isTrue(Either.isRight(wire), `event ${k} does not decode from JSON`)
      assert.strictEqual(e.source, SIMULATED_SOURCE)
      assert.strictEqual(e.symbol, s.symbols[k % 4])
      assert.match(e.timestamp_utc, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$/)
      assert.strictEqual(tick.tsMicros, SIM_START + offsetMicros(k, 100))
      assert.strictEqual(e.timestamp_utc, formatInstantMicros(tick.tsMicros))
      assert.strictEqual(e.event_time, formatInstantMicros(Math.floor(tick.tsMicros / 1000) * 1000))
      assert.deepStrictEqual(toTick(e), tick)
      assert.isAbove(tick.tsMicros, last.get(e.symbol) ?? 0)
      last.set(e.symbol, tick.tsMicros)
    })
  })

  it("places event k at start + k / rate with microsecond precision, strictly increasing", () => {
    const ticks = take(simSettings({ eventsPerSecond: 3, symbols: [sym("BTCUSDT")] }), 7)
    assert.deepStrictEqual(
      ticks.map((t) => t.tsMicros - SIM_START),
      [0, 333_333, 666_666, 1_000_000, 1_333_333, 1_666_666, 2_000_000]
    )
    const fast = take(simSettings({ eventsPerSecond: 200_000, symbols: [sym("BTCUSDT")] }), 1_000)
    for (let i = 1; i < fast.length; i++) assert.strictEqual(fast[i]!.tsMicros - fast[i - 1]!.tsMicros, 5)
    // exact for any k, where k * 10^6 would exceed 2^53
    const k = 6_300_000_000_000
    assert.strictEqual(BigInt(offsetMicros(k, 7)), (BigInt(k) * 1_000_000n) / 7n)
    assert.strictEqual(BigInt(offsetMicros(k + 123, 199_999)), (BigInt(k + 123) * 1_000_000n) / 199_999n)
  })

  it("walks prices realistically: positive, on the symbol's tick size, within a plausible band", () => {
    const symbols = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "PEPEUSDT", "ZZTOPUSDT"].map(sym)
    // 5 events/s over 5 symbols for ~11 hours of simulated time: 40,000 steps per symbol.
    const ticks = take(simSettings({ eventsPerSecond: 5, symbols }), 200_000)
    for (const symbol of symbols) {
      const profile = profileOf(symbol)
      const mine = ticks.filter((t) => t.symbol === symbol)
      const decimals = new RegExp(`^\\d+\\.\\d{${profile.priceDecimals}}$`)
      // log-price sd over the day of warm-up plus 11 h, generously: 6 sd either way
      const hours = 24 + mine.length / 3_600
      const band = 6 * profile.annualVolatility * Math.sqrt(hours / (365 * 24)) + 0.1
      let moves = 0
      const bad: Array<string> = []
      for (let i = 0; i < mine.length && bad.length === 0; i++) {
        const t = mine[i]!
        const e = t.event
        if (!decimals.test(e.lastPrice)) bad.push(`price ${e.lastPrice} is not on the tick size`)
        if (!(t.price > 0)) bad.push(`price ${e.lastPrice} is not positive`)
        if (Math.abs(Math.log(t.price / profile.basePrice)) >= band) bad.push(`price ${e.lastPrice} is implausible`)
        if (!/^\d+\.\d{8}$/.test(e.volume)) bad.push(`volume ${e.volume} does not have 8 decimals`)
        if (!/^-?\d+\.\d{3}$/.test(e.priceChangePercent)) bad.push(`change ${e.priceChangePercent} does not have 3 decimals`)
        if (Math.abs(Number(e.priceChangePercent)) >= 60) bad.push(`change ${e.priceChangePercent} is implausible`)
        if (i > 0 && t.price !== mine[i - 1]!.price) moves++
      }
      assert.deepStrictEqual(bad, [], symbol)
      // the walk moves (PEPE's tick is ~0.1 % of its price, so it moves less often)
      assert.isAbove(moves, mine.length / 50, symbol)
    }
    assert.strictEqual(profileOf("BTCUSDT").basePrice, 68_000)
    assert.strictEqual(profileOf("BTCUSDT").priceDecimals, 2)
    assert.strictEqual(profileOf("ETHUSDT").priceDecimals, 2)
    assert.strictEqual(profileOf("PEPEUSDT").priceDecimals, 8)
    // another name gets a profile from a hash of it: the same every time, with a fitting tick size
    const other = profileOf("ZZTOPUSDT")
    assert.deepStrictEqual(profileOf("ZZTOPUSDT"), other)
    assert.isAtLeast(other.basePrice * 10 ** other.priceDecimals, 100)
  })

  it("keeps per-event volatility near the annual volatility (returns scale with the time step)", () => {
    const rate = 1_000
    const ticks = take(simSettings({ eventsPerSecond: rate, symbols: [sym("BTCUSDT")] }), 100_000)
    let sum = 0
    let sumSq = 0
    for (let i = 1; i < ticks.length; i++) {
      const r = Math.log(ticks[i]!.price / ticks[i - 1]!.price)
      sum += r
      sumSq += r * r
    }
    const n = ticks.length - 1
    const sd = Math.sqrt(sumSq / n - (sum / n) ** 2)
    const annualised = sd * Math.sqrt(rate * 365 * 86_400)
    // tick rounding (0.01 on ~68,000) adds a little noise; 60 % is the target
    assert.isAbove(annualised, 0.45)
    assert.isBelow(annualised, 0.9)
  })

  it("reports the 24 h change against the price 24 h earlier, and a rolling 24 h volume", () => {
    // one event per second for 25 hours
    const ticks = take(simSettings({ eventsPerSecond: 1, symbols: [sym("ETHUSDT")] }), 90_000)
    const day = 86_400_000_000
    for (const i of [86_500, 87_000, 88_888, 89_999]) {
      const t = ticks[i]!
      const windowMinute = Math.floor((t.tsMicros - day) / 60_000_000)
      // the open of that minute: the last price before it began
      const before = ticks.filter((x) => x.tsMicros < windowMinute * 60_000_000)
      const open = before[before.length - 1]!.price
      const expected = ((t.price / open - 1) * 100).toFixed(3)
      assert.strictEqual(t.event.priceChangePercent, expected === "-0.000" ? "0.000" : expected)
    }
    const eth = profileOf("ETHUSDT")
    const typical = eth.dailyQuoteVolume / eth.basePrice
    for (const t of ticks) {
      assert.isAbove(Number(t.event.volume), typical * 0.7)
      assert.isBelow(Number(t.event.volume), typical * 1.4)
    }
  })

  it("formats scaled integers as decimal strings", () => {
    assert.strictEqual(formatScaled(6_800_120, 2), "68001.20")
    assert.strictEqual(formatScaled(5, 8), "0.00000005")
    assert.strictEqual(formatScaled(0, 2), "0.00")
    assert.strictEqual(formatScaled(123, 0), "123")
    assert.strictEqual(formatScaled(100, 2), "1.00")
  })

  it("rejects impossible settings", () => {
    assert.throws(() => makeSimMarket(simSettings({ symbols: [] })))
    assert.throws(() => makeSimMarket(simSettings({ eventsPerSecond: 0 })))
    assert.throws(() => makeSimMarket(simSettings({ eventsPerSecond: 2.5 })))
  })
})

/** A publish that records each batch. */
const makeSpy = () => {
  const batches: Array<ReadonlyArray<Tick>> = []
  const publish = (ticks: ReadonlyArray<Tick>) => Effect.sync(() => void batches.push(ticks))
  const count = () => batches.reduce((n, b) => n + b.length, 0)
  const all = () => batches.flat()
  return { batches, publish, count, all }
}

/** Moves the TestClock by `ms` in steps of `step` ms, letting the source run in between. */
const tick = (ms: number, step = 10) =>
  Effect.gen(function* () {
    for (let t = 0; t < ms; t += step) {
      yield* TestClock.adjust(`${step} millis`)
      yield* Effect.yieldNow()
    }
  })

const HealthLive = Health.Default

describe("sim source (paced by the Clock)", () => {
  it.effect("at 10 events/s publishes about 10 events in a second, each at its instant", () =>
    Effect.gen(function* () {
      const health = yield* Health
      const spy = makeSpy()
      const market = makeSimMarket(simSettings({ eventsPerSecond: 10 }))
      const fiber = yield* Effect.fork(runSim(market, spy.publish, health))
      yield* tick(1_000)
      // events 0..10 are due at 0, 100, …, 1000 ms
      assert.include([10, 11], spy.count())
      assert.isTrue(spy.batches.every((b) => b.length === 1))
      assert.deepStrictEqual(spy.all(), take(simSettings({ eventsPerSecond: 10 }), spy.count()))
      assert.strictEqual((yield* health.producer).state, "up")
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(HealthLive))
  )

  it.effect("at 1000 events/s publishes 2000 events in two seconds, in steps of ~50 ms", () =>
    Effect.gen(function* () {
      const health = yield* Health
      const spy = makeSpy()
      const fiber = yield* Effect.fork(runSim(makeSimMarket(simSettings({ eventsPerSecond: 1_000 })), spy.publish, health))
      yield* tick(2_000)
      assert.include([2_000, 2_001], spy.count())
      assert.isTrue(spy.batches.every((b) => b.length <= 51), `batch sizes ${spy.batches.map((b) => b.length).join(",")}`)
      assert.isAtLeast(spy.batches.length, 35)
      assert.isAtMost(spy.batches.length, 45)
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(HealthLive))
  )

  it.effect("caps one step's batch and, when the broker falls behind, publishes the backlog with the events' own instants", () =>
    Effect.gen(function* () {
      const health = yield* Health
      const gate = yield* Deferred.make<void>()
      const batches: Array<ReadonlyArray<Tick>> = []
      // the first publish blocks until the gate opens: backpressure
      const publish = (ticks: ReadonlyArray<Tick>) =>
        Effect.zipRight(batches.length === 0 ? Deferred.await(gate) : Effect.void, Effect.sync(() => void batches.push(ticks)))
      const s = simSettings({ eventsPerSecond: 200_000 })
      const fiber = yield* Effect.fork(runSim(makeSimMarket(s), publish, health))
      yield* tick(2_000, 50) // 2 s pass while the first publish waits
      assert.strictEqual(batches.length, 0)
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.yieldNow()
      yield* tick(50, 50)
      const total = batches.reduce((n, b) => n + b.length, 0)
      // everything due by 2.05 s: 410,001 events, none lost, none re-timed
      assert.isAtLeast(total, 400_001)
      assert.isTrue(batches.every((b) => b.length <= SIM_MAX_BATCH))
      const flat = batches.flat()
      flat.forEach((t, k) => assert.strictEqual(t.tsMicros, s.startMicros + offsetMicros(k, 200_000)))
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(HealthLive)),
    60_000
  )

  it.effect("retries a failed publish with the same events and shows the failure on /health", () =>
    Effect.gen(function* () {
      const health = yield* Health
      const batches: Array<ReadonlyArray<Tick>> = []
      let calls = 0
      const publish = (ticks: ReadonlyArray<Tick>) =>
        ++calls === 1
          ? Effect.fail({ message: "broker publish failed: kafka is down" })
          : Effect.sync(() => void batches.push(ticks))
      const fiber = yield* Effect.fork(runSim(makeSimMarket(simSettings({ eventsPerSecond: 10 })), publish, health))
      yield* Effect.yieldNow()
      const p = yield* health.producer
      assert.strictEqual(p.state, "down")
      assert.include(p.last_error, "kafka is down")
      yield* tick(2_000)
      assert.deepStrictEqual(batches.flat(), take(simSettings({ eventsPerSecond: 10 }), batches.flat().length))
      assert.isAtLeast(batches.flat().length, 20)
      assert.strictEqual((yield* health.producer).state, "up")
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(HealthLive))
  )

  it.effect("ends on a stop request after publishing the batch in hand", () =>
    Effect.gen(function* () {
      const health = yield* Health
      const stop = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const batches: Array<ReadonlyArray<Tick>> = []
      let calls = 0
      // the 5th publish is in flight (held by the gate) when the stop comes
      const publish = (ticks: ReadonlyArray<Tick>) =>
        Effect.zipRight(++calls === 5 ? Deferred.await(gate) : Effect.void, Effect.sync(() => void batches.push(ticks)))
      const fiber = yield* Effect.fork(
        runSim(makeSimMarket(simSettings({ eventsPerSecond: 10 })), publish, health).pipe(Effect.provideService(StopRequested, stop))
      )
      yield* tick(400)
      assert.strictEqual(calls, 5)
      assert.strictEqual(batches.length, 4)
      yield* Deferred.succeed(stop, undefined)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(fiber)
      assert.strictEqual(batches.length, 5) // the batch in hand was published
      yield* tick(1_000)
      assert.strictEqual(calls, 5) // and nothing after
    }).pipe(Effect.provide(HealthLive))
  )

  it.effect("a stop request ends the wait between steps at once", () =>
    Effect.gen(function* () {
      const health = yield* Health
      const stop = yield* Deferred.make<void>()
      const spy = makeSpy()
      const fiber = yield* Effect.fork(
        runSim(makeSimMarket(simSettings({ eventsPerSecond: 1 })), spy.publish, health).pipe(Effect.provideService(StopRequested, stop))
      )
      yield* Effect.yieldNow()
      assert.strictEqual(spy.count(), 1)
      yield* Deferred.succeed(stop, undefined)
      yield* Fiber.join(fiber) // no clock movement needed
      assert.strictEqual(spy.count(), 1)
    }).pipe(Effect.provide(HealthLive))
  )
})

describe("sim source from the configuration", () => {
  it.effect("SimSourceLive publishes through the Broker with SIM_SEED, SIM_EVENTS_PER_SECOND, SYMBOLS and SIM_START", () =>
    Effect.gen(function* () {
      const published: Array<Tick> = []
      const broker = Layer.succeed(
        Broker,
        // the spy takes ticks, as Broker.publish does
        Broker.of({ publish: ((ticks: ReadonlyArray<Tick>) => Effect.sync(() => void published.push(...ticks))) as never } as never)
      )
      const source = yield* MarketSource.pipe(Effect.provide(SimSourceLive.pipe(Layer.provide(broker), Layer.provide(HealthLive))))
      assert.strictEqual(source.name, "sim")
      const fiber = yield* Effect.fork(source.run)
      yield* tick(1_000, 50)
      assert.include([20, 21], published.length)
      const expected = take(
        { seed: 7, eventsPerSecond: 20, symbols: [sym("SOLUSDT")], startMicros: parseInstantMicros("2026-02-01T00:00:00Z")! },
        published.length
      )
      assert.deepStrictEqual(published, expected)
      assert.strictEqual(published[0]!.event.timestamp_utc, "2026-02-01T00:00:00.000000+00:00")
      yield* Fiber.interrupt(fiber)
    }).pipe(
      withEnv({ SIM_SEED: "7", SIM_EVENTS_PER_SECOND: "20", SYMBOLS: "solusdt", SIM_START: "2026-02-01T00:00:00Z" })
    )
  )

  it.effect("without SIM_START the first event is at the start of the process, rounded down to the second", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(Date.UTC(2026, 2, 1, 12, 0, 5, 678))
      const spy = makeSpy()
      const source = yield* makeSimSource(spy.publish).pipe(Effect.provide(HealthLive))
      const fiber = yield* Effect.fork(source.run)
      yield* Effect.yieldNow()
      assert.strictEqual(spy.all()[0]!.event.timestamp_utc, "2026-03-01T12:00:05.000000+00:00")
      assert.deepStrictEqual(
        spy.all()[0]!.symbol,
        sym("BTCUSDT")
      )
      yield* Fiber.interrupt(fiber)
    }).pipe(withEnv({}))
  )

  it.effect("logs what it simulates and when it stops", () => {
    const logs: Array<string> = []
    const capture = Logger.add(Logger.make(({ message }) => void logs.push((Array.isArray(message) ? message : [message]).map(String).join(" "))))
    return Effect.gen(function* () {
      const spy = makeSpy()
      const stop = yield* Deferred.make<void>()
      const source = yield* makeSimSource(spy.publish).pipe(Effect.provide(HealthLive))
      const fiber = yield* Effect.fork(source.run.pipe(Effect.provideService(StopRequested, stop)))
      yield* tick(500)
      yield* Deferred.succeed(stop, undefined)
      yield* Fiber.join(fiber)
      assert.isTrue(logs.some((l) => l.includes("simulating BTCUSDT, ETHUSDT at 10 event(s)/s with SIM_SEED=42")), logs.join("\n"))
      assert.isTrue(logs.some((l) => l.includes(`sim stopped after publishing ${spy.count()} event(s)`)), logs.join("\n"))
    }).pipe(Effect.provide(capture), withEnv({}))
  })
})

describe("sim and replay settings", () => {
  const failureOf = <A>(config: Effect.Effect<A, unknown>) =>
    Effect.either(config).pipe(Effect.map((e) => (Either.isLeft(e) ? AppConfig.describeConfigError(e.left as never) : "no error")))

  it.effect("have defaults", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* AppConfig.source, "both")
      assert.strictEqual(yield* AppConfig.simSeed, 42)
      assert.strictEqual(yield* AppConfig.simEventsPerSecond, 10)
      assert.isTrue((yield* AppConfig.simStart)._tag === "None")
      assert.strictEqual(yield* AppConfig.replayDir, "data/raw")
      assert.strictEqual(yield* AppConfig.replaySpeed, 1)
      yield* AppConfig.validateAll
    }).pipe(withEnv({}))
  )

  it.effect("read their variables; REPLAY_DIR falls back to RAW_DIR", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* AppConfig.source.pipe(withEnv({ SOURCE: "SIM" })), "sim")
      assert.strictEqual(yield* AppConfig.source.pipe(withEnv({ SOURCE: "replay" })), "replay")
      assert.strictEqual(yield* AppConfig.simSeed.pipe(withEnv({ SIM_SEED: "-12" })), -12)
      assert.strictEqual(yield* AppConfig.simEventsPerSecond.pipe(withEnv({ SIM_EVENTS_PER_SECOND: "200000" })), 200_000)
      const start = yield* AppConfig.simStart.pipe(withEnv({ SIM_START: "2026-01-15T00:00:00.5+01:00" }))
      assert.deepStrictEqual(start._tag === "Some" ? start.value : null, Date.UTC(2026, 0, 14, 23, 0, 0, 500) * 1000)
      assert.strictEqual(yield* AppConfig.replayDir.pipe(withEnv({ RAW_DIR: "/srv/raw" })), "/srv/raw")
      assert.strictEqual(yield* AppConfig.replayDir.pipe(withEnv({ RAW_DIR: "/srv/raw", REPLAY_DIR: "/mnt/rec" })), "/mnt/rec")
      assert.strictEqual(yield* AppConfig.replaySpeed.pipe(withEnv({ REPLAY_SPEED: "0" })), 0)
      assert.strictEqual(yield* AppConfig.replaySpeed.pipe(withEnv({ REPLAY_SPEED: "2.5" })), 2.5)
    })
  )

  it.effect("reject bad values in one sentence naming the variable, the value and what is accepted", () =>
    Effect.gen(function* () {
      const cases: Array<[Effect.Effect<unknown, unknown>, Record<string, string>, string]> = [
        [AppConfig.source, { SOURCE: "websocket" }, 'SOURCE="websocket" is not valid: expected both (WebSocket trades and bars plus the REST ticker poll), stream (WebSocket only), poll (REST 24h tickers only), sim (a simulated market) or replay (recorded JSONL day files).'],
        [AppConfig.simSeed, { SIM_SEED: "4.2" }, 'SIM_SEED="4.2" is not valid: expected a whole number such as 42.'],
        [AppConfig.simEventsPerSecond, { SIM_EVENTS_PER_SECOND: "0" }, 'SIM_EVENTS_PER_SECOND="0" is not valid: expected a whole number from 1 to 200000'],
        [AppConfig.simEventsPerSecond, { SIM_EVENTS_PER_SECOND: "200001" }, "SIM_EVENTS_PER_SECOND=\"200001\" is not valid"],
        [AppConfig.simStart, { SIM_START: "2026-01-15" }, 'SIM_START="2026-01-15" is not valid: expected an ISO-8601 instant with an offset such as 2026-01-15T00:00:00Z.'],
        [AppConfig.simStart, { SIM_START: "2026-02-30T00:00:00Z" }, 'SIM_START="2026-02-30T00:00:00Z" is not valid'],
        [AppConfig.replaySpeed, { REPLAY_SPEED: "-1" }, 'REPLAY_SPEED="-1" is not valid: expected a number of at least 0'],
        [AppConfig.replaySpeed, { REPLAY_SPEED: "fast" }, 'REPLAY_SPEED="fast" is not valid'],
        [AppConfig.replayDir, { REPLAY_DIR: "" }, 'REPLAY_DIR="" is not valid: expected a directory path such as data/raw.']
      ]
      for (const [config, env, message] of cases) {
        assert.include(yield* failureOf(config).pipe(withEnv(env)), message)
        assert.include(yield* failureOf(AppConfig.validateAll).pipe(withEnv(env)), message)
      }
    })
  )
})

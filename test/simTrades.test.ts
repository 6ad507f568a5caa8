import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Either, Exit, Fiber, Layer, Logger, Schema, TestClock } from "effect"
import * as AppConfig from "../src/Config.js"
import { Broker, TradeBroker } from "../src/broker/Broker.js"
import { StopRequested } from "../src/app/Shutdown.js"
import { makeSimMarket, offsetMicros, profileOf, type SimSettings } from "../src/domain/SimMarket.js"
import { makeSimTrades } from "../src/domain/SimTrades.js"
import { parseInstantMicros, type Tick } from "../src/domain/Ticker.js"
import { type Trade, TRADE_SIM_SOURCE, TradeEvent, TradeEventJson, toTradeEvent, tradeJson } from "../src/domain/Trade.js"
import { MarketSource } from "../src/market/MarketSource.js"
import { makeSimSource, runSim, SIM_MAX_BATCH, SimSourceLive } from "../src/market/SimSource.js"
import { Health } from "../src/status/Health.js"
import { withEnv } from "./support/effect.js"
import { SIM_START, simSettings, simTrades, sym } from "./support/sim.js"

const isTradeEvent = Schema.is(TradeEvent)
const decodeTrade = Schema.decodeUnknownEither(TradeEventJson)

describe("simulated trades (pure)", () => {
  it("are deterministic: the same seed, settings and start give the same trades; another seed does not", () => {
    const a = simTrades(simSettings(), 1_000, 20_000)
    assert.deepStrictEqual(simTrades(simSettings(), 1_000, 20_000), a)
    const other = simTrades(simSettings({ seed: 43 }), 1_000, 20_000)
    assert.deepStrictEqual(other.map((t) => t.timeMicros), a.map((t) => t.timeMicros))
    assert.notDeepEqual(other.map((t) => t.price), a.map((t) => t.price))
    assert.notDeepEqual(other.map((t) => t.id), a.map((t) => t.id))
    // taken in other batch sizes, the same
    const sim = makeSimTrades(simSettings(), 1_000)
    const pieces: Array<Trade> = []
    while (pieces.length < 20_000) pieces.push(...sim.takeDue(Number.MAX_SAFE_INTEGER, 777))
    assert.deepStrictEqual(pieces.slice(0, 20_000), a)
  })

  it("are contract trades: valid fields, 8-decimal strings, source simulated, consecutive ids per symbol, time on the schedule", () => {
    const symbols = ["BTCUSDT", "ETHUSDT", "PEPEUSDT", "FOOBARUSDT"].map(sym)
    const s = simSettings({ symbols, eventsPerSecond: 20 })
    const rate = 8_000
    const all = simTrades(s, rate, 40_000)
    const last = new Map<string, Trade>()
    all.forEach((t, k) => {
      const e = toTradeEvent(t)
      assert.isTrue(isTradeEvent(e), `trade ${k} is not a contract trade: ${JSON.stringify(e)}`)
      assert.isTrue(Either.isRight(decodeTrade(tradeJson(t))), `trade ${k} does not decode from its JSON`)
      assert.strictEqual(t.source, TRADE_SIM_SOURCE)
      assert.strictEqual(t.symbol, symbols[k % symbols.length])
      assert.strictEqual(t.timeMicros, Math.floor((SIM_START + offsetMicros(k, rate)) / 1000) * 1000)
      assert.match(t.price, /^\d+\.\d{8}$/)
      assert.match(t.quantity, /^\d+\.\d{8}$/)
      assert.isAbove(Number(t.price), 0)
      assert.isAbove(Number(t.quantity), 0)
      assert.isAtLeast(t.lastTradeId, t.firstTradeId)
      assert.isAbove(t.id, 2 ** 31)
      assert.isAtMost(t.lastTradeId, Number.MAX_SAFE_INTEGER)
      const before = last.get(t.symbol)
      if (before !== undefined) {
        assert.strictEqual(t.id, before.id + 1)
        assert.strictEqual(t.firstTradeId, before.lastTradeId + 1)
        assert.isAtLeast(t.timeMicros, before.timeMicros)
      }
      last.set(t.symbol, t)
    })
    // several trades share a millisecond (2,000 per symbol per second), as on Binance
    const btc = all.filter((t) => t.symbol === "BTCUSDT").map((t) => t.timeMicros)
    assert.isBelow(new Set(btc).size, btc.length)
    // both sides trade
    const makers = all.filter((t) => t.isBuyerMaker).length
    assert.isAbove(makers, all.length * 0.4)
    assert.isBelow(makers, all.length * 0.6)
  })

  it("follow the market's price path: near each tick's price at the tick's instant, on the symbol's tick size", () => {
    const symbols = ["BTCUSDT", "XRPUSDT", "ZZTOPUSDT"].map(sym)
    const s = simSettings({ symbols, eventsPerSecond: 30 })
    const rate = 3_000
    const all = simTrades(s, rate, 300_000) // 100 s
    const ticks = makeSimMarket(s).takeDue(100_000_000, 1_000_000)
    for (const symbol of symbols) {
      const profile = profileOf(symbol)
      const onTick = new RegExp(`^\\d+\\.\\d{${profile.priceDecimals}}0{${8 - profile.priceDecimals}}$`)
      const mine = all.filter((t) => t.symbol === symbol)
      for (const t of mine) assert.match(t.price, onTick, symbol)
      const sigma = profile.annualVolatility / Math.sqrt(365 * 86_400)
      const tickSize = 10 ** -profile.priceDecimals
      const far: Array<string> = []
      let i = 0
      for (const tick of ticks.filter((x) => x.symbol === symbol)) {
        // the symbol's first trade at or after the tick (trades are cut to the millisecond)
        while (i < mine.length && mine[i]!.timeMicros + 1000 <= tick.tsMicros) i++
        const t = mine[i]
        if (t === undefined) break
        const dt = Math.max(0.001, (t.timeMicros + 1000 - tick.tsMicros) / 1e6)
        const allowed = 2 * tickSize + 6 * sigma * Math.sqrt(dt) * tick.price
        if (Math.abs(Number(t.price) - tick.price) > allowed) far.push(`${t.price} vs tick ${tick.price} ${dt}s later`)
      }
      assert.deepStrictEqual(far, [], symbol)
      // and over the run the trades move with the ticks, not around a fixed price
      const firstTick = ticks.find((x) => x.symbol === symbol)!.price
      const lastTick = ticks.filter((x) => x.symbol === symbol).at(-1)!.price
      const lastTrade = Number(mine.at(-1)!.price)
      assert.isBelow(Math.abs(lastTrade - lastTick), Math.max(Math.abs(lastTick - firstTick), 3 * tickSize) + 3 * tickSize, symbol)
    }
  })

  it("continue above an earlier run's ids when started later (the ids a stopped sim missed are a gap)", () => {
    const first = simTrades(simSettings(), 100, 1_000) // 10 s
    const later = simTrades(simSettings({ startMicros: SIM_START + 60_000_000 }), 100, 10)
    for (const symbol of ["BTCUSDT", "ETHUSDT"]) {
      const before = first.filter((t) => t.symbol === symbol).at(-1)!
      const after = later.find((t) => t.symbol === symbol)!
      assert.isAbove(after.id, before.id, symbol)
      assert.isAbove(after.firstTradeId, before.lastTradeId, symbol)
      // 50 trades/s per symbol for the 60 s between the starts: the first later id is where the sim would be
      assert.strictEqual(after.id - first.find((t) => t.symbol === symbol)!.id, 3_000, symbol)
    }
  })

  it("reject an impossible rate", () => {
    assert.throws(() => makeSimTrades(simSettings(), 0))
    assert.throws(() => makeSimTrades(simSettings(), 1.5))
  })
})

/** Moves the TestClock by `ms` in steps of `step` ms, letting the source run in between. */
const tick = (ms: number, step = 10) =>
  Effect.gen(function* () {
    for (let t = 0; t < ms; t += step) {
      yield* TestClock.adjust(`${step} millis`)
      yield* Effect.yieldNow()
    }
  })

const spyOf = <A>() => {
  const batches: Array<ReadonlyArray<A>> = []
  return { batches, publish: (items: ReadonlyArray<A>) => Effect.sync(() => void batches.push(items)), all: () => batches.flat() }
}

describe("sim source with trades (paced by the Clock)", () => {
  it.effect("publishes trades beside the ticks, each on its own schedule, the ticks as without trades", () =>
    Effect.gen(function* () {
      const health = yield* Health
      const ticks = spyOf<Tick>()
      const tradeSpy = spyOf<Trade>()
      const s = simSettings({ eventsPerSecond: 10 })
      const fiber = yield* Effect.fork(runSim(makeSimMarket(s), ticks.publish, health, { trades: makeSimTrades(s, 5_000), publish: tradeSpy.publish }))
      yield* tick(2_000)
      assert.include([20, 21], ticks.all().length)
      assert.deepStrictEqual(ticks.all(), makeSimMarket(s).takeDue(Number.MAX_SAFE_INTEGER, ticks.all().length))
      const published = tradeSpy.all()
      assert.include([10_000, 10_001], published.length)
      assert.isTrue(tradeSpy.batches.every((b) => b.length <= SIM_MAX_BATCH))
      assert.deepStrictEqual(published, simTrades(s, 5_000, published.length))
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(Health.Default))
  )

  it.effect("a stop ends both; the last line counts events and trades", () => {
    const logs: Array<string> = []
    const capture = Logger.add(Logger.make(({ message }) => void logs.push((Array.isArray(message) ? message : [message]).map(String).join(" "))))
    return Effect.gen(function* () {
      const health = yield* Health
      const stop = yield* Deferred.make<void>()
      const ticks = spyOf<Tick>()
      const tradeSpy = spyOf<Trade>()
      const s = simSettings()
      const fiber = yield* Effect.fork(
        runSim(makeSimMarket(s), ticks.publish, health, { trades: makeSimTrades(s, 100), publish: tradeSpy.publish }).pipe(
          Effect.provideService(StopRequested, stop)
        )
      )
      yield* tick(500)
      yield* Deferred.succeed(stop, undefined)
      yield* Fiber.join(fiber)
      const stopped = `sim stopped after publishing ${ticks.all().length} event(s) and ${tradeSpy.all().length} trade(s)`
      assert.isTrue(logs.some((l) => l === stopped), logs.join("\n"))
      assert.isTrue(logs.some((l) => l.includes("at 10 event(s)/s with SIM_SEED=42") && l.endsWith("and 100 aggregate trade(s)/s")), logs.join("\n"))
    }).pipe(Effect.provide(Health.Default), Effect.provide(capture))
  })
})

describe("sim source with trades from the configuration", () => {
  const env = { SIM_SEED: "7", SIM_EVENTS_PER_SECOND: "20", SIM_TRADES_PER_SECOND: "400", SYMBOLS: "solusdt,btcusdt", SIM_START: "2026-02-01T00:00:00Z" }
  const s: SimSettings = { seed: 7, eventsPerSecond: 20, symbols: [sym("SOLUSDT"), sym("BTCUSDT")], startMicros: parseInstantMicros("2026-02-01T00:00:00Z")! }

  it.effect("SimSourceLive publishes trades through the TradeBroker with SIM_TRADES_PER_SECOND", () =>
    Effect.gen(function* () {
      const ticks = spyOf<Tick>()
      const tradeSpy = spyOf<Trade>()
      const brokers = Layer.merge(
        Layer.succeed(Broker, Broker.of({ publish: ticks.publish } as never)),
        Layer.succeed(TradeBroker, TradeBroker.of({ publish: tradeSpy.publish } as never))
      )
      const source = yield* MarketSource.pipe(Effect.provide(SimSourceLive.pipe(Layer.provide(brokers), Layer.provide(Health.Default))))
      const fiber = yield* Effect.fork(source.run)
      yield* tick(1_000, 50)
      assert.include([400, 401], tradeSpy.all().length)
      assert.deepStrictEqual(tradeSpy.all(), simTrades(s, 400, tradeSpy.all().length))
      assert.strictEqual(tradeSpy.all()[0]!.timeMicros, s.startMicros)
      assert.include([20, 21], ticks.all().length)
      yield* Fiber.interrupt(fiber)
    }).pipe(withEnv(env))
  )

  it.effect("without a trades channel, SIM_TRADES_PER_SECOND above 0 stops the source with a clear defect; 0 needs none", () =>
    Effect.gen(function* () {
      const ticks = spyOf<Tick>()
      const exit = yield* Effect.exit(makeSimSource(ticks.publish).pipe(Effect.provide(Health.Default)))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.include(Cause.pretty(exit.cause), "SIM_TRADES_PER_SECOND")
      const source = yield* makeSimSource(ticks.publish).pipe(Effect.provide(Health.Default), withEnv({ ...env, SIM_TRADES_PER_SECOND: "0" }))
      const fiber = yield* Effect.fork(source.run.pipe(Effect.provide(Health.Default)))
      yield* tick(500, 50)
      assert.isAbove(ticks.all().length, 0)
      yield* Fiber.interrupt(fiber)
    }).pipe(withEnv(env))
  )

  it.effect("SIM_TRADES_PER_SECOND: 0 by default, up to 200000, validated at start-up in one sentence", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* AppConfig.simTradesPerSecond.pipe(withEnv({})), 0)
      assert.strictEqual(yield* AppConfig.simTradesPerSecond.pipe(withEnv({ SIM_TRADES_PER_SECOND: "5000" })), 5_000)
      assert.strictEqual(yield* AppConfig.simTradesPerSecond.pipe(withEnv({ SIM_TRADES_PER_SECOND: "200000" })), 200_000)
      for (const bad of ["-1", "200001", "1.5", "many", ""]) {
        const failure = yield* Effect.flip(AppConfig.validateAll.pipe(withEnv({ SIM_TRADES_PER_SECOND: bad })))
        assert.include(
          AppConfig.describeConfigError(failure),
          `SIM_TRADES_PER_SECOND=${JSON.stringify(bad)} is not valid: expected a whole number from 0 (no trades) to 200000`
        )
      }
    })
  )
})

import { Clock, Effect, Layer, Option } from "effect"
import * as AppConfig from "../Config.js"
import { TradeBroker } from "../broker/Broker.js"
import { makeSimMarket, type SimMarket, type SimSettings } from "../domain/SimMarket.js"
import { makeSimTrades, type SimTrades } from "../domain/SimTrades.js"
import { formatInstantMicros } from "../domain/Ticker.js"
import type { Trade } from "../domain/Trade.js"
import { Health } from "../status/Health.js"
import { tradeLabels } from "../status/Metrics.js"
import { MarketSource, type Publish, type StopSignal, stopSignal, watchedPublish, watchedPublishTo } from "./MarketSource.js"

/** At most this long between two publishes while the market is on schedule (events due are batched). */
const STEP_MS = 50
/**
 * The most events one publish carries: memory stays bounded when the pipeline falls behind, and a
 * batch in hand at a stop request is small enough for a slow pipeline to take within the role's 1 s
 * grace. At 200,000 events/s a 50 ms step is five such batches, published back to back.
 */
export const SIM_MAX_BATCH = 2_000
/** Running behind schedule by more than this is logged, at most once per BEHIND_LOG_EVERY_MS. */
const BEHIND_LOGGED_AFTER_MS = 1_000
const BEHIND_LOG_EVERY_MS = 60_000
/** A failed publish is retried with the same events after this pause. */
const RETRY_AFTER_MS = 1_000

/** How the sim hands trades on: `TradeBroker.publish`, or a wrapper of it. */
export type PublishTrades<E> = (trades: ReadonlyArray<Trade>) => Effect.Effect<void, E>

/** The trades side of the sim: the generator and where its trades go. */
export interface SimTradeLane<E> {
  readonly trades: SimTrades
  readonly publish: PublishTrades<E>
}

/** One paced stream of the sim (ticks or trades): a deterministic generator and its publish. */
interface Lane<A, E> {
  /** "event" or "trade", for the log. */
  readonly noun: string
  readonly rate: number
  readonly nextOffsetMicros: () => number
  readonly takeDue: (untilOffsetMicros: number, max: number) => Array<A>
  readonly publish: (items: ReadonlyArray<A>) => Effect.Effect<void, E>
}

/**
 * Publishes `lane` on schedule until a stop request; how many it published and how many it held then.
 * Item `k` is due `k / rate` seconds after `elapsed` began.
 */
const runLane = <A, E extends { readonly message: string }>(
  lane: Lane<A, E>,
  health: Health,
  stop: StopSignal,
  elapsed: Effect.Effect<number>
) =>
  Effect.gen(function* () {
    let published = 0
    let lastBehindLog = Number.NEGATIVE_INFINITY
    let inHand: Array<A> = []
    while (!(yield* stop.requested)) {
      if (inHand.length === 0) inHand = lane.takeDue((yield* elapsed) * 1000, SIM_MAX_BATCH)
      if (inHand.length > 0) {
        const failure = yield* lane.publish(inHand).pipe(Effect.as(Option.none<E>()), Effect.catchAll((e) => Effect.succeed(Option.some(e))))
        if (Option.isSome(failure)) {
          yield* health.producerFailed(failure.value.message)
          yield* Effect.logWarning(`sim: publishing ${inHand.length} ${lane.noun}(s) failed: ${failure.value.message}; retrying`)
          yield* stop.pause(RETRY_AFTER_MS)
          continue
        }
        published += inHand.length
        const full = inHand.length === SIM_MAX_BATCH
        inHand = []
        yield* health.producerSucceeded(null)
        if (full) {
          const now = yield* elapsed
          const behindMs = now - lane.nextOffsetMicros() / 1000
          if (behindMs > BEHIND_LOGGED_AFTER_MS && now - lastBehindLog >= BEHIND_LOG_EVERY_MS) {
            lastBehindLog = now
            yield* Effect.logWarning(
              `sim: ${(behindMs / 1000).toFixed(1)} s behind schedule: the pipeline takes fewer than ${lane.rate} ${lane.noun}s/s; ` +
                `${lane.noun}s keep their simulated instants and the backlog is published as fast as the broker takes it`
            )
          }
          continue // more may be due: no wait
        }
      }
      const nextDueMs = Math.ceil(lane.nextOffsetMicros() / 1000)
      yield* stop.pause(Math.max(nextDueMs - (yield* elapsed), STEP_MS))
    }
    return { published, inHand: inHand.length }
  })

/**
 * Publishes the simulated market on schedule: event `k` is due `k / rate` seconds after the loop
 * starts (by the Effect `Clock`). Each step publishes the events due so far (in batches of at most
 * SIM_MAX_BATCH), then waits until the next event is due, but at least STEP_MS: at 10 events/s each
 * event is published at its own instant, at 200,000/s about 10,000 go every 50 ms. With `trades`,
 * the market's aggregate trades are paced the same way beside the ticks, from the same instant.
 *
 * When the pipeline does not keep up (publish suspends: backpressure), events keep their simulated
 * instants (`start + k / rate`, so the output is the same however fast it is taken): the backlog is
 * published at once, a full batch after another, as fast as the broker takes it, and the loop says
 * once a minute how far behind it is. A failed publish is reported on /health and retried with the
 * same events. A stop request (`StopRequested`) ends the loop between steps: a batch in hand is
 * published first.
 */
export const runSim = <E extends { readonly message: string }, E2 extends { readonly message: string } = never>(
  market: SimMarket,
  publish: Publish<E>,
  health: Health,
  trades?: SimTradeLane<E2>
) =>
  Effect.gen(function* () {
    const stop = yield* stopSignal
    const { eventsPerSecond: rate, seed, startMicros, symbols } = market.settings
    yield* health.producerStarting(symbols)
    yield* Effect.logInfo(
      `simulating ${symbols.join(", ")} at ${rate} event(s)/s with SIM_SEED=${seed}, the first event at ${formatInstantMicros(startMicros)}` +
        (trades === undefined ? "" : `; and ${trades.trades.tradesPerSecond} aggregate trade(s)/s`)
    )
    const began = yield* Clock.currentTimeMillis
    const elapsed = Effect.map(Clock.currentTimeMillis, (now) => now - began)
    const ticks = runLane({ noun: "event", rate, nextOffsetMicros: market.nextOffsetMicros, takeDue: market.takeDue, publish }, health, stop, elapsed)
    const lanes = trades === undefined
      ? Effect.map(ticks, (t) => [t] as const)
      : Effect.all(
          [
            ticks,
            runLane(
              {
                noun: "trade",
                rate: trades.trades.tradesPerSecond,
                nextOffsetMicros: trades.trades.nextOffsetMicros,
                takeDue: trades.trades.takeDue,
                publish: trades.publish
              },
              health,
              stop,
              elapsed
            )
          ],
          { concurrency: "unbounded" }
        )
    const [t, tr] = yield* lanes
    const held = t.inHand + (tr?.inHand ?? 0)
    yield* Effect.logInfo(
      `sim stopped after publishing ${t.published} event(s)` +
        (tr === undefined ? "" : ` and ${tr.published} trade(s)`) +
        (held > 0 ? `; ${held} event(s) in hand were not published` : "")
    )
  }).pipe(Effect.annotateLogs({ service: "producer", source: "sim" }))

/** The sim's settings from the configuration; without SIM_START the first event is at this second. */
export const simSettings = Effect.gen(function* () {
  const start = yield* AppConfig.simStart
  const now = yield* Clock.currentTimeMillis
  const settings: SimSettings = {
    seed: yield* AppConfig.simSeed,
    eventsPerSecond: yield* AppConfig.simEventsPerSecond,
    symbols: yield* AppConfig.symbols,
    startMicros: Option.getOrElse(start, () => Math.floor(now / 1000) * 1_000_000)
  }
  return settings
})

/**
 * The `sim` source over any publish functions (Broker.publish, or a wrapper that reports a blocked
 * broker). With SIM_TRADES_PER_SECOND above 0 it needs `publishTrades`.
 */
export const makeSimSource = <E extends { readonly message: string }, E2 extends { readonly message: string } = never>(
  publish: Publish<E>,
  publishTrades?: PublishTrades<E2>
) =>
  Effect.gen(function* () {
    const health = yield* Health
    const settings = yield* simSettings
    const tradesPerSecond = yield* AppConfig.simTradesPerSecond
    if (tradesPerSecond > 0 && publishTrades === undefined) {
      return yield* Effect.dieMessage("SIM_TRADES_PER_SECOND is set but this process has no trades channel (TradeBroker) to publish to")
    }
    const lane = (): SimTradeLane<E2> | undefined =>
      tradesPerSecond > 0 && publishTrades !== undefined
        ? { trades: makeSimTrades(settings, tradesPerSecond), publish: publishTrades }
        : undefined
    return MarketSource.of({
      name: "sim",
      run: Effect.suspend(() => runSim(makeSimMarket(settings), publish, health, lane()))
    })
  })

/**
 * `SOURCE=sim`: the simulated market, published through the Broker, and with SIM_TRADES_PER_SECOND
 * its aggregate trades through the TradeBroker (the roles provide it; without it trades cannot start).
 */
export const SimSourceLive = Layer.effect(
  MarketSource,
  Effect.gen(function* () {
    const publish = yield* watchedPublish
    const tradeBroker = yield* Effect.serviceOption(TradeBroker)
    const publishTrades = Option.isSome(tradeBroker) ? yield* watchedPublishTo(tradeBroker.value, tradeLabels) : undefined
    return yield* makeSimSource(publish, publishTrades)
  })
)

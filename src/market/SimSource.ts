import { Clock, Effect, Layer, Option } from "effect"
import * as AppConfig from "../Config.js"
import { makeSimMarket, type SimMarket, type SimSettings } from "../domain/SimMarket.js"
import { formatInstantMicros, type Tick } from "../domain/Ticker.js"
import { Health } from "../status/Health.js"
import { MarketSource, type Publish, stopSignal, watchedPublish } from "./MarketSource.js"

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

/**
 * Publishes the simulated market on schedule: event `k` is due `k / rate` seconds after the loop
 * starts (by the Effect `Clock`). Each step publishes the events due so far (in batches of at most
 * SIM_MAX_BATCH), then waits until the next event is due, but at least STEP_MS: at 10 events/s each
 * event is published at its own instant, at 200,000/s about 10,000 go every 50 ms.
 *
 * When the pipeline does not keep up (publish suspends: backpressure), events keep their simulated
 * instants (`start + k / rate`, so the output is the same however fast it is taken): the backlog is
 * published at once, a full batch after another, as fast as the broker takes it, and the loop says
 * once a minute how far behind it is. A failed publish is reported on /health and retried with the
 * same events. A stop request (`StopRequested`) ends the loop between steps: a batch in hand is
 * published first.
 */
export const runSim = <E extends { readonly message: string }>(market: SimMarket, publish: Publish<E>, health: Health) =>
  Effect.gen(function* () {
    const stop = yield* stopSignal
    const { eventsPerSecond: rate, seed, startMicros, symbols } = market.settings
    yield* health.producerStarting(symbols)
    yield* Effect.logInfo(
      `simulating ${symbols.join(", ")} at ${rate} event(s)/s with SIM_SEED=${seed}, the first event at ${formatInstantMicros(startMicros)}`
    )
    const began = yield* Clock.currentTimeMillis
    const elapsed = Effect.map(Clock.currentTimeMillis, (now) => now - began)
    let published = 0
    let lastBehindLog = Number.NEGATIVE_INFINITY
    let inHand: Array<Tick> = []

    while (!(yield* stop.requested)) {
      if (inHand.length === 0) inHand = market.takeDue((yield* elapsed) * 1000, SIM_MAX_BATCH)
      if (inHand.length > 0) {
        const failure = yield* publish(inHand).pipe(Effect.as(Option.none<E>()), Effect.catchAll((e) => Effect.succeed(Option.some(e))))
        if (Option.isSome(failure)) {
          yield* health.producerFailed(failure.value.message)
          yield* Effect.logWarning(`sim: publishing ${inHand.length} event(s) failed: ${failure.value.message}; retrying`)
          yield* stop.pause(RETRY_AFTER_MS)
          continue
        }
        published += inHand.length
        const full = inHand.length === SIM_MAX_BATCH
        inHand = []
        yield* health.producerSucceeded(null)
        if (full) {
          const now = yield* elapsed
          const behindMs = now - market.nextOffsetMicros() / 1000
          if (behindMs > BEHIND_LOGGED_AFTER_MS && now - lastBehindLog >= BEHIND_LOG_EVERY_MS) {
            lastBehindLog = now
            yield* Effect.logWarning(
              `sim: ${(behindMs / 1000).toFixed(1)} s behind schedule: the pipeline takes fewer than ${rate} events/s; ` +
                "events keep their simulated instants and the backlog is published as fast as the broker takes it"
            )
          }
          continue // more may be due: no wait
        }
      }
      const nextDueMs = Math.ceil(market.nextOffsetMicros() / 1000)
      yield* stop.pause(Math.max(nextDueMs - (yield* elapsed), STEP_MS))
    }
    yield* Effect.logInfo(
      `sim stopped after publishing ${published} event(s)` +
        (inHand.length > 0 ? `; ${inHand.length} event(s) in hand were not published` : "")
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

/** The `sim` source over any publish function (Broker.publish, or a wrapper that reports a blocked broker). */
export const makeSimSource = <E extends { readonly message: string }>(publish: Publish<E>) =>
  Effect.gen(function* () {
    const health = yield* Health
    const settings = yield* simSettings
    return MarketSource.of({
      name: "sim",
      run: Effect.suspend(() => runSim(makeSimMarket(settings), publish, health))
    })
  })

/** `SOURCE=sim`: the simulated market, published through the Broker. */
export const SimSourceLive = Layer.effect(
  MarketSource,
  Effect.flatMap(watchedPublish, (publish) => makeSimSource(publish))
)

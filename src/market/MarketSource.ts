import { Context, Deferred, Duration, Effect, Exit, Option } from "effect"
import { Broker, type BrokerError, type Channel } from "../broker/Broker.js"
import { Health } from "../status/Health.js"
import { type EventLabels, Metrics, tickerLabels } from "../status/Metrics.js"
import type { MarketSourceName } from "../Config.js"
import type { Tick } from "../domain/Ticker.js"
import { StopRequested } from "../app/Shutdown.js"

/**
 * The port for where market events come from (`SOURCE`): Binance's REST 24h tickers (`poll`), a
 * simulated market (`sim`) or recorded day files (`replay`). Each adapter is a Layer that closes over
 * its dependencies (the broker, /health, its settings) when it is built; `run` publishes until the
 * source ends (replay) or a stop is requested (`StopRequested`, honoured at a step boundary: a batch
 * in hand is published first). Failures are reported and logged inside `run`, which never fails.
 */
export class MarketSource extends Context.Tag("market/MarketSource")<
  MarketSource,
  {
    readonly name: MarketSourceName
    readonly run: Effect.Effect<void>
  }
>() {}

/** How a source hands ticks on: `Broker.publish`, or a wrapper of it. */
export type Publish<E> = (ticks: ReadonlyArray<Tick>) => Effect.Effect<void, E>

/** The stop signal as a source's loop needs it: whether it came, and a pause that it cuts short. */
export interface StopSignal {
  readonly requested: Effect.Effect<boolean>
  /** Sleeps `millis`, or less when a stop is requested meanwhile. */
  readonly pause: (millis: number) => Effect.Effect<void>
}

/** The process's `StopRequested`, when the role runner provides one (it does for the producer loop). */
export const stopSignal: Effect.Effect<StopSignal> = Effect.map(Effect.serviceOption(StopRequested), (stop) =>
  Option.isSome(stop)
    ? {
        requested: Deferred.isDone(stop.value),
        pause: (millis) => Effect.raceFirst(Effect.sleep(Duration.millis(millis)), Deferred.await(stop.value))
      }
    : { requested: Effect.succeed(false), pause: (millis) => Effect.sleep(Duration.millis(millis)) }
)

/** A publish the broker has not taken after this long shows the producer as `blocked` on /health. */
const BLOCKED_AFTER = Duration.seconds(1)

/**
 * A channel's `publish` as every source uses it: a full broker buffer suspends it (backpressure), and
 * after BLOCKED_AFTER /health shows the producer `blocked`; the batch is counted until the broker
 * has it, so a publish cut short by a stop shows in the shutdown line. With `labels`, what the broker
 * took counts in /metrics' `csp_events_published_total`.
 */
export const watchedPublishTo = <A>(
  channel: Channel<A>,
  labels?: EventLabels<A>
): Effect.Effect<(values: ReadonlyArray<A>) => Effect.Effect<void, BrokerError>, never, Health> =>
  Effect.gen(function* () {
    const health = yield* Health
    const metrics = Option.getOrUndefined(yield* Effect.serviceOption(Metrics))
    const published = labels === undefined ? undefined : metrics?.tally("published", labels)
    const publish =
      published === undefined
        ? channel.publish
        : (values: ReadonlyArray<A>) => Effect.tap(channel.publish(values), () => Effect.sync(() => published.count(values)))
    return (values: ReadonlyArray<A>) => {
      const blocked = Effect.sleep(BLOCKED_AFTER).pipe(
        Effect.zipRight(
          health.producerBlocked(
            `the broker has not taken ${values.length} event(s) for over ${Duration.format(BLOCKED_AFTER)}: the store is failing or too slow (see the store and broker components)`
          )
        ),
        Effect.zipRight(Effect.never)
      )
      // Counted until the broker has them; a publish cut short by a stop stays counted (the shutdown line).
      return health.producerPublishing(values.length).pipe(
        Effect.zipRight(Effect.raceFirst(publish(values), blocked)),
        Effect.onExit((exit) => (Exit.isInterrupted(exit) ? Effect.void : health.producerPublishing(-values.length)))
      )
    }
  })

/** `watchedPublishTo` the ticks' broker. */
export const watchedPublish: Effect.Effect<Publish<BrokerError>, never, Broker | Health> = Effect.flatMap(Broker, (broker) =>
  watchedPublishTo(broker, tickerLabels)
)

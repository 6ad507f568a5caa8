import { Context, Deferred, Duration, Effect, Option } from "effect"
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

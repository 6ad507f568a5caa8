import { Effect, Layer, Stream } from "effect"
import { Broker } from "../../src/broker/Broker.js"
import type { Tick } from "../../src/domain/Ticker.js"

/** A Broker that records what is published. */
export const makeBrokerSpy = () => {
  const published: Array<Tick> = []
  const layer = Layer.succeed(
    Broker,
    Broker.of({
      publish: (ticks) => Effect.sync(() => void published.push(...ticks)),
      subscribe: Stream.empty,
      acknowledge: () => Effect.void,
      close: Effect.void,
      pending: Effect.succeed(0)
    })
  )
  return { published, layer }
}

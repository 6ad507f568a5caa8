import { Effect, Layer, Stream } from "effect"
import { Broker } from "../../src/broker/Broker.js"
import type { TickerEvent } from "../../src/domain/Ticker.js"

/** A Broker that records what is published. */
export const makeBrokerSpy = () => {
  const published: Array<TickerEvent> = []
  const layer = Layer.succeed(
    Broker,
    Broker.of({
      publish: (events) => Effect.sync(() => void published.push(...events)),
      subscribe: Stream.empty,
      acknowledge: () => Effect.void,
      close: Effect.void,
      pending: Effect.succeed(0)
    })
  )
  return { published, layer }
}

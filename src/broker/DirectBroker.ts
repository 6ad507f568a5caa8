import { Effect, Layer, Mailbox, Option } from "effect"
import * as AppConfig from "../Config.js"
import type { Tick } from "../domain/Ticker.js"
import { Broker, BrokerError, type Delivery } from "./Broker.js"

/**
 * Single-process broker: a bounded in-memory mailbox. A full mailbox suspends the producer
 * (backpressure), events published before the consumer attaches wait for it, and `close` lets the
 * consumer drain everything before its stream ends. Nothing survives the process.
 */
export const DirectBrokerLive = Layer.scoped(
  Broker,
  Effect.gen(function* () {
    const capacity = yield* AppConfig.directQueueCapacity
    const mailbox = yield* Effect.acquireRelease(Mailbox.make<Delivery>({ capacity, strategy: "suspend" }), (m) =>
      m.shutdown
    )
    return Broker.of({
      publish: (ticks: ReadonlyArray<Tick>) =>
        mailbox.offerAll(ticks.map((tick) => ({ tick, receipt: undefined }))).pipe(
          Effect.flatMap((rejected) =>
            rejected.length === 0
              ? Effect.void
              : Effect.fail(
                  new BrokerError({ op: "publish", detail: `the in-process queue is closed; ${rejected.length} event(s) not accepted` })
                )
          )
        ),
      subscribe: Mailbox.toStream(mailbox),
      acknowledge: () => Effect.void,
      close: Effect.asVoid(mailbox.end),
      pending: mailbox.size.pipe(Effect.map((n) => Option.getOrElse(n, () => 0)))
    })
  })
)

import { Effect, Layer, Mailbox, Option } from "effect"
import * as AppConfig from "../Config.js"
import { type EventKind, probeQueueDepth } from "../status/Metrics.js"
import { BarBroker, Broker, BrokerError, type Channel, type Delivery, TradeBroker } from "./Broker.js"

/**
 * Single-process channel: a bounded in-memory mailbox. A full mailbox suspends the producer
 * (backpressure), events published before the consumer attaches wait for it, and `close` lets the
 * consumer drain everything before its stream ends. Nothing survives the process.
 */
export const makeDirectChannel = <A>(capacity: number) =>
  Effect.gen(function* () {
    const mailbox = yield* Effect.acquireRelease(Mailbox.make<Delivery<A>>({ capacity, strategy: "suspend" }), (m) =>
      m.shutdown
    )
    const channel: Channel<A> = {
      publish: (values) =>
        mailbox.offerAll(values.map((value) => ({ value, receipt: undefined }))).pipe(
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
    }
    return channel
  })

/** A channel of `kind`, its queue depth on /metrics. */
const channelOf = <A>(kind: EventKind) =>
  Effect.flatMap(AppConfig.directQueueCapacity, (capacity) => makeDirectChannel<A>(capacity)).pipe(
    Effect.tap((channel) => probeQueueDepth(kind, channel.pending))
  )

export const DirectBrokerLive = Layer.scoped(Broker, channelOf("ticker"))
export const DirectTradeBrokerLive = Layer.scoped(TradeBroker, channelOf("trade"))
export const DirectBarBrokerLive = Layer.scoped(BarBroker, channelOf("bar"))

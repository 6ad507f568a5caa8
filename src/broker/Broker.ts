import { Context, Data, type Effect, type Stream } from "effect"
import type { Tick } from "../domain/Ticker.js"

export class BrokerError extends Data.TaggedError("BrokerError")<{
  readonly op: "connect" | "publish" | "subscribe" | "commit"
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message() {
    return `broker ${this.op} failed: ${this.detail}`
  }
}

/** One event handed to a subscriber, decoded once at the broker boundary, with what the broker needs to acknowledge it later. */
export interface Delivery {
  readonly tick: Tick
  /** Opaque to the consumer: the broker's own position of this event (e.g. a Kafka offset). */
  readonly receipt: unknown
}

/**
 * The port between producer and consumer. Delivery is at least once: a consumer acknowledges a batch
 * only after its sinks stored it, and sinks are idempotent, so every event is stored exactly once.
 */
export class Broker extends Context.Tag("broker/Broker")<
  Broker,
  {
    /** Hands events to the broker; suspends (backpressure) while the broker's buffer is full. */
    readonly publish: (ticks: ReadonlyArray<Tick>) => Effect.Effect<void, BrokerError>
    /** The events for this consumer, in per-symbol order. Ends after `close`, once what was published is drained. */
    readonly subscribe: Stream.Stream<Delivery, BrokerError>
    /** Marks the deliveries as stored; the broker will not hand them out again. */
    readonly acknowledge: (deliveries: ReadonlyArray<Delivery>) => Effect.Effect<void, BrokerError>
    /** Stops taking new events; subscribers drain what is left and then their stream ends. */
    readonly close: Effect.Effect<void>
    /** Events waiting for the subscriber: in the in-process queue, or fetched from Kafka and not yet taken. */
    readonly pending: Effect.Effect<number>
  }
>() {}

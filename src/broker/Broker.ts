import { Context, Data, type Effect, type Stream } from "effect"
import type { Candle } from "../domain/Candles.js"
import type { Tick } from "../domain/Ticker.js"
import type { Trade } from "../domain/Trade.js"

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
export interface Delivery<A = Tick> {
  readonly value: A
  /** Opaque to the consumer: the broker's own position of this event (e.g. a Kafka offset). */
  readonly receipt: unknown
}

/**
 * One kind of event between producer and consumer (a Kafka topic, or an in-process queue). Delivery
 * is at least once: a consumer acknowledges a batch only after its sinks stored it, and sinks are
 * idempotent, so every event is stored exactly once.
 */
export interface Channel<A> {
  /** Hands events to the broker; suspends (backpressure) while the broker's buffer is full. */
  readonly publish: (values: ReadonlyArray<A>) => Effect.Effect<void, BrokerError>
  /** The events for this consumer, in per-symbol order. Ends after `close`, once what was published is drained. */
  readonly subscribe: Stream.Stream<Delivery<A>, BrokerError>
  /** Marks the deliveries as stored; the broker will not hand them out again. */
  readonly acknowledge: (deliveries: ReadonlyArray<Delivery<A>>) => Effect.Effect<void, BrokerError>
  /** Stops taking new events; subscribers drain what is left and then their stream ends. */
  readonly close: Effect.Effect<void>
  /** Events waiting for the subscriber: in the in-process queue, or fetched from Kafka and not yet taken. */
  readonly pending: Effect.Effect<number>
}

/** The port for 24h-ticker events (`crypto_prices`). */
export class Broker extends Context.Tag("broker/Broker")<Broker, Channel<Tick>>() {}

/** The port for aggregate trades (`crypto_trades`), keyed by symbol like the ticks. */
export class TradeBroker extends Context.Tag("broker/TradeBroker")<TradeBroker, Channel<Trade>>() {}

/** The port for closed 1m klines from the stream (`crypto_klines`), stored as `klines` candles. */
export class BarBroker extends Context.Tag("broker/BarBroker")<BarBroker, Channel<Candle>>() {}

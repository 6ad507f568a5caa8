import { Cause, Chunk, Duration, Effect, Option, Schedule, Stream } from "effect"
import * as AppConfig from "../Config.js"
import { BarBroker, Broker, type Channel, TradeBroker } from "../broker/Broker.js"
import { Health } from "../status/Health.js"
import { barLabels, type EventLabels, Metrics, tickerLabels, tradeLabels } from "../status/Metrics.js"
import type { Tick } from "../domain/Ticker.js"
import { BarSink, type Sink, TickSink, TradeSink } from "../store/TickSink.js"

/** A failing sink (disk full, locked database) is retried until it recovers: a batch is never dropped. */
const sinkRetry = Schedule.exponential("500 millis").pipe(
  Schedule.modifyDelay((d) => Duration.min(d, Duration.seconds(30)))
)

/**
 * One real turn of the event loop. The sinks write synchronously (SQLite, the raw log), and Effect's
 * scheduler counts a batch of tens of milliseconds as one step: a consumer that never runs dry (a
 * backlog, an overload) would otherwise keep HTTP, timers and signals waiting for seconds. A
 * setImmediate callback runs right after the I/O poll, so each batch lets them in for microseconds.
 */
const yieldToEventLoop = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/** What one consumer loop takes from and writes to: a broker channel and the sink of its kind. */
interface ConsumerParts<A> {
  readonly kind: string
  readonly channel: Channel<A>
  readonly sink: Sink<A>
  /** How /metrics labels its events. */
  readonly labels: EventLabels<A>
  /** The event time (µs) of a batch's newest value, for /health's `newest_event_at`; none for kinds it does not track. */
  readonly newestMicros?: (values: ReadonlyArray<A>) => number
}

/**
 * One consumer loop: the channel's stream in batches (size or time window, whichever comes first),
 * one sink call per batch, acknowledged to the broker only once stored. Ends when the stream ends.
 * /health learns how many events the consumer holds unacknowledged (and, for ticks, the newest stored).
 */
const consume = <A>(parts: ConsumerParts<A>) =>
  Effect.gen(function* () {
    const { channel, sink } = parts
    const health = yield* Effect.serviceOption(Health)
    const received = Option.getOrUndefined(yield* Effect.serviceOption(Metrics))?.tally("received", parts.labels)
    const batchSize = yield* AppConfig.consumerBatchSize
    const batchWindow = yield* AppConfig.consumerBatchWindow
    const holding = (delta: number) => (Option.isSome(health) ? health.value.consumerHolding(delta) : Effect.void)
    const stored = (values: ReadonlyArray<A>) =>
      Option.isSome(health) && parts.newestMicros !== undefined ? health.value.stored(parts.newestMicros(values)) : Effect.void
    yield* Effect.logInfo(`consuming ${parts.kind} into ${sink.name} in batches of up to ${batchSize}`)
    yield* channel.subscribe.pipe(
      Stream.mapChunksEffect((chunk) => Effect.as(holding(chunk.length), chunk)),
      Stream.groupedWithin(batchSize, batchWindow),
      Stream.mapEffect((chunk) => {
        const deliveries = Chunk.toReadonlyArray(chunk)
        const values = deliveries.map((d) => d.value)
        received?.count(values)
        return sink.writeBatch(values).pipe(
          Effect.tapError((e) => Effect.logError(`storing a batch of ${parts.kind} failed; retrying`, Cause.fail(e))),
          Effect.retry(sinkRetry),
          Effect.zipRight(channel.acknowledge(deliveries)),
          Effect.zipRight(holding(-deliveries.length)),
          Effect.zipRight(stored(values)),
          Effect.zipRight(Effect.logDebug("stored batch").pipe(Effect.annotateLogs({ kind: parts.kind, events: deliveries.length }))),
          Effect.zipRight(yieldToEventLoop)
        )
      }),
      Stream.runDrain
    )
    yield* Effect.logInfo(`consumer of ${parts.kind} stopped: the broker stream ended`)
  })

const newestTick = (ticks: ReadonlyArray<Tick>) => ticks.reduce((newest, t) => Math.max(newest, t.tsMicros), 0)

/** The consumer role for ticks. */
export const runConsumer = Effect.gen(function* () {
  yield* consume({ kind: "ticks", channel: yield* Broker, sink: yield* TickSink, labels: tickerLabels, newestMicros: newestTick })
}).pipe(Effect.annotateLogs({ service: "consumer" }))

/** The consumer of the stream's trades and closed bars (SOURCE=stream or both), beside the ticks' one. */
export const runStreamConsumer = Effect.gen(function* () {
  const trades = consume({ kind: "trades", channel: yield* TradeBroker, sink: yield* TradeSink, labels: tradeLabels })
  const bars = consume({ kind: "bars", channel: yield* BarBroker, sink: yield* BarSink, labels: barLabels })
  yield* Effect.all([trades, bars], { concurrency: "unbounded", discard: true })
}).pipe(Effect.annotateLogs({ service: "consumer" }))

import { Cause, Chunk, Duration, Effect, Option, Schedule, Stream } from "effect"
import * as AppConfig from "../Config.js"
import { Broker } from "../broker/Broker.js"
import { Health } from "../status/Health.js"
import { TickSink } from "../store/TickSink.js"

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

/**
 * The consumer role: the broker's stream in batches (size or time window, whichever comes first), one
 * sink call per batch, acknowledged to the broker only once stored. Ends when the broker's stream ends.
 * /health learns the newest stored event and how many events the consumer holds unacknowledged.
 */
export const runConsumer = Effect.gen(function* () {
  const broker = yield* Broker
  const sink = yield* TickSink
  const health = yield* Effect.serviceOption(Health)
  const batchSize = yield* AppConfig.consumerBatchSize
  const batchWindow = yield* AppConfig.consumerBatchWindow
  const holding = (delta: number) => (Option.isSome(health) ? health.value.consumerHolding(delta) : Effect.void)
  yield* Effect.logInfo(`consuming into ${sink.name} in batches of up to ${batchSize}`)
  yield* broker.subscribe.pipe(
    Stream.mapChunksEffect((chunk) => Effect.as(holding(chunk.length), chunk)),
    Stream.groupedWithin(batchSize, batchWindow),
    Stream.mapEffect((chunk) => {
      const deliveries = Chunk.toReadonlyArray(chunk)
      const ticks = deliveries.map((d) => d.tick)
      return sink.writeBatch(ticks).pipe(
        Effect.tapError((e) => Effect.logError("storing a batch failed; retrying", Cause.fail(e))),
        Effect.retry(sinkRetry),
        Effect.zipRight(broker.acknowledge(deliveries)),
        Effect.zipRight(holding(-deliveries.length)),
        Effect.zipRight(
          Option.isSome(health)
            ? health.value.stored(ticks.reduce((newest, t) => Math.max(newest, t.tsMicros), 0))
            : Effect.void
        ),
        Effect.zipRight(Effect.logDebug("stored batch").pipe(Effect.annotateLogs({ events: deliveries.length }))),
        Effect.zipRight(yieldToEventLoop)
      )
    }),
    Stream.runDrain
  )
  yield* Effect.logInfo("consumer stopped: the broker stream ended")
}).pipe(Effect.annotateLogs({ service: "consumer" }))

import { Cause, Chunk, Duration, Effect, Schedule, Stream } from "effect"
import * as AppConfig from "../Config.js"
import { Broker } from "../broker/Broker.js"
import { TickSink } from "../store/TickSink.js"

/** A failing sink (disk full, locked database) is retried until it recovers: a batch is never dropped. */
const sinkRetry = Schedule.exponential("500 millis").pipe(
  Schedule.modifyDelay((d) => Duration.min(d, Duration.seconds(30)))
)

/**
 * The consumer role: the broker's stream in batches (size or time window, whichever comes first), one
 * sink call per batch, acknowledged to the broker only once stored. Ends when the broker's stream ends.
 */
export const runConsumer = Effect.gen(function* () {
  const broker = yield* Broker
  const sink = yield* TickSink
  const batchSize = yield* AppConfig.consumerBatchSize
  const batchWindow = yield* AppConfig.consumerBatchWindow
  yield* Effect.logInfo(`consuming into ${sink.name} in batches of up to ${batchSize}`)
  yield* broker.subscribe.pipe(
    Stream.groupedWithin(batchSize, batchWindow),
    Stream.mapEffect((chunk) => {
      const deliveries = Chunk.toReadonlyArray(chunk)
      return sink.writeBatch(deliveries.map((d) => d.event)).pipe(
        Effect.tapError((e) => Effect.logError("storing a batch failed; retrying", Cause.fail(e))),
        Effect.retry(sinkRetry),
        Effect.zipRight(broker.acknowledge(deliveries)),
        Effect.zipRight(Effect.logDebug("stored batch").pipe(Effect.annotateLogs({ events: deliveries.length })))
      )
    }),
    Stream.runDrain
  )
  yield* Effect.logInfo("consumer stopped: the broker stream ended")
}).pipe(Effect.annotateLogs({ service: "consumer" }))

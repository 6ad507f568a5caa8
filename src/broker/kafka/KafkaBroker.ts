import { type ConfigError, Effect, Fiber, Layer } from "effect"
import type { Tick } from "../../domain/Ticker.js"
import { Health } from "../../status/Health.js"
import { Broker, type Delivery } from "../Broker.js"
import { KafkaSettings, makeKafka } from "./client.js"
import { tickCodec } from "./codec.js"
import { dlqTopic } from "./deadLetters.js"
import { makeLink } from "./link.js"
import { makeOutbox } from "./outbox.js"
import { makeSubscription } from "./subscription.js"
import { setUpTopics } from "./topics.js"

export { deadLetteredTotal, dlqTopic } from "./deadLetters.js"
export type { KafkaReceipt } from "./commits.js"

const make = Effect.gen(function* () {
  const settings = yield* KafkaSettings
  const health = yield* Health
  const kafka = makeKafka(settings, yield* Effect.runtime<never>())
  const { topic } = settings
  const link = yield* makeLink(health, settings.brokers.join(","), topic)
  const spec = { partitions: settings.partitions, replicationFactor: settings.replicationFactor }
  const topics = yield* setUpTopics(kafka, link, [
    { name: topic, ...spec },
    { name: dlqTopic(topic), ...spec }
  ])
  const outbox = yield* makeOutbox({ kafka, link, ready: topics.ready, topic, codec: tickCodec, capacity: settings.producerBuffer })
  const subscription = yield* makeSubscription({
    kafka,
    link,
    ready: topics.ready,
    topic,
    groupId: settings.groupId,
    codec: tickCodec,
    toDelivery: (value: Tick, receipt): Delivery => ({ value, receipt })
  })

  // Shutdown: stop fetching, then release the consumer and flush the producer side by side, so that even
  // with Kafka unreachable it stays within a few seconds.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function* () {
      yield* subscription.close
      yield* Effect.all([subscription.release, outbox.stop], { concurrency: "unbounded", discard: true })
      yield* Fiber.interrupt(topics.fiber)
    })
  )

  return Broker.of({
    publish: outbox.publish,
    subscribe: subscription.stream,
    acknowledge: subscription.acknowledge,
    close: subscription.close,
    pending: subscription.pending
  })
}).pipe(Effect.annotateLogs({ adapter: "kafka" }))

/**
 * The broker on Apache Kafka (kafkajs). Connection problems never fail the layer: every part retries in
 * the background while /health reports the broker down; publish buffers up to KAFKA_PRODUCER_BUFFER events,
 * then suspends. Delivery is at least once: offsets are committed only by `acknowledge`.
 */
export const KafkaBrokerLive: Layer.Layer<Broker, ConfigError.ConfigError, Health> = Layer.scoped(Broker, make)

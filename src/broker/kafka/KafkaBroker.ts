import { type ConfigError, type Context, Effect, Fiber, Layer } from "effect"
import type { Candle } from "../../domain/Candles.js"
import type { Tick } from "../../domain/Ticker.js"
import type { Trade } from "../../domain/Trade.js"
import type { Health } from "../../status/Health.js"
import { type EventKind, probeQueueDepth } from "../../status/Metrics.js"
import { BarBroker, Broker, type Channel, TradeBroker } from "../Broker.js"
import { barCodec } from "./barCodec.js"
import { KafkaSettings, makeKafka } from "./client.js"
import { tickCodec, type TopicCodec } from "./codec.js"
import { dlqTopic } from "./deadLetters.js"
import { KafkaStatus, KafkaStatusLive, makeLink } from "./link.js"
import { makeOutbox } from "./outbox.js"
import { makeSubscription } from "./subscription.js"
import { setUpTopics } from "./topics.js"
import { tradeCodec } from "./tradeCodec.js"

export { deadLetteredTotal, dlqTopic } from "./deadLetters.js"
export type { KafkaReceipt } from "./commits.js"

/** One kind of event on Kafka: its topic (with `<topic>.dlq`), its consumer group, and how its values travel. */
export interface TopicChannel<A> {
  readonly topic: (settings: KafkaSettings) => string
  readonly groupId: (settings: KafkaSettings) => string
  readonly codec: TopicCodec<A>
  readonly kind: EventKind
}

/**
 * Each topic has a consumer group of its own. kafkajs' assigner hands every topic's partitions to every
 * member of a group, whatever that member subscribed to, so one group over two topics would give a
 * trades consumer partitions of the prices topic (and leave them unconsumed).
 */
export const ticksChannel: TopicChannel<Tick> = { topic: (s) => s.topic, groupId: (s) => s.groupId, codec: tickCodec, kind: "ticker" }
export const tradesChannel: TopicChannel<Trade> = {
  topic: (s) => s.tradesTopic,
  groupId: (s) => `${s.groupId}.trades`,
  codec: tradeCodec,
  kind: "trade"
}
export const barsChannel: TopicChannel<Candle> = {
  topic: (s) => s.barsTopic,
  groupId: (s) => `${s.groupId}.bars`,
  codec: barCodec,
  kind: "bar"
}

/** The parts of one topic: a kafkajs client, its link to /health, topic setup, outbox and subscription. */
const makeChannel = <A>(spec: TopicChannel<A>) =>
  Effect.flatMap(KafkaSettings, (settings) => {
    const topic = spec.topic(settings)
    return build(spec, settings, topic).pipe(Effect.annotateLogs({ adapter: "kafka", topic }))
  })

const build = <A>(spec: TopicChannel<A>, settings: KafkaSettings, topic: string) =>
  Effect.gen(function* () {
    const status = yield* KafkaStatus
    const kafka = makeKafka(settings, yield* Effect.runtime<never>())
    const link = yield* makeLink(status, settings.brokers.join(","), topic)
    const partitioning = { partitions: settings.partitions, replicationFactor: settings.replicationFactor }
    const topics = yield* setUpTopics(kafka, link, [
      { name: topic, ...partitioning },
      { name: dlqTopic(topic), ...partitioning }
    ])
    const { codec } = spec
    const outbox = yield* makeOutbox({ kafka, link, ready: topics.ready, topic, codec, capacity: settings.producerBuffer })
    const subscription = yield* makeSubscription({
      kafka,
      link,
      ready: topics.ready,
      topic,
      kind: spec.kind,
      groupId: spec.groupId(settings),
      codec,
      toDelivery: (value: A, receipt) => ({ value, receipt })
    })
    yield* probeQueueDepth(spec.kind, subscription.pending)

    // Shutdown: stop fetching, then release the consumer and flush the producer side by side, so that even
    // with Kafka unreachable it stays within a few seconds.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* subscription.close
        yield* Effect.all([subscription.release, outbox.stop], { concurrency: "unbounded", discard: true })
        yield* Fiber.interrupt(topics.fiber)
      })
    )

    const channel: Channel<A> = {
      publish: outbox.publish,
      subscribe: subscription.stream,
      acknowledge: subscription.acknowledge,
      close: subscription.close,
      pending: subscription.pending
    }
    return channel
  })

/** `spec` as the layer of the port `tag`; /health's broker component is shared with the process's other topics. */
const channelLayer = <I, A>(
  tag: Context.Tag<I, Channel<A>>,
  spec: TopicChannel<A>
): Layer.Layer<I, ConfigError.ConfigError, Health> => Layer.scoped(tag, makeChannel(spec)).pipe(Layer.provide(KafkaStatusLive))

/**
 * The broker on Apache Kafka (kafkajs). Connection problems never fail the layer: every part retries in
 * the background while /health reports the broker down; publish buffers up to KAFKA_PRODUCER_BUFFER events,
 * then suspends. Delivery is at least once: offsets are committed only by `acknowledge`.
 *
 * Ticks on TOPIC_NAME in the group CONSUMER_GROUP_ID.
 */
export const KafkaBrokerLive: Layer.Layer<Broker, ConfigError.ConfigError, Health> = channelLayer(Broker, ticksChannel)

/** Aggregate trades on TRADES_TOPIC_NAME (+ `.dlq`), keyed by symbol, in the group `<CONSUMER_GROUP_ID>.trades`. */
export const KafkaTradeBrokerLive: Layer.Layer<TradeBroker, ConfigError.ConfigError, Health> = channelLayer(
  TradeBroker,
  tradesChannel
)

/** Closed 1m klines on BARS_TOPIC_NAME (+ `.dlq`), keyed by symbol, in the group `<CONSUMER_GROUP_ID>.bars`. */
export const KafkaBarBrokerLive: Layer.Layer<BarBroker, ConfigError.ConfigError, Health> = channelLayer(BarBroker, barsChannel)

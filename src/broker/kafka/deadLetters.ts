import { Cause, Effect, Metric } from "effect"
import { type IHeaders, type Kafka, type KafkaMessage, type Message, Partitioners } from "kafkajs"
import type { BrokerError } from "../Broker.js"
import { call, disconnect, KAFKAJS_RETRY, reconnectPolicy } from "./client.js"

/** The dead-letter topic of `topic`: messages that are not valid contract events go there. */
export const dlqTopic = (topic: string): string => `${topic}.dlq`

/** Messages moved to the dead-letter topic, tagged with the source `topic`. */
export const deadLetteredTotal = Metric.counter("kafka_dead_lettered_messages_total", {
  description: "messages that were not valid contract events, moved to <topic>.dlq",
  incremental: true
})

/** A message that is not a valid value of its topic, and why. */
export interface Poison {
  readonly message: KafkaMessage
  readonly reason: string
}

/** The message as it goes to the DLQ: key, value and headers as they came, plus where from and why. */
const deadLetterOf = (topic: string, partition: number, { message, reason }: Poison): Message => ({
  key: message.key,
  value: message.value,
  headers: {
    ...(message.headers ?? ({} as IHeaders)),
    "dlq-reason": reason,
    "dlq-source-topic": topic,
    "dlq-source-partition": String(partition),
    "dlq-source-offset": message.offset
  }
})

export interface DeadLetters {
  readonly connect: Effect.Effect<void, BrokerError>
  /** Writes `poison` to the DLQ (acks=all), retrying until it is there, then counts and logs each message. */
  readonly write: (partition: number, poison: ReadonlyArray<Poison>) => Effect.Effect<void, BrokerError>
  readonly disconnect: Effect.Effect<void>
}

/** The DLQ writer of one consumer session: a producer of its own, connected with the consumer. */
export const makeDeadLetters = (kafka: Kafka, topic: string): DeadLetters => {
  const dlq = dlqTopic(topic)
  const counter = deadLetteredTotal.pipe(Metric.tagged("topic", topic))
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: KAFKAJS_RETRY
  })
  const write = (partition: number, poison: ReadonlyArray<Poison>) => {
    const messages = poison.map((p) => deadLetterOf(topic, partition, p))
    return call("subscribe", `writing ${messages.length} message(s) to ${dlq}`, () =>
      producer.send({ topic: dlq, acks: -1, messages })
    ).pipe(
      Effect.tapError((e) => Effect.logWarning("dead-lettering failed; retrying", Cause.fail(e))),
      Effect.retry(reconnectPolicy),
      Effect.zipRight(Metric.incrementBy(counter, messages.length)),
      Effect.zipRight(Metric.value(counter)),
      Effect.flatMap(({ count }) =>
        Effect.forEach(poison, ({ message, reason }) =>
          Effect.logWarning(`moved an invalid message to ${dlq}: ${reason}`).pipe(
            Effect.annotateLogs({ partition, offset: message.offset, dead_lettered_total: count })
          )
        )
      ),
      Effect.asVoid
    )
  }
  return {
    connect: call("subscribe", "connecting the dead-letter producer", () => producer.connect()),
    write,
    disconnect: disconnect("dead-letter producer", producer)
  }
}

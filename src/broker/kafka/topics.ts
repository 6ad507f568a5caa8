import { Deferred, Effect, type Fiber, type Scope } from "effect"
import type { Kafka } from "kafkajs"
import type { BrokerError } from "../Broker.js"
import { call, connected, reconnectPolicy } from "./client.js"
import type { Link } from "./link.js"

/** A topic the adapter needs, as it is created when missing. */
export interface TopicSpec {
  readonly name: string
  readonly partitions: number
  readonly replicationFactor: number
}

/** Creates the missing topics through the admin client (never by auto-creation); warns about too few partitions. */
const ensureTopics = (kafka: Kafka, specs: ReadonlyArray<TopicSpec>) =>
  Effect.scoped(
    Effect.gen(function* () {
      const admin = yield* connected("connect", "admin client", () => kafka.admin())
      const existing = yield* call("connect", "listing topics", () => admin.listTopics())
      const missing = specs.filter((t) => !existing.includes(t.name))
      if (missing.length > 0) {
        const names = missing.map((t) => t.name).join(", ")
        yield* call("connect", `creating ${names}`, () =>
          admin.createTopics({
            waitForLeaders: true,
            topics: missing.map((t) => ({
              topic: t.name,
              numPartitions: t.partitions,
              replicationFactor: t.replicationFactor
            }))
          })
        )
        yield* Effect.logInfo(`created Kafka topic(s) ${names}`).pipe(
          Effect.annotateLogs({ partitions: missing[0]!.partitions, replication_factor: missing[0]!.replicationFactor })
        )
      }
      const names = specs.map((t) => t.name)
      const metadata = yield* call("connect", `describing ${names.join(", ")}`, () =>
        admin.fetchTopicMetadata({ topics: names })
      )
      for (const spec of specs) {
        const partitions = metadata.topics.find((t) => t.name === spec.name)?.partitions.length ?? 0
        if (partitions < spec.partitions) {
          yield* Effect.logWarning(
            `topic ${spec.name} has ${partitions} partition(s), fewer than TOPIC_PARTITIONS=${spec.partitions}; ` +
              "it is left as it is"
          )
        }
      }
    })
  )

export interface Topics {
  /** Completed once every topic exists; the sender and the consumer wait for it. */
  readonly ready: Deferred.Deferred<void>
  readonly fiber: Fiber.RuntimeFiber<void, BrokerError>
}

/** Sets the topics up in the background, retrying while Kafka is unreachable (reported on the link). */
export const setUpTopics = (
  kafka: Kafka,
  link: Link,
  specs: ReadonlyArray<TopicSpec>
): Effect.Effect<Topics, never, Scope.Scope> =>
  Effect.gen(function* () {
    const ready = yield* Deferred.make<void>()
    const fiber = yield* ensureTopics(kafka, specs).pipe(
      Effect.tapError(link.down(`cannot set up the Kafka topics at ${link.where}`)),
      Effect.retry(reconnectPolicy),
      Effect.zipRight(Deferred.succeed(ready, undefined)),
      Effect.zipRight(link.connected),
      Effect.zipRight(link.up),
      Effect.tapErrorCause(Effect.logError),
      Effect.asVoid,
      Effect.forkScoped
    )
    return { ready, fiber }
  })

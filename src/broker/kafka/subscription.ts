import {
  Cause,
  Deferred,
  Effect,
  Either,
  ExecutionStrategy,
  Exit,
  FiberSet,
  Mailbox,
  Option,
  Ref,
  Runtime,
  Schedule,
  Scope,
  Stream
} from "effect"
import type { EachBatchPayload, Kafka, KafkaMessage } from "kafkajs"
import * as AppConfig from "../../Config.js"
import { type EventKind, type EventLabels, gauges, Metrics, type Sample } from "../../status/Metrics.js"
import { BrokerError } from "../Broker.js"
import { call, describe, disconnect, KAFKAJS_RETRY, reconnectPolicy } from "./client.js"
import type { TopicCodec } from "./codec.js"
import { type KafkaReceipt, makeCommitter } from "./commits.js"
import { type DeadLetters, makeDeadLetters, type Poison } from "./deadLetters.js"
import type { Link } from "./link.js"
import { makeActivity, restartWatchdog, stallWatchdog } from "./watchdog.js"

/** Deliveries fetched and not yet taken by the subscriber; a full queue pauses fetching. */
const DELIVERY_QUEUE = 4_000

export interface SubscriptionOptions<A, D> {
  readonly kafka: Kafka
  readonly link: Link
  /** Completed once the topic exists. */
  readonly ready: Deferred.Deferred<void>
  readonly topic: string
  /** What the topic carries, for /metrics. */
  readonly kind: EventKind
  readonly groupId: string
  readonly codec: TopicCodec<A>
  /** The delivery the subscriber gets for a decoded value. */
  readonly toDelivery: (value: A, receipt: KafkaReceipt) => D
}

export interface Subscription<D> {
  /** The deliveries; the first subscriber starts the consumer, so a producer-only process never joins the group. */
  readonly stream: Stream.Stream<D, BrokerError>
  readonly acknowledge: (acked: ReadonlyArray<{ readonly receipt: unknown }>) => Effect.Effect<void>
  /** Stops fetching; the stream ends once what was fetched is taken. */
  readonly close: Effect.Effect<void>
  /** Ends the stream at once and releases the consumer (at shutdown, after `close`). */
  readonly release: Effect.Effect<void>
  readonly pending: Effect.Effect<number>
}

/**
 * Labels of messages moved to the DLQ: they did not decode, so the source is unknown, and the key is
 * the symbol only when it is a configured one (a bounded label whatever the topic holds).
 */
const poisonLabels = (kind: EventKind) =>
  Effect.map(Effect.orElseSucceed(AppConfig.symbols, () => []), (symbols): EventLabels<Poison> => {
    const known = new Set<string>(symbols)
    return {
      kind,
      source: () => "unknown",
      symbol: ({ message }) => {
        const key = message.key?.toString("utf8")
        return key !== undefined && known.has(key) ? key : "other"
      }
    }
  })

/** One topic consumed in a consumer group: kafkajs' `eachBatch` bridged into a bounded queue of deliveries. */
export const makeSubscription = <A, D>(o: SubscriptionOptions<A, D>): Effect.Effect<Subscription<D>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { codec, link, topic } = o
    const runtime = yield* Effect.runtime<never>()
    const deliveries = yield* Mailbox.make<D>({ capacity: DELIVERY_QUEUE, strategy: "suspend" })
    const closing = yield* Deferred.make<void>()
    const consumerDown = yield* Ref.make(false)
    const { book, current, acknowledge, deadLettered } = yield* makeCommitter(topic)
    /** Each held partition's high watermark at its last fetch: with the book, the consumer lag on /metrics. */
    const highWatermarks = new Map<number, number>()
    const metrics = Option.getOrUndefined(yield* Effect.serviceOption(Metrics))
    const deadLetterTally = metrics?.tally("dead_lettered", yield* poisonLabels(o.kind))
    if (metrics !== undefined) {
      yield* metrics.probe(
        gauges.consumerLag,
        Effect.sync(() => {
          const samples: Array<Sample<"topic" | "partition">> = []
          for (const [partition, high] of highWatermarks) {
            const next = book.committableOf(partition)
            if (next !== undefined) samples.push({ labels: { topic, partition: String(partition) }, value: Math.max(0, high - next) })
          }
          return samples
        })
      )
    }

    const decode = (message: KafkaMessage): Either.Either<A, string> =>
      message.value === null ? Either.left("the message has no value") : codec.decode(message.value.toString("utf8"))

    /** Hands the batch's valid messages to the queue and its invalid ones to the DLQ, in offset order. */
    const processBatch = (payload: EachBatchPayload, dlq: DeadLetters) =>
      Effect.gen(function* () {
        const { highWatermark, messages, partition } = payload.batch
        highWatermarks.set(partition, Number(highWatermark))
        const epoch = book.epochOf(partition)
        const decoded = messages.map(decode)
        let i = 0
        while (i < decoded.length && payload.isRunning() && !payload.isStale()) {
          const good: Array<D> = []
          const offsets: Array<number> = []
          for (; i < decoded.length; i++) {
            const value = decoded[i]!
            if (Either.isLeft(value)) break
            const offset = Number(messages[i]!.offset)
            offsets.push(offset)
            good.push(o.toDelivery(value.right, { topic, partition, offset, epoch }))
          }
          if (good.length > 0) {
            book.handOut(partition, epoch, offsets)
            const rejected = yield* deliveries.offerAll(good)
            if (rejected.length > 0) return // closed: the rest is redelivered after a restart
            payload.resolveOffset(messages[i - 1]!.offset)
          }
          const poison: Array<Poison> = []
          for (; i < decoded.length; i++) {
            const value = decoded[i]!
            if (Either.isRight(value)) break
            poison.push({ message: messages[i]!, reason: value.left })
          }
          if (poison.length > 0) {
            // Written before any later message is queued, so its offset can never be committed unless it is in the DLQ.
            yield* dlq.write(partition, poison)
            deadLetterTally?.count(poison)
            payload.resolveOffset(poison[poison.length - 1]!.message.offset)
            yield* deadLettered(partition, epoch, poison.map((p) => Number(p.message.offset)))
          }
        }
      })

    // A full queue can hold a batch longer than the session timeout; heartbeats keep the membership alive meanwhile.
    const heartbeats = (payload: EachBatchPayload) =>
      call("subscribe", "heartbeat", () => payload.heartbeat()).pipe(
        Effect.repeat(Schedule.spaced("1 second")),
        Effect.zipRight(Effect.never)
      )

    const eachBatch = (dlq: DeadLetters) => async (payload: EachBatchPayload) => {
      const exit = await Runtime.runPromiseExit(runtime)(
        Effect.gen(function* () {
          if (yield* Deferred.isDone(closing)) {
            payload.pause()
            return
          }
          yield* Effect.raceFirst(processBatch(payload, dlq), Effect.raceFirst(heartbeats(payload), Deferred.await(closing)))
        })
      )
      if (Exit.isFailure(exit)) {
        // kafkajs decides on rejoin/restart from its own error types, so give it back the original error.
        const error = Cause.squash(exit.cause)
        throw error instanceof BrokerError && error.cause !== undefined ? error.cause : error
      }
    }

    /** One consumer, from connecting until it crashes or stalls (then the caller reconnects with a fresh one). */
    const session = Effect.scoped(
      Effect.gen(function* () {
        yield* Deferred.await(o.ready)
        book.revokeAll() // a new member: the old session's deliveries are delivered again, not committed
        highWatermarks.clear()
        const crashed = yield* Deferred.make<never, BrokerError>()
        const run = yield* FiberSet.makeRuntime<never>()
        const touch = Runtime.runSync(runtime)
        const activity = yield* makeActivity
        const dlq = makeDeadLetters(o.kafka, topic)
        const consumer = o.kafka.consumer({
          groupId: o.groupId,
          // After a broker restart the group waits for the old member's session to expire before it
          // rebalances (kafkajs rejoins as a new member): 10 s rather than kafkajs' 30 s.
          sessionTimeout: 10_000,
          heartbeatInterval: 3_000,
          // Also the longest a paused consumer sleeps, which bounds how long its disconnect takes.
          maxWaitTimeInMs: 1_000,
          allowAutoTopicCreation: false,
          retry: KAFKAJS_RETRY
        })
        yield* Effect.addFinalizer(() =>
          Effect.all([disconnect("consumer", consumer), dlq.disconnect], { concurrency: "unbounded", discard: true })
        )
        consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
          const partitions = payload.memberAssignment[topic] ?? []
          book.assign(partitions)
          for (const p of highWatermarks.keys()) if (!partitions.includes(p)) highWatermarks.delete(p)
          run(
            Effect.gen(function* () {
              yield* activity.joined
              yield* Ref.set(consumerDown, false)
              yield* link.report("up", `consuming ${topic} as group ${o.groupId}`)
              yield* Effect.logInfo(`joined consumer group ${o.groupId}`).pipe(
                Effect.annotateLogs({ topic, partitions: partitions.join(",") })
              )
            })
          )
        })
        consumer.on(consumer.events.CRASH, ({ payload }) => {
          const error = new BrokerError({ op: "subscribe", detail: describe(payload.error), cause: payload.error })
          // kafkajs restarts after retriable errors; after any other this session ends and the loop reconnects.
          run(
            payload.restart
              ? link.outage(Ref.getAndSet(consumerDown, true), "the Kafka consumer crashed (kafkajs restarts it)", error).pipe(
                  Effect.zipRight(restartWatchdog(Ref.get(consumerDown), error)),
                  Effect.catchAll((e) => Deferred.fail(crashed, e))
                )
              : Deferred.fail(crashed, error)
          )
        })
        for (const event of [consumer.events.FETCH_START, consumer.events.HEARTBEAT]) {
          consumer.on(event, () => touch(activity.touch))
        }
        yield* stallWatchdog(activity, Deferred.isDone(closing)).pipe(
          Effect.catchAll((e) => Deferred.fail(crashed, e)),
          Effect.forkScoped
        )
        yield* dlq.connect
        yield* call("subscribe", "connecting the consumer", () => consumer.connect())
        yield* call("subscribe", `subscribing to ${topic}`, () => consumer.subscribe({ topics: [topic], fromBeginning: true }))
        yield* call("subscribe", "starting the consumer", () =>
          consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: eachBatch(dlq) })
        )
        yield* Effect.acquireRelease(Ref.set(current, Option.some(consumer)), () => Ref.set(current, Option.none()))
        if (yield* Deferred.isDone(closing)) consumer.pause([{ topic }])
        return yield* Deferred.await(crashed)
      })
    )

    const consumerScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const start = yield* Effect.once(
      session.pipe(
        Effect.tapError((e) => link.outage(Ref.getAndSet(consumerDown, true), "the Kafka consumer stopped", e)),
        Effect.retry(reconnectPolicy),
        Effect.tapErrorCause(Effect.logError),
        Effect.forkIn(consumerScope)
      )
    )

    const close = Effect.gen(function* () {
      if (!(yield* Deferred.succeed(closing, undefined))) return
      const consumer = yield* Ref.get(current)
      if (Option.isSome(consumer)) {
        yield* Effect.try(() => consumer.value.pause([{ topic }])).pipe(
          Effect.catchAll((e) => Effect.logDebug("pausing the consumer failed", Cause.fail(e)))
        )
      }
      yield* deliveries.end
      yield* Effect.logInfo(`Kafka subscription to ${topic} closing: fetching stopped, draining what was fetched`)
    })

    return {
      stream: Stream.unwrap(
        Effect.gen(function* () {
          if (!(yield* Deferred.isDone(closing))) yield* start
          return Mailbox.toStream(deliveries)
        })
      ),
      acknowledge,
      close,
      release: Effect.zipRight(deliveries.shutdown, Scope.close(consumerScope, Exit.void)),
      pending: Effect.map(deliveries.size, (n) => Option.getOrElse(n, () => 0))
    }
  })

import { Cause, Chunk, Deferred, Duration, Effect, Fiber, Queue, Ref, Schedule, type Scope } from "effect"
import type { Kafka, Message, Producer } from "kafkajs"
import { BrokerError } from "../Broker.js"
import { call, connected, KAFKAJS_RETRY, reconnectPolicy } from "./client.js"
import type { TopicCodec } from "./codec.js"
import type { Link } from "./link.js"
import { MemoizedDefaultPartitioner } from "./partitioner.js"

/** Messages taken from the buffer at once. */
const MAX_TAKE = 5_000
/**
 * Bytes in one send (estimated: key, value and a record's overhead). kafkajs puts a send's messages of
 * one partition in one record batch, and brokers reject a batch over `max.message.bytes` (1 MiB by default).
 */
const MAX_SEND_BYTES = 768 * 1024
const RECORD_OVERHEAD = 96
const FLUSH_TIMEOUT = Duration.seconds(3)
/** The shutdown's last attempt to hand buffered events to Kafka after the sender gave up for now. */
const FINAL_FLUSH_TIMEOUT = Duration.millis(1500)

const sizeOf = (m: Message): number =>
  RECORD_OVERHEAD + (typeof m.value === "string" ? m.value.length : (m.value?.length ?? 0)) + String(m.key ?? "").length

/** How many of `messages` (from the first) go into one send: at least one, at most MAX_SEND_BYTES. */
const sendSize = (messages: ReadonlyArray<Message>): number => {
  let bytes = sizeOf(messages[0]!)
  let n = 1
  while (n < messages.length && bytes + sizeOf(messages[n]!) <= MAX_SEND_BYTES) bytes += sizeOf(messages[n++]!)
  return n
}

export interface Outbox<A> {
  /** Encodes and buffers; suspends while the buffer is full; fails once stopping began. */
  readonly publish: (values: ReadonlyArray<A>) => Effect.Effect<void, BrokerError>
  /** Hands what is buffered to Kafka within a few seconds, reports what could not be, and stops the sender. */
  readonly stop: Effect.Effect<void>
}

export interface OutboxOptions<A> {
  readonly kafka: Kafka
  readonly link: Link
  /** Completed once the topic exists. */
  readonly ready: Deferred.Deferred<void>
  readonly topic: string
  readonly codec: TopicCodec<A>
  readonly capacity: number
}

/** A bounded buffer in front of one sender fiber, which sends batches with an idempotent producer (acks=all). */
export const makeOutbox = <A>(o: OutboxOptions<A>): Effect.Effect<Outbox<A>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { codec, link, topic } = o
    const buffer = yield* Queue.bounded<Message>(o.capacity)
    const unsent = yield* Ref.make<ReadonlyArray<Message>>([]) // taken from the buffer, not yet acknowledged by Kafka
    const closed = yield* Ref.make(false)

    // Queue.size counts a waiting taker as -1.
    const pendingEvents = Effect.zipWith(Ref.get(unsent), Queue.size(buffer), (held, queued) => held.length + Math.max(0, queued))

    /** Fills `unsent` from the buffer when it is empty, waiting for the first message. */
    const fill = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Ref.get(unsent), (held) =>
        held.length > 0
          ? Effect.void
          : restore(Queue.takeBetween(buffer, 1, MAX_TAKE)).pipe(
              // A waiting taker gets only the first message of an offerAll; the rest belongs in the same send.
              Effect.flatMap((first) =>
                Effect.map(Queue.takeUpTo(buffer, MAX_TAKE - first.length), (rest) => Chunk.appendAll(first, rest))
              ),
              Effect.flatMap((batch) => Ref.set(unsent, Chunk.toReadonlyArray(batch)))
            )
      )
    )

    /** Sends what `unsent` holds, in sends of at most MAX_SEND_BYTES, dropping each part once Kafka has it. */
    const sendUnsent = (producer: Producer) =>
      Effect.gen(function* () {
        let held = yield* Ref.get(unsent)
        while (held.length > 0) {
          const part = held.slice(0, sendSize(held))
          yield* call("publish", `sending ${part.length} event(s) to ${topic}`, () =>
            producer.send({ topic, acks: -1, messages: part })
          )
          held = held.slice(part.length)
          yield* Ref.set(unsent, held)
          yield* Effect.logDebug("sent to Kafka").pipe(Effect.annotateLogs({ events: part.length }))
        }
      })

    /** An idempotent producer (acks=all on every send), connected for the enclosing scope. */
    const connectProducer = connected("publish", "producer", () =>
      o.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: MemoizedDefaultPartitioner,
        retry: KAFKAJS_RETRY
      })
    )

    const sendSession = Effect.scoped(
      Effect.gen(function* () {
        yield* Deferred.await(o.ready)
        yield* fill // connect only once there is something to send: a consumer-only process never does
        const producer = yield* connectProducer
        yield* link.up.pipe(Effect.annotateLogs({ buffered_events: yield* pendingEvents }))
        yield* Effect.forever(Effect.zipRight(fill, sendUnsent(producer)))
      })
    )

    const sender = yield* sendSession.pipe(
      Effect.tapError((e) =>
        Effect.flatMap(pendingEvents, (held) =>
          link.down(`publishing to Kafka failed; ${held} event(s) held in memory`)(e)
        )
      ),
      Effect.retry(reconnectPolicy),
      Effect.tapErrorCause(Effect.logError),
      Effect.forkScoped
    )

    /**
     * One last attempt with a fresh producer, for what the sender still holds when it is between
     * reconnection attempts: Kafka may be back although the sender's backoff has not run out yet.
     */
    const finalFlush = Effect.scoped(
      Effect.gen(function* () {
        const queued = Chunk.toReadonlyArray(yield* Queue.takeAll(buffer))
        const held = yield* Ref.updateAndGet(unsent, (u) => [...u, ...queued])
        if (held.length === 0) return
        yield* sendUnsent(yield* connectProducer)
        yield* Effect.logInfo(`handed ${held.length} buffered event(s) to Kafka at shutdown`)
      })
    )

    const stop = Effect.gen(function* () {
      yield* Ref.set(closed, true)
      yield* Effect.zipWith(pendingEvents, link.isDown, (n, down) => n === 0 || down).pipe(
        Effect.repeat({ until: (done) => done, schedule: Schedule.spaced("20 millis") }),
        Effect.interruptible,
        Effect.timeout(FLUSH_TIMEOUT),
        Effect.ignore
      )
      if ((yield* pendingEvents) > 0) {
        yield* Fiber.interrupt(sender)
        yield* finalFlush.pipe(
          Effect.timeout(FINAL_FLUSH_TIMEOUT),
          Effect.catchAll((e) => Effect.logDebug("the final flush failed", Cause.fail(e)))
        )
      }
      const lost = yield* pendingEvents
      if (lost > 0) {
        yield* Effect.logError(`${lost} event(s) could not be handed to Kafka before shutdown and are lost`)
      }
      yield* Fiber.interrupt(sender)
      yield* Queue.shutdown(buffer)
    })

    const publish = (values: ReadonlyArray<A>) =>
      Effect.suspend(() => {
        if (values.length === 0) return Effect.void
        return Effect.flatMap(Ref.get(closed), (isClosed) => {
          if (isClosed) return new BrokerError({ op: "publish", detail: "the Kafka producer is shutting down" })
          const messages = new Array<Message>(values.length)
          for (let i = 0; i < values.length; i++) {
            const v = values[i]!
            messages[i] = { key: codec.key(v), value: codec.encode(v), headers: codec.headers }
          }
          return Queue.offerAll(buffer, messages)
        })
      }).pipe(Effect.asVoid)

    return { publish, stop } satisfies Outbox<A>
  })

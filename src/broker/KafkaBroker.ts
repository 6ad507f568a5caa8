import {
  Cause,
  Chunk,
  Config,
  type ConfigError,
  Deferred,
  Duration,
  Effect,
  Either,
  ExecutionStrategy,
  Exit,
  Fiber,
  Layer,
  LogLevel,
  Mailbox,
  Metric,
  Option,
  ParseResult,
  Queue,
  Ref,
  Runtime,
  Schedule,
  Schema,
  Scope,
  Stream
} from "effect"
import {
  type Consumer,
  type EachBatchPayload,
  type IHeaders,
  Kafka,
  type KafkaMessage,
  type LogEntry,
  logLevel,
  type Message,
  Partitioners,
  type Producer
} from "kafkajs"
import * as AppConfig from "../Config.js"
import { CONTRACT_VERSION, type Tick, TickerEventJson, toTick } from "../domain/Ticker.js"
import { Health } from "../status/Health.js"
import { Broker, BrokerError, type Delivery } from "./Broker.js"

/** The dead-letter topic of `topic`: messages that are not valid contract events go there. */
export const dlqTopic = (topic: string): string => `${topic}.dlq`

/** A delivery's position in Kafka; `acknowledge` commits it. */
export interface KafkaReceipt {
  readonly topic: string
  readonly partition: number
  readonly offset: string
}

/** Messages moved to the dead-letter topic, tagged with the source `topic`. */
export const deadLetteredTotal = Metric.counter("kafka_dead_lettered_messages_total", {
  description: "messages that were not valid contract events, moved to <topic>.dlq",
  incremental: true
})

const KafkaSettings = Config.all({
  brokers: AppConfig.kafkaBootstrapServers,
  topic: AppConfig.topicName,
  partitions: AppConfig.topicPartitions,
  replicationFactor: AppConfig.topicReplicationFactor,
  groupId: AppConfig.consumerGroupId,
  clientId: AppConfig.kafkaClientId,
  producerBuffer: AppConfig.kafkaProducerBuffer
})

// kafkajs only makes a few quick attempts itself; the loops below retry for as long as it takes.
const KAFKAJS_RETRY = { retries: 2, initialRetryTime: 300, maxRetryTime: 2_000 }
const MAX_SEND_BATCH = 1_000
const DELIVERY_QUEUE = 1_000
const FLUSH_TIMEOUT = Duration.seconds(3)
/** The shutdown's last attempt to hand buffered events to Kafka after the sender gave up for now. */
const FINAL_FLUSH_TIMEOUT = Duration.millis(1500)
const DISCONNECT_TIMEOUT = Duration.seconds(2)
const COMMIT_TIMEOUT = Duration.seconds(3)

/** Broker unreachable: 1 s, 2 s, 4 s … capped at 10 s; starts over after a minute without failures. */
/** How long kafkajs may take to rejoin the group after a crash it restarts from, before the adapter starts over. */
const RESTART_WATCHDOG = Duration.seconds(20)
/** A consumer with no fetch and no heartbeat for this long is considered stuck and replaced. */
const STALL_TIMEOUT = Duration.seconds(30)

const reconnectPolicy = Schedule.exponential("1 second").pipe(
  Schedule.jittered,
  Schedule.modifyDelay((d) => Duration.min(d, Duration.seconds(10))),
  Schedule.resetAfter("1 minute")
)

const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const call = <A>(op: BrokerError["op"], what: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new BrokerError({ op, detail: `${what}: ${describe(cause)}`, cause }) })

/**
 * Bounded and unable to fail: a release must never hang the shutdown. Releases run uninterruptibly, and a
 * timeout can only abandon an interruptible effect, hence `Effect.interruptible`.
 */
const disconnect = (name: string, client: { readonly disconnect: () => Promise<void> }) =>
  Effect.interruptible(Effect.tryPromise(() => client.disconnect())).pipe(
    Effect.timeout(DISCONNECT_TIMEOUT),
    Effect.catchAll((e) => Effect.logWarning(`kafka ${name} did not disconnect cleanly`, Cause.fail(e)))
  )

/** A kafkajs client, disconnected when the scope closes; connecting stays interruptible (EFFECT_STYLE P7). */
const connected = <C extends { readonly connect: () => Promise<void>; readonly disconnect: () => Promise<void> }>(
  op: BrokerError["op"],
  name: string,
  make: () => C
) =>
  Effect.acquireRelease(Effect.sync(make), (c) => disconnect(name, c)).pipe(
    Effect.tap((c) => call(op, `connecting the ${name}`, () => c.connect()))
  )

// kafkajs logs each failed attempt; the adapter reports what outlives its retries (outage, crash,
// recovery) itself, so that per-attempt chatter goes to debug. The idempotent producer's warning does
// not apply: publish retries above kafkajs with the same producer, so the broker still de-duplicates.
const kafkaJsChatter = [
  "Limiting retries for the idempotent producer",
  "Connection error",
  "Connection timeout",
  "Failed to connect to seed broker",
  "Response ",
  "Crash: ",
  "Restarting the consumer",
  "The group is rebalancing"
]

const annotationValue = (v: unknown): unknown => {
  if (v === null || ["string", "number", "boolean"].includes(typeof v)) return v
  if (v instanceof Error) return v.message
  try {
    return JSON.stringify(v)
  } catch {
    return String(v)
  }
}

const kafkaLogCreator = (runtime: Runtime.Runtime<never>) => () => (entry: LogEntry) => {
  const { message, timestamp: _timestamp, stack: _stack, ...extra } = entry.log
  const problem = entry.level === logLevel.ERROR || entry.level === logLevel.WARN
  const loud = problem && !kafkaJsChatter.some((q) => message.startsWith(q))
  const annotations: Record<string, unknown> = { kafkajs: entry.namespace }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) annotations[k] = annotationValue(v)
  Runtime.runSync(runtime)(
    Effect.logWithLevel(loud ? LogLevel.Warning : LogLevel.Debug, `kafkajs: ${message}`).pipe(
      Effect.annotateLogs(annotations)
    )
  )
}

const decodeEvent = Schema.decodeUnknownEither(TickerEventJson)

/** The contract event in a message as a Tick (decoded once, here), or one line saying why it is not one. */
const decodeMessage = (message: KafkaMessage): Either.Either<Tick, string> => {
  if (message.value === null) return Either.left("the message has no value")
  return decodeEvent(message.value.toString("utf8"), { errors: "all" }).pipe(
    Either.map(toTick),
    Either.mapLeft((error) =>
      ParseResult.ArrayFormatter.formatErrorSync(error)
        .map((issue) => (issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message))
        .join("; ")
        .replace(/\s+/g, " ")
        .slice(0, 500)
    )
  )
}

const isReceipt = (u: unknown): u is KafkaReceipt =>
  typeof u === "object" && u !== null && "topic" in u && "partition" in u && "offset" in u

/** Commit bookkeeping of one partition. */
interface PartitionState {
  /** The highest offset handed to the delivery queue (or about to be); -1 for none. */
  enqueued: bigint
  /** One past the highest acknowledged offset. */
  acked: bigint
  /** One past the highest dead-lettered offset. */
  handled: bigint
  /** The offset this member last committed in the current generation (the next one to read). */
  committed: bigint
}

const max = (a: bigint, b: bigint) => (a > b ? a : b)

type LinkState = "connecting" | "up" | "down"

const make = Effect.gen(function* () {
  const settings = yield* KafkaSettings
  const health = yield* Health
  const runtime = yield* Effect.runtime<never>()
  const layerScope = yield* Effect.scope
  const { topic } = settings
  const dlq = dlqTopic(topic)
  const where = settings.brokers.join(",")
  const report = (state: "up" | "down" | "starting", detail: string) => health.setBroker(state, "kafka", detail)
  const runFork = Runtime.runFork(runtime)

  const kafka = new Kafka({
    clientId: settings.clientId,
    brokers: [...settings.brokers],
    connectionTimeout: 3_000,
    requestTimeout: 10_000,
    retry: KAFKAJS_RETRY,
    logCreator: kafkaLogCreator(runtime)
  })

  yield* report("starting", `connecting to ${where}`)
  const topicsReady = yield* Deferred.make<void>()
  const link = yield* Ref.make<LinkState>("connecting")
  /** Health says why; the log warns once per outage (with the cause), then only at debug. */
  const outage = (wasDown: Effect.Effect<boolean>, what: string, e: BrokerError) =>
    Effect.gen(function* () {
      yield* report("down", `${what}: ${e.detail}; retrying`)
      if (yield* wasDown) yield* Effect.logDebug(`${what}; still retrying`, Cause.fail(e))
      else yield* Effect.logWarning(`${what}; retrying until it works`, Cause.fail(e))
    })
  const linkDown = (what: string) => (e: BrokerError) =>
    outage(Effect.map(Ref.getAndSet(link, "down"), (before) => before === "down"), what, e)
  const linkUp = Effect.gen(function* () {
    if ((yield* Ref.getAndSet(link, "up")) !== "down") return
    yield* report("up", `connected to ${where}; topic ${topic}`)
    yield* Effect.logInfo("Kafka is reachable again")
  })

  // ---- topics: created through the admin client, never by auto-creation

  const ensureTopics = Effect.scoped(
    Effect.gen(function* () {
      const admin = yield* connected("connect", "admin client", () => kafka.admin())
      const existing = yield* call("connect", "listing topics", () => admin.listTopics())
      const missing = [topic, dlq].filter((t) => !existing.includes(t))
      if (missing.length > 0) {
        yield* call("connect", `creating ${missing.join(", ")}`, () =>
          admin.createTopics({
            waitForLeaders: true,
            topics: missing.map((t) => ({
              topic: t,
              numPartitions: settings.partitions,
              replicationFactor: settings.replicationFactor
            }))
          })
        )
        yield* Effect.logInfo(`created Kafka topic(s) ${missing.join(", ")}`).pipe(
          Effect.annotateLogs({ partitions: settings.partitions, replication_factor: settings.replicationFactor })
        )
      }
      const metadata = yield* call("connect", `describing ${topic}`, () =>
        admin.fetchTopicMetadata({ topics: [topic] })
      )
      const partitions = metadata.topics[0]?.partitions.length ?? 0
      if (partitions < settings.partitions) {
        yield* Effect.logWarning(
          `topic ${topic} has ${partitions} partition(s), fewer than TOPIC_PARTITIONS=${settings.partitions}; ` +
            "it is left as it is"
        )
      }
    })
  )

  const setupFiber = yield* ensureTopics.pipe(
    Effect.tapError(linkDown(`cannot set up the Kafka topics at ${where}`)),
    Effect.retry(reconnectPolicy),
    Effect.zipRight(Deferred.succeed(topicsReady, undefined)),
    Effect.zipRight(report("up", `connected to ${where}; topic ${topic}`)),
    Effect.zipRight(linkUp),
    Effect.tapErrorCause(Effect.logError),
    Effect.forkScoped
  )

  // ---- producer: a bounded buffer in front of one sender fiber

  const outbox = yield* Queue.bounded<Message>(settings.producerBuffer)
  const unsent = yield* Ref.make<ReadonlyArray<Message>>([]) // taken from the outbox, not yet acknowledged by Kafka
  const closed = yield* Ref.make(false)
  const encode = Schema.encode(TickerEventJson)
  const headers = { "contract-version": CONTRACT_VERSION, "content-type": "application/json" }

  const toMessage = (tick: Tick) =>
    encode(tick.event).pipe(
      Effect.map((value): Message => ({ key: tick.symbol, value, headers })),
      Effect.mapError(
        (cause) => new BrokerError({ op: "publish", detail: `not a valid contract event: ${cause.message}`, cause })
      )
    )

  // Queue.size counts a waiting taker as -1.
  const pendingEvents = Effect.zipWith(
    Ref.get(unsent),
    Queue.size(outbox),
    (held, queued) => held.length + Math.max(0, queued)
  )

  const nextBatch = Effect.uninterruptibleMask((restore) =>
    Ref.get(unsent).pipe(
      Effect.flatMap((held) =>
        held.length > 0
          ? Effect.succeed(held)
          : restore(Queue.takeBetween(outbox, 1, MAX_SEND_BATCH)).pipe(
              // A waiting taker gets only the first event of an offerAll; the rest belongs in the same send.
              Effect.flatMap((first) =>
                Queue.takeUpTo(outbox, MAX_SEND_BATCH - first.length).pipe(
                  Effect.map((rest) => Chunk.appendAll(first, rest))
                )
              ),
              Effect.map(Chunk.toReadonlyArray),
              Effect.tap((batch) => Ref.set(unsent, batch))
            )
      )
    )
  )

  /** An idempotent producer (acks=all on every send), connected for the enclosing scope. */
  const connectProducer = connected("publish", "producer", () =>
    kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
      retry: KAFKAJS_RETRY
    })
  )

  const sendSession = Effect.scoped(
    Effect.gen(function* () {
      yield* Deferred.await(topicsReady)
      yield* nextBatch // connect only once there is something to send: a consumer-only process never does
      const producer = yield* connectProducer
      yield* linkUp.pipe(Effect.annotateLogs({ buffered_events: yield* pendingEvents }))
      yield* Effect.forever(
        nextBatch.pipe(
          Effect.flatMap((batch) =>
            call("publish", `sending ${batch.length} event(s) to ${topic}`, () =>
              producer.send({ topic, acks: -1, messages: [...batch] })
            )
          ),
          Effect.zipRight(Ref.getAndSet(unsent, [])),
          Effect.flatMap((sent) => Effect.logDebug("sent to Kafka").pipe(Effect.annotateLogs({ events: sent.length })))
        )
      )
    })
  )

  const senderFiber = yield* sendSession.pipe(
    Effect.tapError((e) =>
      Effect.gen(function* () {
        const held = yield* pendingEvents
        yield* linkDown(`publishing to Kafka failed; ${held} event(s) held in memory`)(e)
      })
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
      const held = [...(yield* Ref.get(unsent)), ...Chunk.toReadonlyArray(yield* Queue.takeAll(outbox))]
      yield* Ref.set(unsent, held)
      if (held.length === 0) return
      const producer = yield* connectProducer
      yield* call("publish", `sending ${held.length} event(s) to ${topic}`, () =>
        producer.send({ topic, acks: -1, messages: held })
      )
      yield* Ref.set(unsent, [])
      yield* Effect.logInfo(`handed ${held.length} buffered event(s) to Kafka at shutdown`)
    })
  )

  /**
   * Hands what is buffered to Kafka for at most FLUSH_TIMEOUT: through the running sender while it is
   * connected, else in one final attempt of its own. What still fails is reported as lost.
   */
  const stopProducer = Effect.gen(function* () {
    yield* Ref.set(closed, true)
    yield* Effect.zipWith(pendingEvents, Ref.get(link), (n, state) => n === 0 || state === "down").pipe(
      Effect.repeat({ until: (done) => done, schedule: Schedule.spaced("20 millis") }),
      Effect.interruptible,
      Effect.timeout(FLUSH_TIMEOUT),
      Effect.ignore
    )
    if ((yield* pendingEvents) > 0) {
      yield* Fiber.interrupt(senderFiber)
      yield* finalFlush.pipe(
        Effect.timeout(FINAL_FLUSH_TIMEOUT),
        Effect.catchAll((e) => Effect.logDebug("the final flush failed", Cause.fail(e)))
      )
    }
    const lost = yield* pendingEvents
    if (lost > 0) {
      yield* Effect.logError(`${lost} event(s) could not be handed to Kafka before shutdown and are lost`)
    }
    yield* Fiber.interrupt(senderFiber)
    yield* Queue.shutdown(outbox)
  })

  const publish = (ticks: ReadonlyArray<Tick>) =>
    Effect.gen(function* () {
      if (ticks.length === 0) return
      if (yield* Ref.get(closed)) {
        return yield* new BrokerError({ op: "publish", detail: "the Kafka producer is shutting down" })
      }
      const messages = yield* Effect.forEach(ticks, (t) => toMessage(t))
      yield* Queue.offerAll(outbox, messages)
    })

  // ---- consumer: started by the first subscriber, so a producer-only process never joins the group

  const deliveries = yield* Mailbox.make<Delivery>({ capacity: DELIVERY_QUEUE, strategy: "suspend" })
  const closing = yield* Deferred.make<void>()
  const current = yield* Ref.make<Option.Option<Consumer>>(Option.none())
  const commitLock = yield* Effect.makeSemaphore(1)
  const consumerDown = yield* Ref.make(false)
  const partitionStates = new Map<number, PartitionState>()
  let assigned: ReadonlySet<number> = new Set() // this member's partitions in the current generation
  const stateOf = (partition: number): PartitionState => {
    let s = partitionStates.get(partition)
    if (s === undefined) {
      s = { enqueued: -1n, acked: 0n, handled: 0n, committed: 0n }
      partitionStates.set(partition, s)
    }
    return s
  }
  const deadLettered = deadLetteredTotal.pipe(Metric.tagged("topic", topic))

  /** Commits and records the offsets; a failure is not fatal: the events are redelivered, the sinks are idempotent. */
  const commit = (offsets: ReadonlyArray<{ readonly partition: number; readonly offset: bigint }>) =>
    Effect.gen(function* () {
      if (offsets.length === 0) return
      const consumer = yield* Ref.get(current)
      const detail = offsets.map((o) => `${o.partition}@${o.offset}`).join(", ")
      if (Option.isNone(consumer)) {
        return yield* Effect.logWarning(
          `offsets ${detail} not committed: the consumer is reconnecting; those events will be delivered again`
        )
      }
      const result = yield* call("commit", `committing ${detail}`, () =>
        consumer.value.commitOffsets(
          offsets.map((o) => ({ topic, partition: o.partition, offset: o.offset.toString() }))
        )
      ).pipe(
        Effect.timeoutFail({
          duration: COMMIT_TIMEOUT,
          onTimeout: () => new BrokerError({ op: "commit", detail: `committing ${detail} timed out` })
        }),
        Effect.either
      )
      if (Either.isLeft(result)) {
        // Typically REBALANCE_IN_PROGRESS / ILLEGAL_GENERATION during a rebalance, or the broker being down.
        // A later commit of the partition covers these offsets; if none comes, they are delivered again.
        return yield* Effect.logWarning(
          "committing offsets failed; those events will be delivered again unless a later commit covers them",
          Cause.fail(result.left)
        )
      }
      for (const o of offsets) {
        const s = stateOf(o.partition)
        s.committed = max(s.committed, o.offset)
      }
    })

  const acknowledge = (acked: ReadonlyArray<Delivery>) =>
    Effect.gen(function* () {
      const highest = new Map<number, bigint>()
      for (const { receipt } of acked) {
        if (!isReceipt(receipt) || receipt.topic !== topic) continue
        const offset = BigInt(receipt.offset)
        const seen = highest.get(receipt.partition)
        if (seen === undefined || offset > seen) highest.set(receipt.partition, offset)
      }
      if (highest.size === 0) return
      yield* commitLock.withPermits(1)(
        Effect.suspend(() => {
          const targets: Array<{ partition: number; offset: bigint }> = []
          const moved: Array<number> = []
          for (const [partition, offset] of highest) {
            // Revoked by a rebalance: its new owner starts from the committed offset and redelivers; committing
            // here could move the group's offset backwards under it.
            if (!assigned.has(partition)) {
              moved.push(partition)
              continue
            }
            const s = stateOf(partition)
            s.acked = max(s.acked, offset + 1n)
            // Nothing of this partition waits in the queue any more: dead-lettered messages after it count too.
            const next = s.enqueued <= offset ? max(offset + 1n, s.handled) : offset + 1n
            if (next > s.committed) targets.push({ partition, offset: next })
          }
          const skipped =
            moved.length === 0
              ? Effect.void
              : Effect.logInfo(
                  `not committing partition(s) ${moved.join(", ")}: ` +
                    "reassigned to another consumer, which delivers them again"
                )
          return Effect.zipRight(skipped, commit(targets))
        })
      )
    })

  /** A dead-lettered message at the end of what was fetched is committed at once if nothing before it is pending. */
  const markHandled = (partition: number, offset: bigint) =>
    commitLock.withPermits(1)(
      Effect.suspend(() => {
        const s = stateOf(partition)
        s.handled = max(s.handled, offset + 1n)
        const idle = s.acked > s.enqueued && assigned.has(partition)
        return idle && s.handled > s.committed ? commit([{ partition, offset: s.handled }]) : Effect.void
      })
    )

  const deadLetter = (
    producer: Producer,
    partition: number,
    poison: ReadonlyArray<{ readonly message: KafkaMessage; readonly reason: string }>
  ) => {
    const messages = poison.map(({ message, reason }): Message => ({
      key: message.key,
      value: message.value,
      headers: {
        ...(message.headers ?? ({} as IHeaders)),
        "dlq-reason": reason,
        "dlq-source-topic": topic,
        "dlq-source-partition": String(partition),
        "dlq-source-offset": message.offset
      }
    }))
    return call("subscribe", `writing ${messages.length} message(s) to ${dlq}`, () =>
      producer.send({ topic: dlq, acks: -1, messages })
    ).pipe(
      Effect.tapError((e) => Effect.logWarning("dead-lettering failed; retrying", Cause.fail(e))),
      Effect.retry(reconnectPolicy),
      Effect.zipRight(Metric.incrementBy(deadLettered, messages.length)),
      Effect.zipRight(Metric.value(deadLettered)),
      Effect.flatMap(({ count }) =>
        Effect.forEach(poison, ({ message, reason }) =>
          Effect.logWarning(`moved an invalid message to ${dlq}: ${reason}`).pipe(
            Effect.annotateLogs({ partition, offset: message.offset, dead_lettered_total: count })
          )
        )
      )
    )
  }

  const processBatch = (payload: EachBatchPayload, dlqProducer: Producer) =>
    Effect.gen(function* () {
      const { batch } = payload
      const { partition } = batch
      const decoded = batch.messages.map((message) => ({ message, tick: decodeMessage(message) }))
      let i = 0
      while (i < decoded.length && payload.isRunning() && !payload.isStale()) {
        const good: Array<Delivery> = []
        for (; i < decoded.length; i++) {
          const { message, tick } = decoded[i]!
          if (Either.isLeft(tick)) break
          const receipt: KafkaReceipt = { topic, partition, offset: message.offset }
          good.push({ tick: tick.right, receipt })
        }
        if (good.length > 0) {
          const last = (good[good.length - 1]!.receipt as KafkaReceipt).offset
          const s = stateOf(partition)
          s.enqueued = max(s.enqueued, BigInt(last))
          const rejected = yield* deliveries.offerAll(good)
          if (rejected.length > 0) return // closed: the rest is redelivered after a restart
          payload.resolveOffset(last)
        }
        const poison: Array<{ message: KafkaMessage; reason: string }> = []
        for (; i < decoded.length; i++) {
          const { message, tick } = decoded[i]!
          if (Either.isRight(tick)) break
          poison.push({ message, reason: tick.left })
        }
        if (poison.length > 0) {
          // Written before any later message is queued, so its offset can never be committed unless it is in the DLQ.
          yield* deadLetter(dlqProducer, partition, poison)
          const last = poison[poison.length - 1]!.message.offset
          payload.resolveOffset(last)
          yield* markHandled(partition, BigInt(last))
        }
      }
    })

  // A full queue can hold a batch longer than the session timeout; heartbeats keep the membership alive meanwhile.
  const heartbeats = (payload: EachBatchPayload) =>
    call("subscribe", "heartbeat", () => payload.heartbeat()).pipe(
      Effect.repeat(Schedule.spaced("1 second")),
      Effect.zipRight(Effect.never)
    )

  const eachBatch = (dlqProducer: Producer) => async (payload: EachBatchPayload) => {
    const exit = await Runtime.runPromiseExit(runtime)(
      Effect.gen(function* () {
        if (yield* Deferred.isDone(closing)) {
          payload.pause()
          return
        }
        yield* Effect.raceFirst(
          processBatch(payload, dlqProducer),
          Effect.raceFirst(heartbeats(payload), Deferred.await(closing))
        )
      })
    )
    if (Exit.isFailure(exit)) {
      // kafkajs decides on rejoin/restart from its own error types, so give it back the original error.
      const error = Cause.squash(exit.cause)
      throw error instanceof BrokerError && error.cause !== undefined ? error.cause : error
    }
  }

  const consumerSession = Effect.scoped(
    Effect.gen(function* () {
      yield* Deferred.await(topicsReady)
      const crashed = yield* Deferred.make<never, BrokerError>()
      const dlqProducer = kafka.producer({
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner,
        retry: KAFKAJS_RETRY
      })
      const consumer = kafka.consumer({
        groupId: settings.groupId,
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
        Effect.all([disconnect("consumer", consumer), disconnect("dead-letter producer", dlqProducer)], {
          concurrency: "unbounded",
          discard: true
        })
      )
      consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
        const partitions = payload.memberAssignment[topic] ?? []
        assigned = new Set(partitions)
        for (const s of partitionStates.values()) s.committed = 0n // a new generation: commits start over
        runFork(
          Effect.gen(function* () {
            yield* Ref.set(consumerDown, false)
            yield* report("up", `consuming ${topic} as group ${settings.groupId}`)
            yield* Effect.logInfo(`joined consumer group ${settings.groupId}`).pipe(
              Effect.annotateLogs({ partitions: partitions.join(",") })
            )
          })
        )
      })
      consumer.on(consumer.events.CRASH, ({ payload }) => {
        const error = new BrokerError({ op: "subscribe", detail: describe(payload.error), cause: payload.error })
        // kafkajs restarts after retriable errors; after any other this session ends and the loop reconnects.
        runFork(
          payload.restart
            ? outage(Ref.getAndSet(consumerDown, true), "the Kafka consumer crashed (kafkajs restarts it)", error).pipe(
                // kafkajs' own restart can stall after a broker restart (e.g. "The coordinator is
                // loading"): if the group is not joined again in time, end this session and reconnect.
                Effect.zipRight(Effect.sleep(RESTART_WATCHDOG)),
                Effect.zipRight(Ref.get(consumerDown)),
                Effect.flatMap((down) => (down ? Deferred.fail(crashed, error) : Effect.void))
              )
            : Deferred.fail(crashed, error)
        )
      })
      // A consumer that neither fetches nor heartbeats for STALL_TIMEOUT is stuck (seen after a broker
      // restart, with no CRASH event): end this session so the loop reconnects with a fresh one.
      let lastActivity = Date.now()
      let joined = false // armed once the group is joined: the first join may wait out an old member's session
      const touch = () => {
        lastActivity = Date.now()
      }
      consumer.on(consumer.events.GROUP_JOIN, () => {
        joined = true
      })
      for (const event of [consumer.events.FETCH_START, consumer.events.HEARTBEAT, consumer.events.GROUP_JOIN]) {
        consumer.on(event, touch)
      }
      yield* Effect.gen(function* () {
        if (!joined || (yield* Deferred.isDone(closing))) return
        const idle = Date.now() - lastActivity
        if (idle > Duration.toMillis(STALL_TIMEOUT)) {
          yield* Deferred.fail(
            crashed,
            new BrokerError({ op: "subscribe", detail: `the consumer made no progress for ${Math.round(idle / 1000)} s` })
          )
        }
      }).pipe(Effect.repeat(Schedule.spaced("2 seconds")), Effect.forkScoped)
      yield* call("subscribe", "connecting the dead-letter producer", () => dlqProducer.connect())
      yield* call("subscribe", "connecting the consumer", () => consumer.connect())
      yield* call("subscribe", `subscribing to ${topic}`, () =>
        consumer.subscribe({ topics: [topic], fromBeginning: true })
      )
      yield* call("subscribe", "starting the consumer", () =>
        consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: eachBatch(dlqProducer) })
      )
      yield* Effect.acquireRelease(Ref.set(current, Option.some(consumer)), () => Ref.set(current, Option.none()))
      if (yield* Deferred.isDone(closing)) consumer.pause([{ topic }])
      return yield* Deferred.await(crashed)
    })
  )

  const consumerScope = yield* Scope.fork(layerScope, ExecutionStrategy.sequential)
  const startConsumer = yield* Effect.once(
    consumerSession.pipe(
      Effect.tapError((e) => outage(Ref.getAndSet(consumerDown, true), "the Kafka consumer stopped", e)),
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
    yield* Effect.logInfo("Kafka subscription closing: fetching stopped, draining what was fetched")
  })

  // Shutdown: stop fetching, then release the consumer and flush the producer side by side, so that even
  // with Kafka unreachable it stays within a few seconds.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function* () {
      yield* close
      yield* deliveries.shutdown
      yield* Effect.all([Scope.close(consumerScope, Exit.void), stopProducer], {
        concurrency: "unbounded",
        discard: true
      })
      yield* Fiber.interrupt(setupFiber)
    })
  )

  return Broker.of({
    publish,
    subscribe: Stream.unwrap(
      Effect.gen(function* () {
        if (!(yield* Deferred.isDone(closing))) yield* startConsumer
        return Mailbox.toStream(deliveries)
      })
    ),
    acknowledge,
    close,
    pending: Effect.map(deliveries.size, (n) => Option.getOrElse(n, () => 0))
  })
}).pipe(Effect.annotateLogs({ adapter: "kafka" }))

/**
 * The broker on Apache Kafka (kafkajs). Connection problems never fail the layer: every part retries in
 * the background while /health reports the broker down; publish buffers up to KAFKA_PRODUCER_BUFFER events,
 * then suspends. Delivery is at least once: offsets are committed only by `acknowledge`.
 */
export const KafkaBrokerLive: Layer.Layer<Broker, ConfigError.ConfigError, Health> = Layer.scoped(Broker, make)

import { Context, Effect, Exit, Layer, Schedule, Scope } from "effect"
import { type IHeaders, Kafka, type KafkaMessage, logLevel, type Message } from "kafkajs"
import { randomBytes } from "node:crypto"
import { inject } from "vitest"
import { Broker } from "../../src/broker/Broker.js"
import { KafkaBrokerLive } from "../../src/broker/kafka/KafkaBroker.js"
import {
  formatInstantMicros,
  type Tick,
  TICKER_24HR_SOURCE,
  type TickerEvent,
  type TickerSymbol,
  toTick
} from "../../src/domain/Ticker.js"
import { Health } from "../../src/status/Health.js"
import { withEnv } from "./effect.js"

/** The broker the global setup started (or KAFKA_BOOTSTRAP_SERVERS). */
export const kafkaBootstrap = (): string => inject("kafkaBootstrap")

const suffix = () => randomBytes(5).toString("hex")
export const uniqueTopic = (): string => `crypto_prices_test_${suffix()}`
export const uniqueGroup = (): string => `crypto_consumer_test_${suffix()}`

/** Configuration for a KafkaBrokerLive on `topic`; `overrides` wins. */
export const brokerEnv = (topic: string, overrides: Record<string, string> = {}): Record<string, string> => ({
  KAFKA_BOOTSTRAP_SERVERS: kafkaBootstrap(),
  TOPIC_NAME: topic,
  CONSUMER_GROUP_ID: `${topic}_group`,
  KAFKA_CLIENT_ID: "kafka-broker-test",
  ...overrides
})

export interface RunningBroker {
  readonly broker: Context.Tag.Service<Broker>
  readonly health: Health
  /** Releases the layer (what SIGTERM does after the roles stopped). */
  readonly stop: Effect.Effect<void>
}

/** Builds KafkaBrokerLive in a scope of its own, so a test can tear it down midway (the test's scope closes it too). */
export const startBroker = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const scope = yield* Effect.acquireRelease(Scope.make(), (s) => Scope.close(s, Exit.void))
    const context = yield* Layer.buildWithScope(KafkaBrokerLive.pipe(Layer.provideMerge(Health.Default)), scope).pipe(
      withEnv(env)
    )
    const running: RunningBroker = {
      broker: Context.get(context, Broker),
      health: Context.get(context, Health),
      stop: Scope.close(scope, Exit.void)
    }
    return running
  })

const base = Date.UTC(2026, 0, 15, 14, 0, 0) * 1000

/** The `i`-th event of `symbol`: a distinct timestamp per (symbol, i), the index in `volume`. */
export const makeEvent = (symbol: string, i: number): TickerEvent => ({
  timestamp_utc: formatInstantMicros(base + i * 1_000_000 + 1),
  symbol: symbol as TickerSymbol,
  lastPrice: `${68000 + i}.25`,
  priceChangePercent: "1.87",
  volume: `${i}`,
  source: TICKER_24HR_SOURCE
})

/** `makeEvent(symbol, i)` as the Tick a producer publishes. */
export const makeTick = (symbol: string, i: number): Tick => toTick(makeEvent(symbol, i))

/** A kafkajs client for looking at topics from the outside; it logs nothing. */
const client = () => new Kafka({ clientId: "kafka-test-raw", brokers: [kafkaBootstrap()], logLevel: logLevel.NOTHING })

const withAdmin = <A>(f: (admin: ReturnType<Kafka["admin"]>) => Promise<A>) =>
  Effect.promise(async () => {
    const admin = client().admin()
    await admin.connect()
    try {
      return await f(admin)
    } finally {
      await admin.disconnect()
    }
  })

export const partitionCount = (topic: string) =>
  withAdmin(async (admin) => {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
    return topics[0]?.partitions.length ?? 0
  })

/** Per partition: the offset after the last message. */
export const endOffsets = (topic: string) =>
  withAdmin(async (admin) => {
    const offsets = await admin.fetchTopicOffsets(topic)
    return new Map(offsets.map((o) => [o.partition, Number(o.high)]))
  })

/** Per partition: the group's committed offset (-1 when none). */
export const committedOffsets = (groupId: string, topic: string) =>
  withAdmin(async (admin) => {
    const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] })
    return new Map((entry?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]))
  })

/** The group's committed offset has reached the end of every partition that holds data. */
export const allCommitted = (group: string, topic: string) =>
  Effect.zipWith(endOffsets(topic), committedOffsets(group, topic), (ends, committed) =>
    [...ends].every(([partition, end]) => end === 0 || committed.get(partition) === end)
  )

/** The messages of a topic, all partitions together, from `endOffsets`. */
export const sumOf = (offsets: ReadonlyMap<number, number>): number => [...offsets.values()].reduce((a, b) => a + b, 0)

/** Runs one of these look-ups from a plain async test. */
export const runScoped = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>): Promise<A> => Effect.runPromise(Effect.scoped(effect))

/** Writes messages straight to a topic, bypassing the broker adapter. */
export const produceRaw = (topic: string, messages: ReadonlyArray<Message>) =>
  Effect.promise(async () => {
    const producer = client().producer({ allowAutoTopicCreation: false })
    await producer.connect()
    try {
      await producer.send({ topic, acks: -1, messages: [...messages] })
    } finally {
      await producer.disconnect()
    }
  })

/**
 * Writes the valid messages `good(symbol, i)` of BTCUSDT (0..2) and ETHUSDT (0..1) with the four `poison`
 * ones (three keyed BTCUSDT, the last ETHUSDT) between them: BTCUSDT 0, poison 0, BTCUSDT 1, poison 1
 * and 2, BTCUSDT 2, ETHUSDT 0 and 1, poison 3, so that the last poison is last in ETHUSDT's partition
 * (nothing after it carries its commit).
 */
export const produceAmidPoison = (
  topic: string,
  good: (symbol: string, i: number) => Message,
  poison: ReadonlyArray<Message>
) =>
  produceRaw(topic, [
    good("BTCUSDT", 0),
    poison[0]!,
    good("BTCUSDT", 1),
    poison[1]!,
    poison[2]!,
    good("BTCUSDT", 2),
    good("ETHUSDT", 0),
    good("ETHUSDT", 1),
    poison[3]!
  ])

export interface RawMessage {
  readonly partition: number
  readonly offset: number
  readonly key: string | null
  readonly value: string | null
  readonly headers: Record<string, string>
}

const text = (v: IHeaders[string]): string =>
  v === undefined ? "" : Array.isArray(v) ? v.map((x) => x.toString()).join(",") : v.toString()

const toRaw = (partition: number, m: KafkaMessage): RawMessage => ({
  partition,
  offset: Number(m.offset),
  key: m.key?.toString("utf8") ?? null,
  value: m.value?.toString("utf8") ?? null,
  headers: Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, text(v)]))
})

/** Everything on `topic` up to its current end, in offset order per partition (a throwaway consumer group). */
export const readAll = (topic: string, timeoutMs = 20_000) =>
  Effect.gen(function* () {
    const ends = yield* endOffsets(topic)
    const total = [...ends.values()].reduce((a, b) => a + b, 0)
    if (total === 0) return [] as ReadonlyArray<RawMessage>
    return yield* Effect.promise(async () => {
      const consumer = client().consumer({ groupId: uniqueGroup(), maxWaitTimeInMs: 500 })
      const seen: Array<RawMessage> = []
      try {
        await consumer.connect()
        await consumer.subscribe({ topics: [topic], fromBeginning: true })
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`read ${seen.length} of ${total} message(s) from ${topic} in ${timeoutMs} ms`)),
            timeoutMs
          )
          consumer
            .run({
              eachMessage: async ({ partition, message }) => {
                seen.push(toRaw(partition, message))
                if (seen.length >= total) {
                  clearTimeout(timer)
                  resolve()
                }
              }
            })
            .catch(reject)
        })
      } finally {
        await consumer.disconnect()
      }
      return seen.sort((a, b) => a.partition - b.partition || a.offset - b.offset) as ReadonlyArray<RawMessage>
    })
  })

/** Re-checks `check` every 100 ms until it holds; the test dies after `timeoutMs`. */
export const waitFor = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, timeoutMs = 15_000) =>
  check.pipe(
    Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced("100 millis") }),
    Effect.timeoutFail({
      duration: timeoutMs,
      onTimeout: () => new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    }),
    Effect.orDie,
    Effect.asVoid
  )

import { Cause, Config, Duration, Effect, LogLevel, Runtime, Schedule } from "effect"
import { Kafka, type LogEntry, logLevel } from "kafkajs"
import * as AppConfig from "../../Config.js"
import { BrokerError } from "../Broker.js"

export const KafkaSettings = Config.all({
  brokers: AppConfig.kafkaBootstrapServers,
  topic: AppConfig.topicName,
  tradesTopic: AppConfig.tradesTopicName,
  barsTopic: AppConfig.barsTopicName,
  partitions: AppConfig.topicPartitions,
  replicationFactor: AppConfig.topicReplicationFactor,
  groupId: AppConfig.consumerGroupId,
  clientId: AppConfig.kafkaClientId,
  producerBuffer: AppConfig.kafkaProducerBuffer
})
export type KafkaSettings = Config.Config.Success<typeof KafkaSettings>

// kafkajs only makes a few quick attempts itself; the adapter's loops retry for as long as it takes.
export const KAFKAJS_RETRY = { retries: 2, initialRetryTime: 300, maxRetryTime: 2_000 }
const DISCONNECT_TIMEOUT = Duration.seconds(2)

/** Broker unreachable: 1 s, 2 s, 4 s … capped at 10 s; starts over after a minute without failures. */
export const reconnectPolicy = Schedule.exponential("1 second").pipe(
  Schedule.jittered,
  Schedule.modifyDelay((d) => Duration.min(d, Duration.seconds(10))),
  Schedule.resetAfter("1 minute")
)

export const describe = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** A kafkajs call as an Effect failing with a BrokerError that says what was being done. */
export const call = <A>(op: BrokerError["op"], what: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new BrokerError({ op, detail: `${what}: ${describe(cause)}`, cause }) })

/**
 * Bounded and unable to fail: a release must never hang the shutdown. Releases run uninterruptibly, and a
 * timeout can only abandon an interruptible effect, hence `Effect.interruptible`.
 */
export const disconnect = (name: string, client: { readonly disconnect: () => Promise<void> }) =>
  Effect.interruptible(Effect.tryPromise(() => client.disconnect())).pipe(
    Effect.timeout(DISCONNECT_TIMEOUT),
    Effect.catchAll((e) => Effect.logWarning(`kafka ${name} did not disconnect cleanly`, Cause.fail(e)))
  )

/** A kafkajs client, disconnected when the scope closes; connecting stays interruptible (EFFECT_STYLE P7). */
export const connected = <C extends { readonly connect: () => Promise<void>; readonly disconnect: () => Promise<void> }>(
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

/** kafkajs' log lines through the Effect logger. */
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

/** The kafkajs client of the layer; nothing connects until a part asks. */
export const makeKafka = (settings: KafkaSettings, runtime: Runtime.Runtime<never>): Kafka =>
  new Kafka({
    clientId: settings.clientId,
    brokers: [...settings.brokers],
    connectionTimeout: 3_000,
    requestTimeout: 10_000,
    retry: KAFKAJS_RETRY,
    logCreator: kafkaLogCreator(runtime)
  })

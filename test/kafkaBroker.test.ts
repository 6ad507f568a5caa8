import { assert, describe, it } from "@effect/vitest"
import { Chunk, type Context, type Duration, Effect, Either, Fiber, Metric, Schema, Stream } from "effect"
import { inject } from "vitest"
import type { Broker, Delivery } from "../src/broker/Broker.js"
import { deadLetteredTotal, dlqTopic } from "../src/broker/kafka/KafkaBroker.js"
import { CONTRACT_VERSION, TickerEventJson } from "../src/domain/Ticker.js"
import { ackHalfThenRestart, take, takeUntilSeen } from "./support/deliveries.js"
import {
  allCommitted,
  brokerEnv,
  makeEvent,
  makeTick,
  partitionCount,
  produceAmidPoison,
  readAll,
  startBroker,
  uniqueGroup,
  uniqueTopic,
  waitFor
} from "./support/kafka.js"
import { loadKafkaScript } from "./support/kafkaGlobalSetup.js"

const SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"] as const
const keyOf = (d: Delivery) => `${d.value.symbol}#${d.value.event.volume}`

/** Consumes in batches in the background, recording every delivery in `seen` and acknowledging each batch. */
const consumeInto = (
  broker: Context.Tag.Service<Broker>,
  seen: Set<string>,
  size: number,
  window: Duration.DurationInput
) =>
  broker.subscribe.pipe(
    Stream.groupedWithin(size, window),
    Stream.runForEach((chunk) => {
      const batch = Chunk.toReadonlyArray(chunk)
      for (const d of batch) seen.add(keyOf(d))
      return broker.acknowledge(batch)
    }),
    Effect.forkScoped
  )

/** Publishes rounds [from, to): one event per symbol each. */
const publishSymbols = (broker: Context.Tag.Service<Broker>, from: number, to: number) =>
  Effect.forEach(
    Array.from({ length: to - from }, (_, i) => from + i),
    (i) => broker.publish(SYMBOLS.map((s) => makeTick(s, i))),
    { discard: true }
  )
const decode = Schema.decodeUnknownEither(TickerEventJson)
const encode = Schema.encodeSync(TickerEventJson)

// The tests share one broker but nothing else (a topic and a group each), so they run concurrently: the
// restart test alone spends ~20 s waiting on a broker of its own.
describe.concurrent("KafkaBroker against a real Kafka", () => {
  it.scopedLive.skipIf(!inject("kafkaLocal"))(
    "rides out a broker restart: publish buffers while it is down, consumption resumes, nothing is lost",
    () =>
      Effect.gen(function* () {
        // A broker of its own: restarting the shared one would disturb the other tests.
        const kafka = yield* Effect.acquireRelease(
          Effect.promise(() => loadKafkaScript().then((script) => script.startKafka())),
          (k) => Effect.promise(() => k.stop())
        )
        const topic = uniqueTopic()
        const env = brokerEnv(topic, { KAFKA_BOOTSTRAP_SERVERS: kafka.bootstrap, CONSUMER_GROUP_ID: uniqueGroup() })
        const { broker, health } = yield* startBroker(env)

        const seen = new Set<string>()
        yield* consumeInto(broker, seen, 100, "200 millis")
        const publishRounds = (from: number, to: number) => publishSymbols(broker, from, to)
        const allSeen = (n: number) => Effect.sync(() => seen.size >= n * SYMBOLS.length)

        yield* publishRounds(0, 10)
        yield* waitFor("the events before the restart", allSeen(10), 20_000)

        const restart = yield* Effect.fork(Effect.promise(() => kafka.restart()))
        yield* waitFor("health to notice the outage", Effect.map(health.broker, (b) => b.state === "down"), 20_000)
        yield* publishRounds(10, 20) // into the buffer while the broker is down
        yield* Fiber.join(restart)
        yield* publishRounds(20, 30)
        yield* waitFor("every event, after the restart", allSeen(30), 40_000)
        assert.strictEqual(seen.size, 30 * SYMBOLS.length)
        yield* waitFor("health to report the broker up", Effect.map(health.broker, (b) => b.state === "up"), 20_000)
      }),
    90_000
  )

  it.scopedLive(
    "creates the topic and its DLQ with TOPIC_PARTITIONS when missing, and starts fine when they exist",
    () =>
      Effect.gen(function* () {
        const topic = uniqueTopic()
        const env = brokerEnv(topic, { TOPIC_PARTITIONS: "4" })
        const first = yield* startBroker(env)
        const isUp = Effect.map(first.health.broker, (b) => b.state === "up")
        yield* waitFor("the first broker to be up", isUp)
        assert.strictEqual(yield* partitionCount(topic), 4)
        assert.strictEqual(yield* partitionCount(dlqTopic(topic)), 4)
        yield* first.stop

        const second = yield* startBroker(env)
        yield* waitFor(
          "the second broker to be up",
          Effect.map(second.health.broker, (b) => b.state === "up")
        )
        const health = yield* second.health.broker
        assert.strictEqual(health.mode, "kafka")
        assert.include(health.detail ?? "", topic)
        assert.strictEqual(yield* partitionCount(topic), 4)
      }),
    60_000
  )

  it.scopedLive(
    "delivers every published event once, in publish order per symbol, as contract JSON keyed by symbol",
    () =>
      Effect.gen(function* () {
        const topic = uniqueTopic()
        const group = uniqueGroup()
        const { broker } = yield* startBroker(brokerEnv(topic, { CONSUMER_GROUP_ID: group }))
        const rounds = 100
        for (let i = 0; i < rounds; i++) yield* broker.publish(SYMBOLS.map((s) => makeTick(s, i)))

        const received = yield* take(broker.subscribe, rounds * SYMBOLS.length)
        assert.strictEqual(new Set(received.map(keyOf)).size, received.length)
        for (const symbol of SYMBOLS) {
          const ticks = received.filter((d) => d.value.symbol === symbol).map((d) => d.value)
          assert.deepStrictEqual(ticks.map((t) => Number(t.event.volume)), Array.from({ length: rounds }, (_, i) => i))
          // decoded once at the boundary: the same Tick (identity, instant, price) that was published
          assert.deepStrictEqual(ticks, Array.from({ length: rounds }, (_, i) => makeTick(symbol, i)))
        }

        const raw = yield* readAll(topic)
        assert.strictEqual(raw.length, rounds * SYMBOLS.length)
        const partitionsBySymbol = new Map<string, Set<number>>()
        for (const m of raw) {
          const event = decode(m.value)
          assert.isTrue(Either.isRight(event), `not a contract event: ${m.value}`)
          if (Either.isRight(event)) assert.strictEqual(m.key, event.right.symbol)
          assert.strictEqual(m.headers["contract-version"], CONTRACT_VERSION)
          assert.strictEqual(m.headers["content-type"], "application/json")
          partitionsBySymbol.set(m.key!, (partitionsBySymbol.get(m.key!) ?? new Set()).add(m.partition))
        }
        for (const partitions of partitionsBySymbol.values()) assert.strictEqual(partitions.size, 1)

        yield* broker.acknowledge(received)
        yield* waitFor("the offsets to be committed", allCommitted(group, topic))
      }),
    60_000
  )

  it.scopedLive(
    "commits only what was acknowledged: a new consumer in the group gets the rest again, and nothing acknowledged",
    () =>
      Effect.gen(function* () {
        const topic = uniqueTopic()
        const env = brokerEnv(topic, { CONSUMER_GROUP_ID: uniqueGroup() })
        const consumer = Effect.map(startBroker(env), ({ broker, stop }) => ({ channel: broker, stop }))
        const first = yield* consumer
        for (let i = 0; i < 40; i++) yield* first.channel.publish(SYMBOLS.map((s) => makeTick(s, i)))
        const { acked, again } = yield* ackHalfThenRestart(first, consumer, keyOf, 120)
        const redelivered = again.map(keyOf).filter((k) => acked.has(k))
        assert.deepStrictEqual(redelivered, [])
      }),
    60_000
  )

  it.scopedLive(
    "moves invalid messages to <topic>.dlq with the reason, delivers the valid ones and commits past the poison",
    () =>
      Effect.gen(function* () {
        const topic = uniqueTopic()
        const group = uniqueGroup()
        const env = brokerEnv(topic, { CONSUMER_GROUP_ID: group })
        const first = yield* startBroker(env)
        yield* waitFor("the topics", Effect.map(first.health.broker, (b) => b.state === "up"))

        const good = (symbol: string, i: number) => ({
          key: symbol,
          value: encode(makeEvent(symbol, i)),
          headers: { "contract-version": CONTRACT_VERSION }
        })
        const { lastPrice: _, ...missingField } = makeEvent("BTCUSDT", 99)
        const poison = [
          { key: "BTCUSDT", value: "{not json" },
          { key: "BTCUSDT", value: JSON.stringify({ foo: 1 }) },
          { key: "BTCUSDT", value: JSON.stringify(missingField) },
          { key: "ETHUSDT", value: JSON.stringify({ ...makeEvent("ETHUSDT", 98), lastPrice: 68000.5 }) }
        ]
        // Poison between valid messages, and last in ETHUSDT's partition (nothing after it to carry its commit).
        yield* produceAmidPoison(topic, good, poison)

        const received = yield* take(first.broker.subscribe, 5)
        assert.sameMembers(received.map(keyOf), ["BTCUSDT#0", "BTCUSDT#1", "BTCUSDT#2", "ETHUSDT#0", "ETHUSDT#1"])
        yield* first.broker.acknowledge(received)

        const dead = yield* readAll(dlqTopic(topic))
        assert.sameMembers(
          dead.map((m) => m.value),
          poison.map((p) => p.value)
        )
        for (const m of dead) {
          assert.isAbove(m.headers["dlq-reason"]?.length ?? 0, 0)
          assert.notInclude(m.headers["dlq-reason"] ?? "", "\n")
          assert.match(m.headers["dlq-source-partition"] ?? "", /^\d+$/)
          assert.match(m.headers["dlq-source-offset"] ?? "", /^\d+$/)
        }
        assert.include(dead.find((m) => m.value === "{not json")?.headers["dlq-reason"] ?? "", "JSON")
        const counted = yield* Metric.value(deadLetteredTotal.pipe(Metric.tagged("topic", topic)))
        assert.strictEqual(counted.count, 4)

        yield* waitFor("the offsets to move past the poison", allCommitted(group, topic))
        yield* first.stop

        // A restarted consumer starts after the poison: the first thing it gets is what is published next.
        const second = yield* startBroker(env)
        yield* second.broker.publish([makeTick("BTCUSDT", 7), makeTick("ETHUSDT", 7)])
        const next = yield* take(second.broker.subscribe, 2)
        assert.sameMembers(next.map(keyOf), ["BTCUSDT#7", "ETHUSDT#7"])
      }),
    60_000
  )

  it.scopedLive(
    "close ends the subscribe stream once what was fetched is delivered, and loses nothing",
    () =>
      Effect.gen(function* () {
        const topic = uniqueTopic()
        const env = brokerEnv(topic, { CONSUMER_GROUP_ID: uniqueGroup() })
        const first = yield* startBroker(env)
        const all = Array.from({ length: 20 }, (_, i) => SYMBOLS.map((s) => makeTick(s, i))).flat()
        yield* first.broker.publish(all)

        const seen: Array<Delivery> = []
        const consumer = yield* first.broker.subscribe.pipe(
          Stream.runForEach((d) => Effect.sync(() => seen.push(d))),
          Effect.fork
        )
        yield* waitFor("a first delivery", Effect.sync(() => seen.length > 0))
        yield* first.broker.close
        yield* Fiber.join(consumer).pipe(
          Effect.timeoutFail({
            duration: "10 seconds",
            onTimeout: () => new Error("the stream did not end after close")
          }),
          Effect.orDie
        )
        yield* first.broker.acknowledge(seen)
        yield* first.stop

        const delivered = new Set(seen.map(keyOf))
        const rest = all.map((t) => `${t.symbol}#${t.event.volume}`).filter((k) => !delivered.has(k))
        if (rest.length > 0) {
          const second = yield* startBroker(env)
          const again = yield* takeUntilSeen(second.broker.subscribe, keyOf, rest)
          assert.deepStrictEqual(again.map(keyOf).filter((k) => delivered.has(k)), [])
        }
      }),
    60_000
  )

  it.scopedLive(
    "with the broker unreachable: builds, buffers then backpressures publish, reports down, shuts down quickly",
    () =>
      Effect.gen(function* () {
        const topic = uniqueTopic()
        const env = brokerEnv(topic, { KAFKA_BOOTSTRAP_SERVERS: "127.0.0.1:1", KAFKA_PRODUCER_BUFFER: "5" })
        const built = Date.now()
        const { broker, health, stop } = yield* startBroker(env)
        assert.isBelow(Date.now() - built, 2_000)

        yield* broker.publish(SYMBOLS.map((s) => makeTick(s, 0))).pipe(
          Effect.timeoutFail({ duration: "1 second", onTimeout: () => new Error("publish into the buffer blocked") }),
          Effect.orDie
        )
        yield* waitFor(
          "health to report the broker down",
          Effect.map(health.broker, (b) => b.state === "down")
        )
        const state = yield* health.broker
        assert.strictEqual(state.mode, "kafka")
        assert.include(state.detail ?? "", "127.0.0.1:1")

        // 3 buffered + 3 more > KAFKA_PRODUCER_BUFFER=5: publish suspends instead of growing or dropping.
        const blocked = yield* broker.publish(SYMBOLS.map((s) => makeTick(s, 1))).pipe(
          Effect.timeout("500 millis"),
          Effect.option
        )
        assert.isTrue(blocked._tag === "None", "publish did not suspend on a full buffer")

        const subscriber = yield* broker.subscribe.pipe(Stream.runDrain, Effect.fork)
        const closing = Date.now()
        yield* broker.close
        yield* Fiber.join(subscriber)
        yield* stop
        assert.isBelow(Date.now() - closing, 5_000)

        const after = yield* Effect.either(broker.publish([makeTick("BTCUSDT", 2)]))
        assert.isTrue(Either.isLeft(after) && after.left.op === "publish")
      }),
    30_000
  )

  it.scopedLive(
    "shares the partitions with a second consumer in the group: all delivered, the group ends fully committed",
    () =>
      Effect.gen(function* () {
        const topic = uniqueTopic()
        const group = uniqueGroup()
        const env = brokerEnv(topic, { CONSUMER_GROUP_ID: group })
        const a = yield* startBroker(env)
        const b = yield* startBroker(env)
        const seen = new Set<string>()
        const consume = (broker: typeof a.broker) => consumeInto(broker, seen, 50, "100 millis")
        const publishRounds = (from: number, to: number) => publishSymbols(a.broker, from, to)
        const joined = (h: typeof a.health) => Effect.map(h.broker, (x) => (x.detail ?? "").startsWith("consuming"))

        const first = yield* consume(a.broker)
        yield* publishRounds(0, 50)
        yield* waitFor("the first consumer to receive", Effect.sync(() => seen.size > 0))
        const second = yield* consume(b.broker) // joins: the group rebalances under the first one
        yield* waitFor("the second consumer to join", joined(b.health), 20_000)
        yield* publishRounds(50, 100)
        yield* waitFor("every event", Effect.sync(() => seen.size === 100 * SYMBOLS.length), 30_000)

        yield* a.broker.close
        yield* Fiber.join(first)
        yield* a.stop // leaves: the second consumer takes over all partitions and redelivers what is uncommitted
        yield* waitFor("the group to be fully committed", allCommitted(group, topic), 30_000)
        assert.isTrue((yield* Fiber.poll(second))._tag === "None", "the second consumer stopped")
      }),
    60_000
  )
})

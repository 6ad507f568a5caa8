import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Either, Exit, Fiber, Layer, Metric, Schema, Scope, Stream } from "effect"
import { randomBytes } from "node:crypto"
import { BarBroker, Broker, type Channel, type Delivery, TradeBroker } from "../src/broker/Broker.js"
import {
  deadLetteredTotal,
  dlqTopic,
  KafkaBarBrokerLive,
  KafkaBrokerLive,
  KafkaTradeBrokerLive
} from "../src/broker/kafka/KafkaBroker.js"
import { summarize } from "../src/broker/kafka/link.js"
import { Candle } from "../src/domain/Candles.js"
import type { TickerSymbol } from "../src/domain/Ticker.js"
import { type Trade, TRADE_WS_SOURCE, TradeEventJson, tradeJson } from "../src/domain/Trade.js"
import { Health } from "../src/status/Health.js"
import { withEnv } from "./support/effect.js"
import { ackHalfThenRestart, take } from "./support/deliveries.js"
import { allCommitted, committedOffsets, kafkaBootstrap, makeTick, produceAmidPoison, readAll, waitFor } from "./support/kafka.js"

const SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"] as const
const BASE_ID = 3_000_000_000
const T0 = Date.UTC(2026, 0, 15, 14, 0, 0) * 1000

/** Trade `i` of `symbol`: aggregate id BASE_ID + i, several trades sharing a millisecond. */
const makeTrade = (symbol: string, i: number): Trade => ({
  symbol: symbol as TickerSymbol,
  id: BASE_ID + i,
  price: `${68000 + (i % 50)}.20000000`,
  quantity: "0.01500000",
  firstTradeId: 27_000 + 3 * i,
  lastTradeId: 27_002 + 3 * i,
  timeMicros: T0 + Math.floor(i / 4) * 1000,
  isBuyerMaker: i % 3 === 0,
  source: TRADE_WS_SOURCE
})

const makeBar = (symbol: string, minute: number): Candle => ({
  symbol,
  interval: "1m",
  openTime: T0 / 1000 + minute * 60_000,
  open: "68000.10",
  high: "68010.00",
  low: "67990.00",
  close: `${68000 + minute}.00`,
  volume: "12.5",
  quoteVolume: "850000.00",
  trades: 1200 + minute,
  closed: true
})

const suffix = () => randomBytes(5).toString("hex")

/** Configuration for the three Kafka channels on fresh topics and a fresh group. */
const channelEnv = (overrides: Record<string, string> = {}) => {
  const id = suffix()
  return {
    KAFKA_BOOTSTRAP_SERVERS: kafkaBootstrap(),
    TOPIC_NAME: `crypto_prices_test_${id}`,
    TRADES_TOPIC_NAME: `crypto_trades_test_${id}`,
    BARS_TOPIC_NAME: `crypto_klines_test_${id}`,
    CONSUMER_GROUP_ID: `crypto_consumer_test_${id}`,
    KAFKA_CLIENT_ID: "kafka-trades-test",
    ...overrides
  }
}

/** The three channels merged into one layer, as a role builds them, in a scope of their own. */
const startChannels = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const scope = yield* Effect.acquireRelease(Scope.make(), (s) => Scope.close(s, Exit.void))
    const layer = Layer.mergeAll(KafkaBrokerLive, KafkaTradeBrokerLive, KafkaBarBrokerLive).pipe(Layer.provideMerge(Health.Default))
    const context = yield* Layer.buildWithScope(layer, scope).pipe(withEnv(env))
    return {
      ticks: Context.get(context, Broker),
      trades: Context.get(context, TradeBroker),
      bars: Context.get(context, BarBroker),
      health: Context.get(context, Health),
      stop: Scope.close(scope, Exit.void)
    }
  })

/** Just the trades channel, as a consumer-only test needs it. */
const startTrades = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const scope = yield* Effect.acquireRelease(Scope.make(), (s) => Scope.close(s, Exit.void))
    const context = yield* Layer.buildWithScope(KafkaTradeBrokerLive.pipe(Layer.provideMerge(Health.Default)), scope).pipe(withEnv(env))
    return { trades: Context.get(context, TradeBroker), health: Context.get(context, Health), stop: Scope.close(scope, Exit.void) }
  })

const keyOf = (d: Delivery<Trade>) => `${d.value.symbol}#${d.value.id}`

const publishRounds = (trades: Channel<Trade>, from: number, to: number) =>
  Effect.forEach(
    Array.from({ length: to - from }, (_, i) => from + i),
    (i) => trades.publish(SYMBOLS.map((s) => makeTrade(s, i))),
    { discard: true }
  )

const decodeTrade = Schema.decodeUnknownEither(TradeEventJson)

describe("the broker component of /health over several topics", () => {
  it("shows the worst state, with the details of the topics in it, and one topic as it reports itself", () => {
    const one = new Map([["t", { state: "up" as const, detail: "connected" }]])
    assert.deepStrictEqual(summarize(one), { state: "up", detail: "connected" })
    const three = new Map([
      ["a", { state: "up" as const, detail: "consuming a" }],
      ["b", { state: "down" as const, detail: "publishing failed" }],
      ["c", { state: "starting" as const, detail: "connecting" }]
    ])
    assert.deepStrictEqual(summarize(three), { state: "down", detail: "b: publishing failed" })
    three.set("b", { state: "up", detail: "consuming b" })
    assert.deepStrictEqual(summarize(three), { state: "starting", detail: "c: connecting" })
    three.set("c", { state: "up", detail: "consuming c" })
    assert.deepStrictEqual(summarize(three), { state: "up", detail: "a: consuming a; b: consuming b; c: consuming c" })
  })
})

// A topic and a group each: the tests run concurrently against the one broker of the global setup.
describe.concurrent("Kafka trades and bars topics against a real Kafka", () => {
  it.scopedLive(
    "delivers every trade once, decoded and equal, in id order per symbol, as contract JSON keyed by symbol",
    () =>
      Effect.gen(function* () {
        const env = channelEnv()
        const { trades } = yield* startChannels(env)
        const rounds = 200
        yield* publishRounds(trades, 0, rounds)
        const received = yield* take(trades.subscribe, rounds * SYMBOLS.length)
        assert.strictEqual(new Set(received.map(keyOf)).size, received.length)
        for (const symbol of SYMBOLS) {
          const mine = received.filter((d) => d.value.symbol === symbol).map((d) => d.value)
          assert.deepStrictEqual(mine, Array.from({ length: rounds }, (_, i) => makeTrade(symbol, i)))
        }

        const topic = env.TRADES_TOPIC_NAME
        const raw = yield* readAll(topic)
        assert.strictEqual(raw.length, rounds * SYMBOLS.length)
        const partitions = new Map<string, Set<number>>()
        for (const m of raw) {
          const event = decodeTrade(m.value)
          assert.isTrue(Either.isRight(event), `not a trade: ${m.value}`)
          if (Either.isRight(event)) {
            assert.strictEqual(m.key, event.right.symbol)
            assert.strictEqual(m.value, tradeJson(makeTrade(event.right.symbol, event.right.agg_trade_id - BASE_ID)))
          }
          assert.strictEqual(m.headers["content-type"], "application/json")
          assert.strictEqual(m.headers["contract-version"], "1")
          partitions.set(m.key!, (partitions.get(m.key!) ?? new Set()).add(m.partition))
        }
        for (const p of partitions.values()) assert.strictEqual(p.size, 1)

        yield* trades.acknowledge(received)
        const group = `${env.CONSUMER_GROUP_ID}.trades`
        yield* waitFor("the trades group to commit everything", allCommitted(group, topic))
        // its own group: the ticks' group has no offsets on the trades topic
        assert.deepStrictEqual([...(yield* committedOffsets(env.CONSUMER_GROUP_ID, topic)).values()].filter((o) => o >= 0), [])
      }),
    60_000
  )

  it.scopedLive(
    "moves invalid messages on the trades topic to its DLQ with the reason and commits past them",
    () =>
      Effect.gen(function* () {
        const env = channelEnv()
        const topic = env.TRADES_TOPIC_NAME
        const group = `${env.CONSUMER_GROUP_ID}.trades`
        const first = yield* startTrades(env)
        yield* waitFor("the topics", Effect.map(first.health.broker, (b) => b.state === "up"))
        const good = (symbol: string, i: number) => ({ key: symbol, value: tradeJson(makeTrade(symbol, i)) })
        const poison = [
          { key: "BTCUSDT", value: "{not json" },
          { key: "BTCUSDT", value: tradeJson(makeTrade("BTCUSDT", 9)).replace('"price":"68009.20000000"', '"price":68009.2') },
          { key: "BTCUSDT", value: JSON.stringify({ ...JSON.parse(tradeJson(makeTrade("BTCUSDT", 8))), agg_trade_id: -1 }) },
          { key: "ETHUSDT", value: tradeJson(makeTrade("ETHUSDT", 7)).replace(TRADE_WS_SOURCE, "somewhere") }
        ]
        // Poison between valid messages, and last in ETHUSDT's partition (nothing after it carries its commit).
        yield* produceAmidPoison(topic, good, poison)
        const received = yield* take(first.trades.subscribe, 5)
        assert.sameMembers(received.map(keyOf), [0, 1, 2].map((i) => `BTCUSDT#${BASE_ID + i}`).concat([0, 1].map((i) => `ETHUSDT#${BASE_ID + i}`)))
        yield* first.trades.acknowledge(received)

        const dead = yield* readAll(dlqTopic(topic))
        assert.sameMembers(dead.map((m) => m.value), poison.map((p) => p.value))
        for (const m of dead) {
          assert.isAbove(m.headers["dlq-reason"]?.length ?? 0, 0)
          assert.notInclude(m.headers["dlq-reason"] ?? "", "\n")
          assert.strictEqual(m.headers["dlq-source-topic"], topic)
          assert.match(m.headers["dlq-source-offset"] ?? "", /^\d+$/)
        }
        const reasonOf = (value: string) => dead.find((m) => m.value === value)?.headers["dlq-reason"] ?? ""
        assert.include(reasonOf(poison[0]!.value), "JSON")
        assert.include(reasonOf(poison[1]!.value), "price")
        assert.include(reasonOf(poison[2]!.value), "agg_trade_id")
        assert.include(reasonOf(poison[3]!.value), "source")
        assert.strictEqual((yield* Metric.value(deadLetteredTotal.pipe(Metric.tagged("topic", topic)))).count, 4)

        yield* waitFor("the offsets to move past the poison", allCommitted(group, topic))
        yield* first.stop
        // A restarted consumer starts after the poison: the first thing it gets is what is published next.
        const second = yield* startTrades(env)
        yield* second.trades.publish([makeTrade("BTCUSDT", 3), makeTrade("ETHUSDT", 2)])
        const next = yield* take(second.trades.subscribe, 2)
        assert.sameMembers(next.map(keyOf), [`BTCUSDT#${BASE_ID + 3}`, `ETHUSDT#${BASE_ID + 2}`])
      }),
    60_000
  )

  it.scopedLive(
    "commits only what was acknowledged: a new consumer in the group gets the rest again, and nothing acknowledged",
    () =>
      Effect.gen(function* () {
        const env = channelEnv()
        const consumer = Effect.map(startTrades(env), ({ trades, stop }) => ({ channel: trades, stop }))
        const first = yield* consumer
        yield* publishRounds(first.channel, 0, 40)
        const { acked, again } = yield* ackHalfThenRestart(first, consumer, keyOf, 120)
        assert.deepStrictEqual(again.map(keyOf).filter((k) => acked.has(k)), [])
        // and per symbol, what comes again comes in id order
        for (const symbol of SYMBOLS) {
          const ids = again.filter((d) => d.value.symbol === symbol).map((d) => d.value.id)
          assert.deepStrictEqual(ids, [...ids].sort((a, b) => a - b))
        }
      }),
    60_000
  )

  it.scopedLive(
    "carries ticks, trades and bars side by side in one process: one consumer group per topic, /health up naming every topic",
    () =>
      Effect.gen(function* () {
        const env = channelEnv()
        const { ticks, trades, bars, health } = yield* startChannels(env)
        yield* ticks.publish(SYMBOLS.map((s) => makeTick(s, 0)))
        yield* publishRounds(trades, 0, 10)
        const published = SYMBOLS.flatMap((s) => [0, 1, 2].map((m) => makeBar(s, m)))
        yield* bars.publish(published)

        const [gotTicks, gotTrades, gotBars] = yield* Effect.all(
          [take(ticks.subscribe, SYMBOLS.length), take(trades.subscribe, 10 * SYMBOLS.length), take(bars.subscribe, published.length)],
          { concurrency: "unbounded" }
        )
        assert.sameDeepMembers(gotTicks.map((d) => d.value), SYMBOLS.map((s) => makeTick(s, 0)))
        assert.strictEqual(gotTrades.length, 30)
        for (const symbol of SYMBOLS) {
          assert.deepStrictEqual(gotBars.filter((d) => d.value.symbol === symbol).map((d) => d.value), [0, 1, 2].map((m) => makeBar(symbol, m)))
        }
        const rawBars = yield* readAll(env.BARS_TOPIC_NAME)
        const encode = Schema.encodeSync(Candle)
        assert.sameMembers(rawBars.map((m) => m.value), published.map((c) => JSON.stringify(encode(new Candle(c)))))
        for (const m of rawBars) assert.strictEqual(m.key, (JSON.parse(m.value!) as { symbol: string }).symbol)

        yield* Effect.all([ticks.acknowledge(gotTicks), trades.acknowledge(gotTrades), bars.acknowledge(gotBars)])
        yield* waitFor("every group to commit", Effect.map(
          Effect.all([
            allCommitted(env.CONSUMER_GROUP_ID, env.TOPIC_NAME),
            allCommitted(`${env.CONSUMER_GROUP_ID}.trades`, env.TRADES_TOPIC_NAME),
            allCommitted(`${env.CONSUMER_GROUP_ID}.bars`, env.BARS_TOPIC_NAME)
          ]),
          (all) => all.every(Boolean)
        ))
        yield* waitFor(
          "/health to show the broker up with every topic",
          Effect.map(health.broker, (b) => b.state === "up" && [env.TOPIC_NAME, env.TRADES_TOPIC_NAME, env.BARS_TOPIC_NAME].every((t) => (b.detail ?? "").includes(`consuming ${t}`)))
        )
      }),
    60_000
  )

  it.scopedLive(
    "with Kafka unreachable: all three build at once, /health says down for every topic, and they shut down together quickly",
    () =>
      Effect.gen(function* () {
        const env = channelEnv({ KAFKA_BOOTSTRAP_SERVERS: "127.0.0.1:1", KAFKA_PRODUCER_BUFFER: "5" })
        const built = Date.now()
        const { ticks, trades, bars, health, stop } = yield* startChannels(env)
        assert.isBelow(Date.now() - built, 2_000)
        yield* Effect.all([ticks.publish([makeTick("BTCUSDT", 0)]), trades.publish([makeTrade("BTCUSDT", 0)]), bars.publish([makeBar("BTCUSDT", 0)])])
        const subscribers = yield* Effect.all(
          [Stream.runDrain(ticks.subscribe), Stream.runDrain(trades.subscribe), Stream.runDrain(bars.subscribe)].map((s) => Effect.fork(s))
        )
        yield* waitFor(
          "/health to report every topic down",
          Effect.map(health.broker, (b) =>
            b.state === "down" && [env.TOPIC_NAME, env.TRADES_TOPIC_NAME, env.BARS_TOPIC_NAME].every((t) => (b.detail ?? "").includes(`${t}:`))
          ),
          20_000
        )
        const closing = Date.now()
        yield* Effect.all([ticks.close, trades.close, bars.close])
        yield* Fiber.joinAll(subscribers)
        yield* stop
        assert.isBelow(Date.now() - closing, 5_000)
      }),
    40_000
  )
})

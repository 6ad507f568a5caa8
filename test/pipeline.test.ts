import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Layer, Option, Ref, Stream } from "effect"
import { runConsumer } from "../src/app/Consumer.js"
import { Broker, type Delivery } from "../src/broker/Broker.js"
import { DirectBrokerLive } from "../src/broker/DirectBroker.js"
import { SinkError, TickSink } from "../src/store/TickSink.js"
import type { Tick } from "../src/domain/Ticker.js"
import { advance, eventually, realDelay, withEnv } from "./support/effect.js"
import { makeTick } from "./support/events.js"

const events = (n: number, symbol = "BTCUSDT") => Array.from({ length: n }, (_, i) => makeTick(symbol, 1_700_000_000_000_000 + i))

/** A sink that records each batch; it fails the first `failures` calls. */
const recordingSink = (failures = 0) => {
  const batches: Array<ReadonlyArray<Tick>> = []
  let calls = 0
  const layer = Layer.succeed(
    TickSink,
    TickSink.of({
      name: "recording",
      writeBatch: (batch) =>
        Effect.suspend(() => {
          calls++
          if (calls <= failures) return Effect.fail(new SinkError({ sink: "recording", cause: new Error("disk full") }))
          batches.push(batch)
          return Effect.void
        })
    })
  )
  return { batches, layer, calls: () => calls }
}

describe("DirectBroker", () => {
  it.scoped("keeps what is published before the consumer attaches, in order", () =>
    Effect.gen(function* () {
      const broker = yield* Broker
      const sent = events(50)
      yield* broker.publish(sent.slice(0, 20))
      yield* broker.publish(sent.slice(20))
      yield* broker.close
      const received = yield* Stream.runCollect(broker.subscribe)
      assert.deepStrictEqual(Chunk.toReadonlyArray(received).map((d) => d.value), sent)
    }).pipe(Effect.provide(DirectBrokerLive), withEnv({}))
  )

  it.scoped("suspends the producer while the queue is full and loses nothing", () =>
    Effect.gen(function* () {
      const broker = yield* Broker
      const sent = events(25)
      const publishing = yield* Effect.fork(Effect.forEach(sent, (e) => broker.publish([e]), { discard: true }))
      yield* realDelay(20)
      assert.isTrue(Option.isNone(yield* Fiber.poll(publishing)), "publish must wait for room")
      const received: Array<Delivery> = []
      const consuming = yield* Effect.fork(Stream.runForEach(broker.subscribe, (d) => Effect.sync(() => void received.push(d))))
      yield* Fiber.join(publishing)
      yield* broker.close
      yield* Fiber.join(consuming)
      assert.deepStrictEqual(received.map((d) => d.value), sent)
    }).pipe(Effect.provide(DirectBrokerLive), withEnv({ DIRECT_QUEUE_CAPACITY: "5" }))
  )
})

describe("consumer", () => {
  it.effect("writes one batch per sink call, by size or after the time window", () =>
    Effect.gen(function* () {
      const sink = recordingSink()
      yield* Effect.gen(function* () {
        const broker = yield* Broker
        const consumer = yield* Effect.fork(runConsumer)
        yield* broker.publish(events(250))
        yield* eventually(() => sink.batches.length === 2)
        assert.deepStrictEqual(sink.batches.map((b) => b.length), [100, 100])
        // the remaining 50 wait for the window, then come as one batch
        yield* advance("1 second", "100 millis")
        yield* eventually(() => sink.batches.length === 3)
        assert.strictEqual(sink.batches[2]!.length, 50)
        yield* broker.close
        yield* Fiber.join(consumer)
      }).pipe(
        Effect.provide(Layer.merge(DirectBrokerLive, sink.layer)),
        withEnv({ CONSUMER_BATCH_SIZE: "100", CONSUMER_BATCH_WINDOW_MS: "1000" })
      )
    })
  )

  it.effect("acknowledges a batch only after the sink stored it, retrying a failing sink", () =>
    Effect.gen(function* () {
      const sink = recordingSink(3)
      const acknowledged = yield* Ref.make<Array<number>>([])
      const sent = events(10)
      const broker = Layer.succeed(
        Broker,
        Broker.of({
          publish: () => Effect.void,
          subscribe: Stream.fromIterable(sent.map((value, offset) => ({ value, receipt: offset }))),
          acknowledge: (ds) => Ref.update(acknowledged, (a) => [...a, ...ds.map((d) => d.receipt as number)]),
          close: Effect.void,
          pending: Effect.succeed(0)
        })
      )
      const fiber = yield* Effect.fork(runConsumer.pipe(Effect.provide(Layer.merge(broker, sink.layer)), withEnv({})))
      yield* realDelay(10)
      assert.deepStrictEqual(yield* Ref.get(acknowledged), [], "nothing is acknowledged while the sink fails")
      yield* advance("10 seconds", "500 millis")
      yield* Fiber.join(fiber)
      assert.strictEqual(sink.calls(), 4)
      assert.deepStrictEqual(sink.batches, [sent])
      assert.deepStrictEqual(yield* Ref.get(acknowledged), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    })
  )

  it.effect("drains everything published before close, then stops", () =>
    Effect.gen(function* () {
      const sink = recordingSink()
      yield* Effect.gen(function* () {
        const broker = yield* Broker
        yield* broker.publish(events(30, "ETHUSDT"))
        yield* broker.close
        yield* runConsumer
        assert.strictEqual(sink.batches.flat().length, 30)
      }).pipe(Effect.provide(Layer.merge(DirectBrokerLive, sink.layer)), withEnv({}))
    })
  )
})

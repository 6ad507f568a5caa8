import { Chunk, Effect, Stream } from "effect"
import type { Channel, Delivery } from "../../src/broker/Broker.js"

/** `n` deliveries from `stream`, or the test dies after `seconds`. */
export const take = <A>(stream: Stream.Stream<Delivery<A>, unknown>, n: number, seconds = 30) =>
  stream.pipe(
    Stream.take(n),
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray),
    Effect.timeoutFail({
      duration: `${seconds} seconds`,
      onTimeout: () => new Error(`fewer than ${n} deliveries in ${seconds} s`)
    }),
    Effect.orDie
  )

/**
 * Consumes `stream` until every key in `wanted` (as `keyOf` names a delivery) was delivered; returns all
 * deliveries seen until then, or the test dies after `seconds`.
 */
export const takeUntilSeen = <A>(
  stream: Stream.Stream<Delivery<A>, unknown>,
  keyOf: (d: Delivery<A>) => string,
  wanted: ReadonlyArray<string>,
  seconds = 30
) =>
  Effect.suspend(() => {
    const missing = new Set(wanted)
    return stream.pipe(
      Stream.tap((d) => Effect.sync(() => missing.delete(keyOf(d)))),
      Stream.takeUntil(() => missing.size === 0),
      Stream.runCollect,
      Effect.map(Chunk.toReadonlyArray),
      Effect.timeoutFail({
        duration: `${seconds} seconds`,
        onTimeout: () => new Error(`not delivered within ${seconds} s: ${[...missing].slice(0, 5).join(", ")}…`)
      }),
      Effect.orDie
    )
  })

/** A channel with a consumer of its own, and how to release it. */
export interface Consumer<A> {
  readonly channel: Channel<A>
  readonly stop: Effect.Effect<void>
}

/**
 * Half acknowledged, then a restart: takes `n` deliveries from `first`, acknowledges the first half,
 * closes the channel and stops `first`; then consumes from the consumer `restart` makes (in the same
 * group) until every delivery of the other half came again. Returns the keys acknowledged and all the
 * second consumer got until then.
 */
export const ackHalfThenRestart = <A, E, R>(
  first: Consumer<A>,
  restart: Effect.Effect<Consumer<A>, E, R>,
  keyOf: (d: Delivery<A>) => string,
  n: number
) =>
  Effect.gen(function* () {
    const received = yield* take(first.channel.subscribe, n)
    const half = received.slice(0, n / 2)
    yield* first.channel.acknowledge(half)
    yield* first.channel.close
    yield* first.stop

    const acked = new Set(half.map(keyOf))
    const rest = received.slice(n / 2).map(keyOf)
    const second = yield* restart
    const again = yield* takeUntilSeen(second.channel.subscribe, keyOf, rest)
    return { acked, again }
  })

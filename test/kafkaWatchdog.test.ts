import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Option, Ref, TestClock } from "effect"
import { BrokerError } from "../src/broker/Broker.js"
import {
  makeActivity,
  RESTART_WATCHDOG,
  restartWatchdog,
  STALL_TIMEOUT,
  stalledFor,
  stallWatchdog
} from "../src/broker/kafka/watchdog.js"

const running = <A, E>(fiber: Fiber.Fiber<A, E>) => Effect.map(Fiber.poll(fiber), Option.isNone)

/** The error `fiber` failed with; it must have ended already. */
const failure = <A>(fiber: Fiber.Fiber<A, BrokerError>) =>
  Effect.gen(function* () {
    assert.isFalse(yield* running(fiber), "the watchdog did not fire")
    return yield* Effect.flip(Fiber.join(fiber))
  })

describe("stall decision", () => {
  it("idle past the timeout once joined, and only then", () => {
    assert.strictEqual(stalledFor({ joined: true, lastActivityMillis: 1_000 }, 31_000, STALL_TIMEOUT), undefined)
    assert.strictEqual(stalledFor({ joined: true, lastActivityMillis: 1_000 }, 31_001, STALL_TIMEOUT), 30_001)
    assert.strictEqual(stalledFor({ joined: false, lastActivityMillis: 0 }, 3_600_000, STALL_TIMEOUT), undefined)
  })
})

describe("watchdogs on the TestClock", () => {
  it.effect("the stall watchdog ends a joined session that neither fetched nor heartbeated for STALL_TIMEOUT", () =>
    Effect.gen(function* () {
      const activity = yield* makeActivity
      yield* activity.joined
      const fiber = yield* Effect.fork(stallWatchdog(activity, Effect.succeed(false)))
      yield* TestClock.adjust(STALL_TIMEOUT)
      assert.isTrue(yield* running(fiber), "fired at the timeout, not past it")
      yield* TestClock.adjust("2 seconds") // the next check
      const error = yield* failure(fiber)
      assert.strictEqual(error.op, "subscribe")
      assert.strictEqual(error.detail, "the consumer made no progress for 32 s")
    }))

  it.effect("fetches and heartbeats keep it quiet; so does not having joined yet, and closing", () =>
    Effect.gen(function* () {
      const active = yield* makeActivity
      yield* active.joined
      const notJoined = yield* makeActivity
      const closing = yield* makeActivity
      yield* closing.joined
      const fibers = yield* Effect.all([
        Effect.fork(stallWatchdog(active, Effect.succeed(false))),
        Effect.fork(stallWatchdog(notJoined, Effect.succeed(false))),
        Effect.fork(stallWatchdog(closing, Effect.succeed(true)))
      ])
      for (let i = 0; i < 12; i++) {
        yield* TestClock.adjust("10 seconds")
        yield* active.touch
      }
      for (const fiber of fibers) assert.isTrue(yield* running(fiber))
      // and the active one fires once the activity stops
      yield* TestClock.adjust(Duration.sum(STALL_TIMEOUT, "2 seconds"))
      assert.strictEqual((yield* failure(fibers[0]))._tag, "BrokerError")
      assert.isTrue(yield* running(fibers[1]))
      assert.isTrue(yield* running(fibers[2]))
    }))

  it.effect("the restart watchdog fails with the crash when the consumer has not rejoined after RESTART_WATCHDOG", () =>
    Effect.gen(function* () {
      const down = yield* Ref.make(true)
      const crash = new BrokerError({ op: "subscribe", detail: "The coordinator is loading" })
      const stuck = yield* Effect.fork(restartWatchdog(Ref.get(down), crash))
      yield* TestClock.adjust(Duration.subtract(RESTART_WATCHDOG, "1 millis"))
      assert.isTrue(yield* running(stuck))
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* failure(stuck), crash)

      const rejoined = yield* Effect.fork(restartWatchdog(Ref.get(down), crash))
      yield* Ref.set(down, false) // GROUP_JOIN
      yield* TestClock.adjust(RESTART_WATCHDOG)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(rejoined)))
    }))
})

import { ConfigProvider, Duration, Effect, Fiber, Option, TestClock } from "effect"

/** Waits in real time, whatever clock the test runs on. */
export const realDelay = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/** Polls `condition` in real time until it holds; fails the test after `timeoutMs`. */
export const eventually = (condition: () => boolean, timeoutMs = 5_000, what = "condition") =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* realDelay(5)
    }
  })

/** Moves the TestClock forward in `step`s, letting real I/O happen in between, until `fiber` is done. */
export const driveClock = <A, E>(fiber: Fiber.Fiber<A, E>, step: Duration.DurationInput = "1 second", maxSteps = 500) =>
  Effect.gen(function* () {
    for (let i = 0; i < maxSteps; i++) {
      const done = yield* Fiber.poll(fiber)
      if (Option.isSome(done)) return yield* Fiber.join(fiber)
      yield* realDelay(2)
      yield* TestClock.adjust(Duration.decode(step))
    }
    return yield* Effect.die(new Error("fiber did not finish while driving the clock"))
  })

/** Runs with exactly these environment variables as configuration. */
export const withEnv = (env: Record<string, string>) => Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

/** Moves the TestClock forward by `total` in `step`s, letting fibers and real I/O run in between. */
export const advance = (total: Duration.DurationInput, step: Duration.DurationInput = "1 second") =>
  Effect.gen(function* () {
    const steps = Math.ceil(Duration.toMillis(total) / Duration.toMillis(step))
    for (let i = 0; i < steps; i++) {
      yield* TestClock.adjust(step)
      yield* realDelay(1)
    }
  })

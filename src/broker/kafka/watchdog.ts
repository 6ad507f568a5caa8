import { Clock, Duration, Effect, Ref, Schedule } from "effect"
import { BrokerError } from "../Broker.js"

/** How long kafkajs may take to rejoin the group after a crash it restarts from, before the adapter starts over. */
export const RESTART_WATCHDOG = Duration.seconds(20)
/** A consumer with no fetch and no heartbeat for this long is considered stuck and replaced. */
export const STALL_TIMEOUT = Duration.seconds(30)
const STALL_CHECK = Schedule.spaced("2 seconds")

/** What the stall watchdog knows of a consumer session: all instants on Effect's Clock. */
export interface ActivityState {
  /** Armed once the group is joined: the first join may wait out an old member's session. */
  readonly joined: boolean
  readonly lastActivityMillis: number
}

/** The stall decision: how long the consumer has been idle when that is past `timeout`, else undefined. */
export const stalledFor = (state: ActivityState, nowMillis: number, timeout: Duration.Duration): number | undefined => {
  const idle = nowMillis - state.lastActivityMillis
  return state.joined && idle > Duration.toMillis(timeout) ? idle : undefined
}

/** The activity of one consumer session, written from kafkajs' events (fetch, heartbeat, group join). */
export interface Activity {
  readonly state: Ref.Ref<ActivityState>
  /** The consumer fetched or heartbeated. */
  readonly touch: Effect.Effect<void>
  /** The consumer joined the group. */
  readonly joined: Effect.Effect<void>
}

export const makeActivity: Effect.Effect<Activity> = Effect.gen(function* () {
  const state = yield* Ref.make<ActivityState>({ joined: false, lastActivityMillis: yield* Clock.currentTimeMillis })
  const at = (joined: boolean) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Ref.update(state, (s) => ({ joined: s.joined || joined, lastActivityMillis: now }))
    )
  return { state, touch: at(false), joined: at(true) }
})

/**
 * Fails once the joined consumer neither fetched nor heartbeated for `timeout` (seen after a broker
 * restart, with no CRASH event), so the session ends and a fresh one connects. Quiet while `closing`.
 */
export const stallWatchdog = (
  activity: Activity,
  closing: Effect.Effect<boolean>,
  timeout: Duration.Duration = STALL_TIMEOUT
): Effect.Effect<never, BrokerError> =>
  Effect.gen(function* () {
    if (yield* closing) return
    const idle = stalledFor(yield* Ref.get(activity.state), yield* Clock.currentTimeMillis, timeout)
    if (idle !== undefined) {
      return yield* new BrokerError({ op: "subscribe", detail: `the consumer made no progress for ${Math.round(idle / 1000)} s` })
    }
  }).pipe(Effect.repeat(STALL_CHECK), Effect.zipRight(Effect.never))

/**
 * After a crash kafkajs restarts from: its own restart can stall after a broker restart (e.g. "The
 * coordinator is loading"). If the consumer is still down after RESTART_WATCHDOG, fails with `error`.
 */
export const restartWatchdog = (
  stillDown: Effect.Effect<boolean>,
  error: BrokerError,
  wait: Duration.Duration = RESTART_WATCHDOG
): Effect.Effect<void, BrokerError> =>
  Effect.sleep(wait).pipe(
    Effect.zipRight(stillDown),
    Effect.flatMap((down) => (down ? Effect.fail(error) : Effect.void))
  )

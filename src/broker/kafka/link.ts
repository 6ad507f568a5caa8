import { Cause, Effect, Ref } from "effect"
import type { Health } from "../../status/Health.js"
import type { BrokerError } from "../Broker.js"

type LinkState = "connecting" | "up" | "down"

/**
 * The adapter's view of its connection to Kafka, reported to /health. Each part that talks to Kafka
 * (topic setup and the sender share this link; the consumer keeps a down flag of its own) says when
 * it fails and when it works again. Health says why; the log warns once per outage, then only at debug.
 */
export interface Link {
  /** The bootstrap servers, for messages. */
  readonly where: string
  readonly report: (state: "up" | "down" | "starting", detail: string) => Effect.Effect<void>
  /** Reports a failure; `wasDown` (read and set by the caller) says whether the outage was known. */
  readonly outage: (wasDown: Effect.Effect<boolean>, what: string, e: BrokerError) => Effect.Effect<void>
  /** The shared link failed doing `what`. */
  readonly down: (what: string) => (e: BrokerError) => Effect.Effect<void>
  /** The shared link works (again): reported when it was down. */
  readonly up: Effect.Effect<void>
  /** Reports the link as up whatever it was (the topics are ready). */
  readonly connected: Effect.Effect<void>
  readonly isDown: Effect.Effect<boolean>
}

export const makeLink = (health: Health, where: string, topic: string) =>
  Effect.gen(function* () {
    const state = yield* Ref.make<LinkState>("connecting")
    const report: Link["report"] = (s, detail) => health.setBroker(s, "kafka", detail)
    const upDetail = `connected to ${where}; topic ${topic}`
    const outage: Link["outage"] = (wasDown, what, e) =>
      Effect.gen(function* () {
        yield* report("down", `${what}: ${e.detail}; retrying`)
        if (yield* wasDown) yield* Effect.logDebug(`${what}; still retrying`, Cause.fail(e))
        else yield* Effect.logWarning(`${what}; retrying until it works`, Cause.fail(e))
      })
    const link: Link = {
      where,
      report,
      outage,
      down: (what) => (e) =>
        outage(Effect.map(Ref.getAndSet(state, "down"), (before) => before === "down"), what, e),
      up: Effect.gen(function* () {
        if ((yield* Ref.getAndSet(state, "up")) !== "down") return
        yield* report("up", upDetail)
        yield* Effect.logInfo("Kafka is reachable again")
      }),
      connected: report("up", upDetail),
      isDown: Effect.map(Ref.get(state), (s) => s === "down")
    }
    yield* report("starting", `connecting to ${where}`)
    return link
  })

import { Cause, Context, Effect, Layer, Ref } from "effect"
import { Health } from "../../status/Health.js"
import type { BrokerError } from "../Broker.js"

type LinkState = "connecting" | "up" | "down"
type Reported = "up" | "down" | "starting"

/**
 * /health's one broker component for every Kafka topic of the process (prices, trades, bars). Each
 * topic reports its own state here and /health shows the worst of them: with each topic writing the
 * component directly, it flapped between topics.
 */
export class KafkaStatus extends Context.Tag("broker/kafka/KafkaStatus")<
  KafkaStatus,
  { readonly report: (topic: string, state: Reported, detail: string) => Effect.Effect<void> }
>() {}

const severity: Record<Reported, number> = { up: 0, starting: 1, down: 2 }

/** The component of `topics`: the worst state, with the details of the topics in that state. */
export const summarize = (
  topics: ReadonlyMap<string, { readonly state: Reported; readonly detail: string }>
): { readonly state: Reported; readonly detail: string } => {
  const all = [...topics]
  const state = all.reduce<Reported>((worst, [, t]) => (severity[t.state] > severity[worst] ? t.state : worst), "up")
  const named = all.length > 1
  const details = all.filter(([, t]) => t.state === state).map(([topic, t]) => (named ? `${topic}: ${t.detail}` : t.detail))
  return { state, detail: [...new Set(details)].join("; ") }
}

/**
 * Build it once per process: the topics' layers each provide this module constant, so merged into one
 * layer they share it (layers are memoised by reference within one build).
 */
export const KafkaStatusLive = Layer.effect(
  KafkaStatus,
  Effect.gen(function* () {
    const health = yield* Health
    const topics = yield* Ref.make<ReadonlyMap<string, { readonly state: Reported; readonly detail: string }>>(new Map())
    // One report at a time, so that an older summary never overwrites a newer one.
    const lock = yield* Effect.makeSemaphore(1)
    return KafkaStatus.of({
      report: (topic, state, detail) =>
        lock.withPermits(1)(
          Ref.updateAndGet(topics, (m) => new Map(m).set(topic, { state, detail })).pipe(
            Effect.map(summarize),
            Effect.flatMap((s) => health.setBroker(s.state, "kafka", s.detail))
          )
        )
    })
  })
)

/**
 * The adapter's view of its connection to Kafka for one topic, reported to /health. Each part that
 * talks to Kafka (topic setup and the sender share this link; the consumer keeps a down flag of its
 * own) says when it fails and when it works again. Health says why; the log warns once per outage,
 * then only at debug.
 */
export interface Link {
  /** The bootstrap servers, for messages. */
  readonly where: string
  readonly report: (state: Reported, detail: string) => Effect.Effect<void>
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

export const makeLink = (status: Context.Tag.Service<KafkaStatus>, where: string, topic: string) =>
  Effect.gen(function* () {
    const state = yield* Ref.make<LinkState>("connecting")
    const report: Link["report"] = (s, detail) => status.report(topic, s, detail)
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
        yield* Effect.logInfo(`Kafka is reachable again (topic ${topic})`)
      }),
      connected: report("up", upDetail),
      isDown: Effect.map(Ref.get(state), (s) => s === "down")
    }
    yield* report("starting", `connecting to ${where}`)
    return link
  })

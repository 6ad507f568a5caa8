import { Clock, Effect, Ref } from "effect"

/** The state of one part of the running platform, as /health reports it. */
export type ComponentState = "up" | "down" | "starting" | "not_running"

export interface ProducerHealth {
  readonly state: ComponentState
  readonly symbols: ReadonlyArray<string>
  readonly last_success_at: string | null
  readonly last_error: string | null
  readonly last_error_at: string | null
  readonly used_weight_1m: number | null
}

export interface BrokerHealth {
  readonly state: ComponentState
  readonly mode: string
  readonly detail: string | null
}

const iso = (ms: number) => new Date(ms).toISOString()

/**
 * Shared, in-process view of the producer's and the broker's condition. The roles write it; the API
 * reads it. In a process that does not run the producer it says so instead of guessing.
 */
export class Health extends Effect.Service<Health>()("status/Health", {
  effect: Effect.gen(function* () {
    const producer = yield* Ref.make<ProducerHealth>({
      state: "not_running",
      symbols: [],
      last_success_at: null,
      last_error: null,
      last_error_at: null,
      used_weight_1m: null
    })
    const broker = yield* Ref.make<BrokerHealth>({ state: "not_running", mode: "none", detail: null })
    return {
      producerStarting: (symbols: ReadonlyArray<string>) =>
        Ref.update(producer, (p) => ({ ...p, state: "starting" as const, symbols })),
      producerSymbols: (symbols: ReadonlyArray<string>) => Ref.update(producer, (p) => ({ ...p, symbols })),
      producerSucceeded: (usedWeight1m: number | null) =>
        Clock.currentTimeMillis.pipe(
          Effect.flatMap((now) =>
            Ref.update(producer, (p) => ({ ...p, state: "up" as const, last_success_at: iso(now), used_weight_1m: usedWeight1m }))
          )
        ),
      producerFailed: (message: string) =>
        Clock.currentTimeMillis.pipe(
          Effect.flatMap((now) =>
            Ref.update(producer, (p) => ({ ...p, state: "down" as const, last_error: message, last_error_at: iso(now) }))
          )
        ),
      setBroker: (state: ComponentState, mode: string, detail: string | null = null) =>
        Ref.set(broker, { state, mode, detail }),
      producer: Ref.get(producer),
      broker: Ref.get(broker)
    } as const
  })
}) {}
